//! `UnixListener` and its `Incoming`.

use std::fmt;
use std::io;
use std::path::Path;

use super::{SocketAddr, UnixStream};
use crate::net::{Socket, StdRef};

/// A Unix domain socket server: std's
/// [`UnixListener`](std::os::unix::net::UnixListener) whose `accept` parks
/// the calling green thread instead of blocking its worker.
///
/// The socket is closed when the value is dropped; its file is not
/// removed.
pub struct UnixListener {
    sock: Socket,
}

/// An iterator that infinitely [`accept`](UnixListener::accept)s
/// connections on a [`UnixListener`]; see [`UnixListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl UnixListener {
    /// Creates a listener bound to the socket file `path` (which must not
    /// exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::try_from(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Creates a listener bound to `addr` (a path or an abstract name).
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::try_from(std::os::unix::net::UnixListener::bind_addr(addr)?)
    }

    /// Accepts a new connection, parking the calling green thread (or
    /// blocking the calling OS thread) until one arrives. The address is
    /// the peer's (usually unnamed).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (sock, addr) = self.sock.accept()?;
        let addr = addr.to_unix()?;
        Ok((UnixStream::from_socket(sock), addr))
    }

    /// An iterator over incoming connections; it never returns `None`.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// A new handle on the same listening socket (a dup, with this
    /// handle's non-blocking mode copied).
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            sock: self.sock.try_clone()?,
        })
    }

    /// Takes the pending SO_ERROR, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// With `true`, `accept` returns `WouldBlock` instead of waiting. This
    /// handle only.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Deregisters the socket and returns it as a std listener, left in
    /// non-blocking mode.
    pub fn into_std(self) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::from(self.sock.into_owned())
    }

    fn std(&self) -> StdRef<'_, std::os::unix::net::UnixListener> {
        self.sock.std()
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl<'a> IntoIterator for &'a UnixListener {
    type Item = io::Result<UnixStream>;
    type IntoIter = Incoming<'a>;
    fn into_iter(self) -> Incoming<'a> {
        self.incoming()
    }
}

crate::net::socket_traits!(
    UnixListener,
    "os::unix::net::UnixListener",
    std::os::unix::net::UnixListener
);

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixListener");
        d.field("fd", &self.sock.raw());
        if let Ok(addr) = self.local_addr() {
            d.field("local", &addr);
        }
        d.finish()
    }
}
