//! `Endpoint`: one side of a copy as the copy loops see it — a registered
//! fd plus the read and write timeouts its owner set.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::netpoll::{timeout_as_would_block, Interest, NetFd};
use crate::sys::{cvt_size as cvt, last_os_error};
use crate::time;

/// A greenrt stream socket (or, in tests, any registered fd) taking part in
/// a copy. Waits for readiness through the poller, each bounded by the
/// owner's timeout as one `read` or `write` of the owner would be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint<'a> {
    fd: &'a NetFd,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl<'a> Endpoint<'a> {
    pub(crate) fn new(
        fd: &'a NetFd,
        read_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
    ) -> Endpoint<'a> {
        Endpoint {
            fd,
            read_timeout,
            write_timeout,
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether the last read drained the socket and nothing came since
    /// (the next read should wait for readiness first).
    pub(crate) fn is_drained(&self) -> bool {
        self.fd.is_drained()
    }

    /// The read or write timeout.
    fn timeout(&self, interest: Interest) -> Option<Duration> {
        match interest {
            Interest::Read => self.read_timeout,
            Interest::Write => self.write_timeout,
        }
    }

    /// Waits until the fd may be ready for `interest`. `deadline` starts
    /// as None and is set from the timeout at the first wait of one
    /// logical read or write, so all its waits share one budget. An
    /// expired timeout is WouldBlock, as std's SO_RCVTIMEO/SO_SNDTIMEO
    /// give on Linux (and as greenrt's sockets do).
    pub(crate) fn wait(&self, interest: Interest, deadline: &mut Option<u64>) -> io::Result<()> {
        if deadline.is_none() {
            *deadline = self.timeout(interest).map(time::deadline_after);
        }
        self.fd
            .wait(interest, *deadline)
            .map_err(timeout_as_would_block)
    }

    /// `NetFd::io` (EINTR retried, EAGAIN waited out) under this
    /// endpoint's timeout, waiting first if `wait_first` (the caller just
    /// saw EAGAIN on this fd: saves a syscall that would fail again). All
    /// waits share one timeout budget.
    fn io<T>(
        &self,
        interest: Interest,
        wait_first: bool,
        op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut deadline = None;
        if wait_first {
            self.wait(interest, &mut deadline)?;
        } else {
            deadline = self.timeout(interest).map(time::deadline_after);
        }
        self.fd
            .io(interest, deadline, op)
            .map_err(timeout_as_would_block)
    }

    /// One read of at most `buf.len()` bytes (0: end of stream). It waits
    /// for readiness first if the caller's last attempt on this fd (e.g.
    /// a splice) failed with EAGAIN (`after_eagain`), or if the last read
    /// was short, which drained the socket (see `NetFd::read_stream`).
    pub(crate) fn read(&self, buf: &mut [u8], after_eagain: bool) -> io::Result<usize> {
        let (len, mut seen) = (buf.len(), 0);
        let wait_first = after_eagain || self.fd.is_drained();
        let n = self.io(Interest::Read, wait_first, |fd| {
            seen = self.fd.read_edges();
            // SAFETY: `buf` is valid for writes of its length.
            cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
        })?;
        self.fd.note_read(seen, n, len, false);
        Ok(n)
    }

    /// One write of at most `buf.len()` bytes. send(2) with MSG_NOSIGNAL,
    /// so a closed peer is EPIPE and never SIGPIPE; write(2) for fds that
    /// are not sockets (tests use eventfds).
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Interest::Write, false, |fd| {
            // SAFETY: `buf` is a live slice, valid for reads of `buf.len()`
            // bytes, and send(2) only reads it; `fd` stays open while
            // `self.fd` is borrowed.
            match cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
            {
                Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                    // SAFETY: `buf` is a live slice, valid for reads of
                    // `buf.len()` bytes, and write(2) only reads it; `fd`
                    // stays open while `self.fd` is borrowed.
                    cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
                }
                other => other,
            }
        })
    }

    /// Writes all of `buf`.
    pub(crate) fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Makes the socket's close abortive (`SO_LINGER` on with a zero
    /// timeout): closing it then sends a reset, whatever its queues hold.
    /// For a copy that failed: after `shutdown(Both)`, Linux stops
    /// reopening the receive window, so a peer that had filled it waits in
    /// zero-window probes until the closed socket times out (60 s by
    /// default, `tcp_fin_timeout`) unless unread bytes make the close a
    /// reset anyway. Not a socket (tests use eventfds): nothing to do.
    pub(crate) fn abort_on_close(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(self.fd, nix::sys::socket::sockopt::Linger, &linger);
    }

    /// shutdown(2). Wakes green threads parked on the socket: a reader
    /// sees end of stream, a writer an error.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown on an fd that stays open while `self.fd` is
        // borrowed.
        if unsafe { libc::shutdown(self.raw(), how) } < 0 {
            return Err(last_os_error());
        }
        Ok(())
    }
}
