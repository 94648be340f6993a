//! `UnixDatagram`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::path::Path;

use super::{SocketAddr, UnixAddr};
use crate::net::addr::SockAddr;
use crate::net::{Socket, StdRef};
use crate::netpoll::Interest;
use crate::sys::cvt_size;

/// A Unix domain datagram socket: std's
/// [`UnixDatagram`](std::os::unix::net::UnixDatagram) whose blocking calls
/// park the calling green thread instead of blocking its worker.
///
/// ```
/// use greenrt::os::unix::net::UnixDatagram;
///
/// greenrt::run(|| {
///     let (a, b) = UnixDatagram::pair().unwrap();
///     let peer = greenrt::spawn(move || {
///         let mut buf = [0; 16];
///         let n = b.recv(&mut buf).unwrap(); // parks until `a` sends
///         b.send(&buf[..n]).unwrap();
///     });
///     a.send(b"ping").unwrap();
///     let mut buf = [0; 16];
///     assert_eq!(a.recv(&mut buf).unwrap(), 4);
///     assert_eq!(&buf[..4], b"ping");
///     peer.join().unwrap();
/// });
/// ```
///
/// The socket is closed when the value is dropped (a bound socket's file
/// stays on disk, as with std).
pub struct UnixDatagram {
    sock: Socket,
}

impl UnixDatagram {
    /// Creates a socket bound to the socket file `path` (which must not
    /// exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::try_from(std::os::unix::net::UnixDatagram::bind(path)?)
    }

    /// Creates a socket bound to `addr` (a path or an abstract name).
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        UnixDatagram::try_from(std::os::unix::net::UnixDatagram::bind_addr(addr)?)
    }

    /// Creates a socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::try_from(std::os::unix::net::UnixDatagram::unbound()?)
    }

    /// An unnamed pair of connected sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::try_from(a)?, UnixDatagram::try_from(b)?))
    }

    /// Connects the socket to the socket file `path`, so that `send` and
    /// `recv` may be used and datagrams from elsewhere are dropped. Never
    /// waits.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.std().connect(path)
    }

    /// Connects the socket to `addr` (a path or an abstract name).
    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        self.std().connect_addr(addr)
    }

    /// A new handle on the same socket (a dup), starting with a copy of
    /// this handle's timeouts and non-blocking mode (see
    /// [`TcpStream::try_clone`](crate::net::TcpStream::try_clone)).
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            sock: self.sock.try_clone()?,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// The address of the peer this socket is connected to.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// Receives one datagram and its sender's address, parking until one
    /// arrives (or the read timeout passes:
    /// [`WouldBlock`](io::ErrorKind::WouldBlock)). Bytes beyond `buf` are
    /// discarded.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_from_flags(buf, 0)
    }

    /// As [`recv_from`](Self::recv_from), leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_from_flags(buf, libc::MSG_PEEK)
    }

    /// Receives one datagram (from the connected peer, if connected).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_flags(buf, 0)
    }

    /// As [`recv`](Self::recv), leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_flags(buf, libc::MSG_PEEK)
    }

    /// Sends `buf` to the socket file `path`, parking while the receiver's
    /// queue is full (at most the write timeout).
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        self.send_to_unix(buf, &UnixAddr::from_path(path.as_ref())?)
    }

    /// Sends `buf` to `addr` (a path or an abstract name).
    pub fn send_to_addr(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        self.send_to_unix(buf, &UnixAddr::from_std(addr)?)
    }

    /// Sends `buf` to the connected peer, parking while its queue is full.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }

    crate::net::timeout_methods!();

    /// With `true`, calls that would wait return
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) at once. This handle only.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Takes the pending SO_ERROR, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// Shuts down the read half, the write half, or both; green threads
    /// parked on the socket through any handle wake up. Once the read half
    /// is shut down, a receive with nothing queued returns `Ok(0)` (as
    /// std's blocking one does; the kernel's non-blocking one would say
    /// EAGAIN forever).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std().shutdown(how)
    }

    /// Deregisters the socket and returns it as a std socket, left in
    /// non-blocking mode and without this handle's timeouts.
    pub fn into_std(self) -> std::os::unix::net::UnixDatagram {
        std::os::unix::net::UnixDatagram::from(self.sock.into_owned())
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        self.sock.io(Interest::Read, |fd| {
            // SAFETY: `buf` is valid for writes of its length.
            let r = cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) });
            eof_if_read_shut(fd, r, || 0)
        })
    }

    fn recv_from_flags(
        &self,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self.sock.io(Interest::Read, |fd| {
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
            });
            eof_if_read_shut(fd, n.map(|n| (n, addr)), || {
                let mut unnamed = SockAddr::new();
                unnamed.len = 0;
                (0, unnamed)
            })
        })?;
        // No address at all (len 0): the sender is an unnamed socket.
        let addr = if addr.len == 0 {
            SocketAddr::from_pathname("")?
        } else {
            addr.to_unix()?
        };
        Ok((n, addr))
    }

    fn send_to_unix(&self, buf: &[u8], addr: &UnixAddr) -> io::Result<usize> {
        self.sock.io(Interest::Write, |fd| {
            // SAFETY: `buf` is valid for reads of its length; `addr` holds
            // a valid sockaddr_un of `addr.len` bytes.
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

    fn std(&self) -> StdRef<'_, std::os::unix::net::UnixDatagram> {
        self.sock.std()
    }
}

/// `r`, or `eof()` if `r` is EAGAIN on a socket whose read half is shut
/// down: a datagram socket's non-blocking receive then fails for good
/// while poll reports it readable (EPOLLRDHUP), where std's blocking
/// receive returns 0.
fn eof_if_read_shut<T>(
    fd: std::os::fd::RawFd,
    r: io::Result<T>,
    eof: impl FnOnce() -> T,
) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a zero timeout; poll only writes
            // `revents`.
            let ready = unsafe { libc::poll(&mut p, 1, 0) };
            if ready == 1 && p.revents & libc::POLLRDHUP != 0 {
                Ok(eof())
            } else {
                Err(e)
            }
        }
        r => r,
    }
}

crate::net::socket_traits!(
    UnixDatagram,
    "os::unix::net::UnixDatagram",
    std::os::unix::net::UnixDatagram
);

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixDatagram");
        d.field("fd", &self.sock.raw());
        if let Ok(addr) = self.local_addr() {
            d.field("local", &addr);
        }
        if let Ok(addr) = self.peer_addr() {
            d.field("peer", &addr);
        }
        d.finish()
    }
}
