//! TCP: `TcpListener`, `TcpStream`, `Incoming`.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::addr::{each_addr, SockAddr};
use super::socket::Socket;
use crate::netpoll::Interest;
use crate::sys::cvt;
use crate::time;

/// A TCP socket server, listening for connections: std's
/// [`TcpListener`](std::net::TcpListener) whose `accept` parks the calling
/// green thread instead of blocking its worker.
///
/// The socket is closed when the value is dropped.
pub struct TcpListener {
    sock: Socket,
}

/// An iterator that infinitely [`accept`](TcpListener::accept)s
/// connections on a [`TcpListener`]; see [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

/// A TCP stream between a local and a remote socket: std's
/// [`TcpStream`](std::net::TcpStream) whose blocking calls park the calling
/// green thread instead of blocking its worker.
///
/// The socket is closed when the value is dropped. Reads and writes may
/// also be done through `&TcpStream`, from several green threads at once.
pub struct TcpStream {
    sock: Socket,
}

impl TcpListener {
    /// Creates a listener bound to `addr` (each resolved address is tried
    /// in turn; the last error is returned if none works). Like std it sets
    /// SO_REUSEADDR and listens with a backlog of 128.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        // std's bind does not block (socket, setsockopt, bind, listen);
        // only name resolution may, as with `connect`.
        TcpListener::try_from(std::net::TcpListener::bind(addr)?)
    }

    /// Accepts a new connection, parking the calling green thread (or
    /// blocking the calling OS thread) until one arrives. The stream is
    /// non-blocking underneath and registered with the poller.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sock, addr) = self.sock.accept()?;
        let addr = addr.to_std()?;
        Ok((TcpStream { sock }, addr))
    }

    /// An iterator over incoming connections; it never returns `None`.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// A new handle on the same listening socket (a dup of the fd, with
    /// this handle's non-blocking mode copied).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            sock: self.sock.try_clone()?,
        })
    }

    /// Sets IP_TTL for sockets this listener accepts.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std().set_ttl(ttl)
    }

    /// IP_TTL.
    pub fn ttl(&self) -> io::Result<u32> {
        self.std().ttl()
    }

    /// Takes the pending SO_ERROR, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// With `true`, `accept` returns `WouldBlock` instead of waiting. This
    /// handle only: other handles from [`try_clone`](Self::try_clone) keep
    /// their mode (the fd itself is always O_NONBLOCK).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Deregisters the socket and returns it as a std listener. It is left
    /// in non-blocking mode: call `set_nonblocking(false)` on it for
    /// blocking calls.
    pub fn into_std(self) -> std::net::TcpListener {
        std::net::TcpListener::from(self.sock.into_owned())
    }

    fn std(&self) -> super::socket::StdRef<'_, std::net::TcpListener> {
        self.sock.std()
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl TcpStream {
    /// Opens a TCP connection to `addr`, trying each resolved address in
    /// turn and returning the last error if none connects. The calling
    /// green thread parks while the connection is being established.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| connect(a, None))
    }

    /// Opens a TCP connection to `addr`, giving up with
    /// [`TimedOut`](io::ErrorKind::TimedOut) after `timeout`. A zero
    /// timeout is an [`InvalidInput`](io::ErrorKind::InvalidInput) error, as
    /// in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect(addr, Some(time::deadline_after(timeout)))
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// Shuts down the read half, the write half, or both. Green threads
    /// parked on this socket (through any handle) wake up: a reader sees
    /// end of file, a writer an error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std().shutdown(how)
    }

    /// A new handle on the same socket (a dup of the fd). std keeps the
    /// timeouts and non-blocking mode in the kernel, shared by all
    /// handles; greenrt keeps them per handle, so the clone starts with a
    /// copy of this handle's settings and changes to one do not affect
    /// the other.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            sock: self.sock.try_clone()?,
        })
    }

    super::timeout_methods!();

    /// Receives data without removing it from the queue (MSG_PEEK); waits
    /// like `read`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf, libc::MSG_PEEK)
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.std().set_nodelay(nodelay)
    }

    /// TCP_NODELAY.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.std().nodelay()
    }

    /// IP_TTL.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std().set_ttl(ttl)
    }

    /// IP_TTL.
    pub fn ttl(&self) -> io::Result<u32> {
        self.std().ttl()
    }

    /// Takes the pending SO_ERROR, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// With `true`, reads and writes that would wait return
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) at once. This handle only
    /// (see [`try_clone`](Self::try_clone)).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Deregisters the socket and returns it as a std stream. It is left
    /// in non-blocking mode (call `set_nonblocking(false)` on it for
    /// blocking calls) and without this handle's timeouts.
    pub fn into_std(self) -> std::net::TcpStream {
        std::net::TcpStream::from(self.sock.into_owned())
    }

    fn std(&self) -> super::socket::StdRef<'_, std::net::TcpStream> {
        self.sock.std()
    }

    /// The registered fd, for `greenrt::io`'s splice path.
    pub(crate) fn net_fd(&self) -> &crate::netpoll::NetFd {
        self.sock.net_fd()
    }
}

/// One non-blocking connect to `addr`: EINPROGRESS, wait for writability,
/// then SO_ERROR. `deadline` (monotonic ns) bounds the wait (TimedOut).
fn connect(addr: &SocketAddr, deadline: Option<u64>) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let sock = Socket::open(family, libc::SOCK_STREAM)?;
    let c_addr = SockAddr::from_std(addr);
    // SAFETY: `c_addr` holds a valid sockaddr of `c_addr.len` bytes.
    match cvt(unsafe { libc::connect(sock.raw(), c_addr.as_ptr(), c_addr.len) }) {
        Ok(_) => return Ok(TcpStream { sock }),
        // EINTR: the connection goes on asynchronously, as for EINPROGRESS.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream { sock };
    loop {
        if let Err(e) = stream.sock.wait(Interest::Write, deadline) {
            return Err(if e.kind() == io::ErrorKind::TimedOut {
                io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
            } else {
                e
            });
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        // A wake-up can be stale (the socket was writable, unconnected,
        // when it was registered): connected only once it has a peer.
        match stream.peer_addr() {
            Ok(_) => return Ok(stream),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
            Err(e) => return Err(e),
        }
    }
}

super::stream_io!(TcpStream);

super::socket_traits!(TcpListener, "net::TcpListener", std::net::TcpListener);
super::socket_traits!(TcpStream, "net::TcpStream", std::net::TcpStream);

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.sock.raw()).finish()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        if let Ok(peer) = self.peer_addr() {
            d.field("peer", &peer);
        }
        d.field("fd", &self.sock.raw()).finish()
    }
}
