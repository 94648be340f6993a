//! `NetFd`: a non-blocking fd registered with the poller, and the retry
//! loop every socket operation goes through.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{Interest, PollDesc};
use crate::scheduler::park::{blocks_green, BlockingSection};
use crate::sys::clock;
use crate::sys::{last_os_error, retry_eintr};

/// An open, non-blocking fd known to the poller. Closing (drop) removes it
/// from the poller first and wakes anyone still waiting on it.
pub(crate) struct NetFd {
    fd: Option<OwnedFd>,
    pd: &'static PollDesc,
}

impl NetFd {
    /// Takes `fd`, makes it non-blocking and registers it.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<NetFd> {
        set_nonblocking(fd.as_raw_fd())?;
        let pd = super::register(fd.as_raw_fd())?;
        Ok(NetFd { fd: Some(fd), pd })
    }

    fn raw(&self) -> RawFd {
        self.fd
            .as_ref()
            .expect("NetFd used after into_owned")
            .as_raw_fd()
    }

    /// Runs `op` until it does not fail with WouldBlock, waiting for
    /// `interest` in between; EINTR is retried. `deadline` (monotonic ns)
    /// bounds the waiting: past it the error is TimedOut (std's socket
    /// timeouts give WouldBlock or TimedOut; callers choose).
    ///
    /// `op` must read errno through [`last_os_error`] (as `cvt` does):
    /// never inlined, so the errno address is computed afresh after a
    /// wait, which may resume the green thread on another OS thread.
    ///
    /// Always inlined, with the wait in one never-inlined call: a parked
    /// green thread's stack then holds just the caller's frame and the
    /// wait's, and each wake-up reloads fewer cache lines of it (with
    /// thousands of connections every parked stack is cold).
    #[inline(always)]
    pub(crate) fn io<T>(
        &self,
        interest: Interest,
        deadline: Option<u64>,
        mut op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        let fd = self.raw();
        loop {
            match retry_eintr(|| op(fd)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(interest, deadline)?,
                other => return other,
            }
        }
    }

    /// One read of a stream socket through `op`, as `io`. `op` reads at
    /// most `len` bytes and returns how many, and whether the kernel said
    /// the receive queue is empty after them (see `net::inq`). On a green
    /// thread a read that emptied the socket (a short one, or one the
    /// kernel says did) marks it drained, and a read of a drained socket
    /// waits for readiness before its syscall: request/response traffic
    /// then costs one read per message, not two (see the `desc` module
    /// docs).
    #[inline(always)]
    pub(crate) fn read_stream(
        &self,
        deadline: Option<u64>,
        len: usize,
        mut op: impl FnMut(RawFd) -> io::Result<(usize, bool)>,
    ) -> io::Result<usize> {
        // A read into an empty buffer returns at once (the caller does
        // not get here with one: see `Socket::read_stream`).
        if len > 0 && self.is_drained() {
            self.wait(Interest::Read, deadline)?;
        }
        let mut seen = 0;
        let (n, emptied) = self.io(Interest::Read, deadline, |fd| {
            seen = self.read_edges();
            op(fd)
        })?;
        self.note_read(seen, n, len, emptied);
        Ok(n)
    }

    /// Read edges so far (see `PollDesc::read_edges`), taken just before
    /// a read's syscall for [`NetFd::note_read`].
    /// Wakes the green threads parked to write, to try again: after a
    /// Unix stream's own side shut down writing, for which epoll reports
    /// nothing (`unix_poll` says neither EPOLLOUT nor EPOLLHUP, where
    /// `tcp_poll` says EPOLLOUT), and their next write fails with EPIPE.
    pub(crate) fn wake_writers(&self) {
        self.pd.notify_now(super::desc::Readiness {
            write: true,
            ..Default::default()
        });
    }

    pub(crate) fn read_edges(&self) -> u32 {
        self.pd.read_edges()
    }

    /// After a stream read of `n` of `len` bytes that started at `seen`
    /// read edges: a short one drained the socket (whoever read it), as
    /// did one after which the kernel said nothing is left (`emptied`).
    pub(crate) fn note_read(&self, seen: u32, n: usize, len: usize, emptied: bool) {
        if n > 0 && (n < len || emptied) {
            self.pd.mark_drained(seen);
        }
    }

    /// A green thread's next read should wait for readiness first. Only
    /// green threads act on it: they wait through the poller, while OS
    /// threads poll(2) the fd, which needs no edge.
    pub(crate) fn is_drained(&self) -> bool {
        blocks_green() && self.pd.is_drained()
    }

    /// Waits until the fd may be ready for `interest`.
    #[inline(always)]
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        if blocks_green() {
            return self.pd.wait(interest, deadline);
        }
        self.wait_os_thread(interest, deadline)
    }

    /// `wait` for an OS thread (or a green thread that must not switch):
    /// poll(2) on the fd itself, without a P.
    #[cold]
    #[inline(never)]
    fn wait_os_thread(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        let _section = BlockingSection::enter();
        os_wait(self.raw(), interest, deadline)
    }

    /// Deregisters and returns the fd (still non-blocking).
    pub(crate) fn into_owned(mut self) -> OwnedFd {
        let fd = self.fd.take().expect("NetFd used after into_owned");
        super::deregister(fd.as_raw_fd(), self.pd);
        fd
    }
}

impl AsFd for NetFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("NetFd used after into_owned")
            .as_fd()
    }
}

impl AsRawFd for NetFd {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl IntoRawFd for NetFd {
    fn into_raw_fd(self) -> RawFd {
        self.into_owned().into_raw_fd()
    }
}

impl Drop for NetFd {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            // Out of epoll before close, so the number cannot be reused
            // while still registered; `fd` closes when dropped here.
            super::deregister(fd.as_raw_fd(), self.pd);
        }
    }
}

impl std::fmt::Debug for NetFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetFd").field("fd", &self.fd).finish()
    }
}

/// Blocks the OS thread in poll(2) until `fd` is ready for `interest` or
/// `deadline` passes (TimedOut).
fn os_wait(fd: RawFd, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
    let events = match interest {
        Interest::Read => libc::POLLIN | libc::POLLRDHUP,
        Interest::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let now = clock::now();
                if now >= d {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Duration::from_nanos(d - now)
                    .as_millis()
                    .max(1)
                    .min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match n {
            n if n > 0 => return Ok(()),
            0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// A socket timeout's expiry as std reports it for SO_RCVTIMEO/SO_SNDTIMEO
/// on Linux: the waits' own TimedOut (which carries no OS error code)
/// becomes EAGAIN (WouldBlock); an OS error such as ETIMEDOUT passes
/// through.
pub(crate) fn timeout_as_would_block(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() {
        io::Error::from_raw_os_error(libc::EAGAIN)
    } else {
        e
    }
}

/// Sets O_NONBLOCK on `fd`.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on the caller's open fd.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL with an int argument on the caller's open fd;
        // no memory is passed.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(last_os_error());
        }
    }
    Ok(())
}
