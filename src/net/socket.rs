//! What every socket type shares: a registered [`NetFd`] plus std-style
//! timeouts and non-blocking mode, the retry loop with those applied, and
//! raw send/recv wrappers (addresses: `net::addr`).

use std::io::{self, IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop};
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::addr::SockAddr;
use super::inq::{self, InqState};
use crate::netpoll::{timeout_as_would_block, Interest, NetFd};
pub(crate) use crate::sys::{cvt, cvt_size};
use crate::sys::{iov_count, retry_eintr, IOV_MAX};
use crate::time;

/// A registered socket with the per-handle settings std keeps in the
/// kernel (SO_RCVTIMEO, SO_SNDTIMEO, O_NONBLOCK). The fd itself is always
/// O_NONBLOCK; these settings decide how long an operation may park.
pub(crate) struct Socket {
    fd: NetFd,
    /// Nanoseconds; 0 means none (a zero timeout is rejected, as in std).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// `set_nonblocking(true)`: never park, return WouldBlock.
    nonblocking: AtomicBool,
    /// Whether stream reads learn what is left (see `net::inq`).
    inq: InqState,
}

/// A std socket type viewing a [`Socket`]'s fd for a call, never closing
/// it (std's option setters and address getters work on any socket fd).
pub(crate) struct StdRef<'a, T> {
    inner: ManuallyDrop<T>,
    _borrow: PhantomData<&'a Socket>,
}

impl<T> Deref for StdRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl Socket {
    /// Takes `fd`, makes it non-blocking and registers it with the poller.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Socket> {
        Ok(Socket {
            fd: NetFd::new(fd)?,
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            nonblocking: AtomicBool::new(false),
            inq: InqState::default(),
        })
    }

    /// A new non-blocking, close-on-exec socket, registered.
    pub(crate) fn open(family: libc::c_int, ty: libc::c_int) -> io::Result<Socket> {
        // SAFETY: socket(2) takes only integers and touches no memory of
        // ours; the fd it returns is checked by cvt and owned just below.
        let fd =
            cvt(unsafe { libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Socket::new(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// For `FromRawFd` impls, which cannot return an error.
    ///
    /// # Safety
    /// `fd` must be an open socket the caller owns.
    pub(crate) unsafe fn from_raw_fd_or_panic(fd: RawFd, what: &str) -> Socket {
        // SAFETY: per the contract, the caller hands us ownership of `fd`.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Socket::new(owned).unwrap_or_else(|e| {
            panic!(
                "greenrt::{what}::from_raw_fd: cannot register fd {fd} with the netpoller \
                 (the fd has been closed): {e}"
            )
        })
    }

    /// A second handle on the same socket (dup), with this one's timeouts
    /// and non-blocking mode copied.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and reads no
        // memory; `self.raw()` is open while `self` is borrowed.
        let fd = cvt(unsafe { libc::fcntl(self.raw(), libc::F_DUPFD_CLOEXEC, 3) })?;
        // SAFETY: `fd` is the new descriptor F_DUPFD_CLOEXEC just returned
        // (checked by cvt); nobody else holds it, so OwnedFd may own and
        // close it.
        let sock = Socket::new(unsafe { OwnedFd::from_raw_fd(fd) })?;
        for (to, from) in [
            (&sock.read_timeout, &self.read_timeout),
            (&sock.write_timeout, &self.write_timeout),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        sock.nonblocking
            .store(self.nonblocking.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(sock)
    }

    /// Deregisters and returns the fd (still O_NONBLOCK).
    pub(crate) fn into_owned(self) -> OwnedFd {
        self.fd.into_owned()
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The registered fd (for code that drives it directly, e.g. splice).
    pub(crate) fn net_fd(&self) -> &NetFd {
        &self.fd
    }

    /// Views the fd as the std type `T` for the duration of the borrow.
    pub(crate) fn std<T: FromRawFd>(&self) -> StdRef<'_, T> {
        StdRef {
            // SAFETY: the fd stays open while `self` is borrowed, and the
            // ManuallyDrop never closes it. `T` is one of std's socket
            // types, whose `from_raw_fd` only wraps the number.
            inner: ManuallyDrop::new(unsafe { T::from_raw_fd(self.raw()) }),
            _borrow: PhantomData,
        }
    }

    pub(crate) fn set_timeout(&self, dur: Option<Duration>, interest: Interest) -> io::Result<()> {
        let ns = match dur {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            None => 0,
        };
        self.timeout_cell(interest).store(ns, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, interest: Interest) -> Option<Duration> {
        match self.timeout_cell(interest).load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn timeout_cell(&self, interest: Interest) -> &AtomicU64 {
        match interest {
            Interest::Read => &self.read_timeout,
            Interest::Write => &self.write_timeout,
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// Runs `op` on the fd, parking on WouldBlock until the fd is ready
    /// for `interest`, for at most the read or write timeout; an expired
    /// timeout is EAGAIN (WouldBlock), as with SO_RCVTIMEO/SO_SNDTIMEO. In
    /// non-blocking mode WouldBlock is returned at once.
    #[inline(always)]
    pub(crate) fn io<T>(
        &self,
        interest: Interest,
        op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        self.timed(interest, |deadline| self.io_until(interest, deadline, op))
    }

    /// Runs `f` with the deadline of the read or write timeout; an expired
    /// timeout is EAGAIN (WouldBlock), as with SO_RCVTIMEO/SO_SNDTIMEO.
    #[inline(always)]
    pub(crate) fn timed<T>(
        &self,
        interest: Interest,
        f: impl FnOnce(Option<u64>) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = self.timeout(interest).map(time::deadline_after);
        let r = f(deadline);
        if deadline.is_some() {
            r.map_err(timeout_as_would_block)
        } else {
            r
        }
    }

    /// As [`Socket::io`] with an explicit deadline (monotonic ns, TimedOut
    /// past it) and no timeout applied.
    #[inline(always)]
    pub(crate) fn io_until<T>(
        &self,
        interest: Interest,
        deadline: Option<u64>,
        mut op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        if self.nonblocking.load(Ordering::Relaxed) {
            let fd = self.raw();
            return retry_eintr(|| op(fd));
        }
        self.fd.io(interest, deadline, op)
    }

    /// Waits (parks) until the fd may be ready for `interest`.
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        self.fd.wait(interest, deadline)
    }

    /// One read of a stream socket into `bufs` (`len` bytes in all): as
    /// `io`, but a read that empties the socket lets the next one wait
    /// without a syscall that would fail (see `NetFd::read_stream`).
    #[inline(always)]
    fn read_stream(&self, bufs: &mut [IoSliceMut<'_>], len: usize) -> io::Result<usize> {
        // Nothing asked: Ok(0) at once, as readv(2) and read(2) on a
        // socket return it, whatever the socket's state (recvmsg(2), the
        // TCP_INQ path, would wait for a byte).
        if len == 0 {
            return Ok(0);
        }
        let with_inq = self.inq.is_on();
        let mut op = |fd| {
            if with_inq {
                return inq::recv(fd, bufs);
            }
            // One buffer (every `Read::read`): recv(2), which the kernel
            // serves more cheaply than readv(2) (no iovec to import, no
            // file-position lock: `fdget_pos`).
            if let [buf] = bufs {
                // SAFETY: `buf` is valid for writes of its length.
                return cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
                    .map(|n| (n, false));
            }
            // SAFETY: IoSliceMut is ABI-compatible with iovec on Unix, and
            // every slice is valid for writes of its length.
            cvt_size(unsafe { libc::readv(fd, bufs.as_ptr().cast(), iov_count(bufs.len())) })
                .map(|n| (n, false))
        };
        let n = self.timed(Interest::Read, |deadline| {
            if self.nonblocking.load(Ordering::Relaxed) {
                self.io_until(Interest::Read, deadline, op).map(|(n, _)| n)
            } else {
                self.fd.read_stream(deadline, len, &mut op)
            }
        })?;
        if n == len && len > 0 {
            self.inq.full_read(self.raw());
        }
        Ok(n)
    }

    /// recv(2) on a stream socket (`Read` of TCP and Unix streams).
    #[inline]
    pub(crate) fn recv_stream(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.read_stream(&mut [IoSliceMut::new(buf)], len)
    }

    /// `Read::read_exact` on a stream socket: std's loop, written here so
    /// that it inlines with the read into one frame (a parked green
    /// thread's stack holds fewer frames; see `NetFd::io`). EINTR never
    /// reaches it: `NetFd::io` retries.
    #[inline]
    pub(crate) fn recv_exact(&self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.recv_stream(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `Write::write_all` on a stream socket, as [`Socket::recv_exact`].
    #[inline]
    pub(crate) fn send_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.send(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ))
                }
                Ok(n) => buf = &buf[n..],
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// readv(2) on a stream socket.
    #[inline]
    pub(crate) fn read_vectored_stream(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        // Only the first IOV_MAX buffers are passed: a read that fills
        // them is full, not short (a short one marks the socket drained).
        let len = bufs.iter().take(IOV_MAX).map(|b| b.len()).sum();
        self.read_stream(bufs, len)
    }

    pub(crate) fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        self.io(Interest::Read, |fd| {
            // SAFETY: `buf` is valid for writes of its length.
            cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) })
        })
    }

    /// send(2) with MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.
    #[inline]
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Interest::Write, |fd| {
            // SAFETY: `buf` is valid for reads of its length.
            cvt_size(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
        })
    }

    /// sendmsg(2) with MSG_NOSIGNAL.
    #[inline]
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.io(Interest::Write, |fd| {
            // SAFETY: all-zero is a valid msghdr (no name, no control).
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov_count(bufs.len()) as usize;
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix; every
            // slice is valid for reads of its length; `msg` is valid.
            cvt_size(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
        })
    }

    /// recvfrom(2) of an IP socket.
    pub(crate) fn recv_from(
        &self,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> io::Result<(usize, SocketAddr)> {
        self.io(Interest::Read, |fd| {
            let mut addr = SockAddr::new();
            // SAFETY: `buf` is valid for writes of its length; `addr` is a
            // sockaddr_storage with its length.
            let n = cvt_size(unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                    addr.as_mut_ptr(),
                    &mut addr.len,
                )
            })?;
            Ok((n, addr.to_std()?))
        })
    }

    /// sendto(2) with MSG_NOSIGNAL.
    pub(crate) fn send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize> {
        let addr = SockAddr::from_std(to);
        self.io(Interest::Write, |fd| {
            // SAFETY: `buf` is valid for reads of its length; `addr` holds
            // a valid sockaddr of `addr.len` bytes.
            cvt_size(unsafe {
                libc::sendto(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                    addr.as_ptr(),
                    addr.len,
                )
            })
        })
    }

    /// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC, parking while nobody
    /// connects. Returns the new fd, and the peer's address when the
    /// socket is an IP one.
    pub(crate) fn accept(&self) -> io::Result<(Socket, SockAddr)> {
        let (fd, addr) = self.io_until(Interest::Read, None, |fd| {
            let mut addr = SockAddr::new();
            // SAFETY: `addr` is a sockaddr_storage with its length.
            let new = cvt(unsafe {
                libc::accept4(
                    fd,
                    addr.as_mut_ptr(),
                    &mut addr.len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            })?;
            // SAFETY: accept4 just returned this fd; nobody else owns it.
            Ok((unsafe { OwnedFd::from_raw_fd(new) }, addr))
        })?;
        Ok((Socket::new(fd)?, addr))
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw().fmt(f)
    }
}
