//! `UnixStream`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use super::{SocketAddr, UnixAddr};
use crate::net::{cvt, Socket, StdRef};
use crate::netpoll::Interest;

/// A Unix domain stream socket: std's
/// [`UnixStream`](std::os::unix::net::UnixStream) whose blocking calls
/// park the calling green thread instead of blocking its worker.
///
/// The socket is closed when the value is dropped. Reads and writes may
/// also be done through `&UnixStream`, from several green threads at once.
pub struct UnixStream {
    sock: Socket,
}

/// Back-off between connect attempts while the listener's backlog is full.
const BACKOFF_MIN: Duration = Duration::from_micros(100);
const BACKOFF_MAX: Duration = Duration::from_millis(10);

impl UnixStream {
    pub(super) fn from_socket(sock: Socket) -> UnixStream {
        UnixStream { sock }
    }

    /// Connects to the socket file `path`.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        connect(&UnixAddr::from_path(path.as_ref())?)
    }

    /// Connects to `addr` (a path or an abstract name).
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        connect(&UnixAddr::from_std(addr)?)
    }

    /// An unnamed pair of connected sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::try_from(a)?, UnixStream::try_from(b)?))
    }

    /// A new handle on the same socket (a dup), starting with a copy of
    /// this handle's timeouts and non-blocking mode (see
    /// [`TcpStream::try_clone`](crate::net::TcpStream::try_clone)).
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            sock: self.sock.try_clone()?,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    crate::net::timeout_methods!();

    /// With `true`, reads and writes that would wait return
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
    /// parked on the socket through any handle wake up: a reader sees end
    /// of file, a writer [`BrokenPipe`](io::ErrorKind::BrokenPipe).
    ///
    /// The peer's `shutdown(Read)` is the one change epoll does not
    /// report on a Unix stream: a writer parked on a full buffer then
    /// stays parked until the peer reads, closes, or shuts down both
    /// halves (std's blocking write fails at once with `BrokenPipe`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std().shutdown(how)?;
        if how != Shutdown::Read {
            // epoll says nothing of our own write shutdown on a Unix
            // socket: wake the writers ourselves (see `wake_writers`).
            self.sock.net_fd().wake_writers();
        }
        Ok(())
    }

    /// Deregisters the socket and returns it as a std stream, left in
    /// non-blocking mode and without this handle's timeouts.
    pub fn into_std(self) -> std::os::unix::net::UnixStream {
        std::os::unix::net::UnixStream::from(self.sock.into_owned())
    }

    fn std(&self) -> StdRef<'_, std::os::unix::net::UnixStream> {
        self.sock.std()
    }

    /// The registered fd, for `greenrt::io`'s splice path.
    pub(crate) fn net_fd(&self) -> &crate::netpoll::NetFd {
        self.sock.net_fd()
    }
}

/// A non-blocking connect. A Unix stream connect completes or fails at
/// once, except when the listener's backlog is full (EAGAIN): a blocking
/// connect would wait for room, so we retry with a back-off.
fn connect(addr: &UnixAddr) -> io::Result<UnixStream> {
    let sock = Socket::open(libc::AF_UNIX, libc::SOCK_STREAM)?;
    let mut backoff = BACKOFF_MIN;
    loop {
        // SAFETY: `addr` holds a valid sockaddr_un of `addr.len` bytes.
        match cvt(unsafe { libc::connect(sock.raw(), addr.as_ptr(), addr.len) }) {
            Ok(_) => return Ok(UnixStream { sock }),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => {}
                // An interrupted attempt may have completed meanwhile.
                Some(libc::EISCONN) => return Ok(UnixStream { sock }),
                Some(libc::EAGAIN) => {
                    if crate::scheduler::in_green_thread() {
                        crate::time::sleep(backoff);
                    } else {
                        std::thread::sleep(backoff);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Some(libc::EINPROGRESS) => {
                    sock.wait(Interest::Write, None)?;
                    let stream = UnixStream { sock };
                    return match stream.take_error()? {
                        Some(e) => Err(e),
                        None => Ok(stream),
                    };
                }
                _ => return Err(e),
            },
        }
    }
}

crate::net::stream_io!(UnixStream);

crate::net::socket_traits!(
    UnixStream,
    "os::unix::net::UnixStream",
    std::os::unix::net::UnixStream
);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixStream");
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
