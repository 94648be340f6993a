//! Unix domain sockets for green threads, with std's API:
//! [`UnixListener`], [`UnixStream`] and [`UnixDatagram`] have the names,
//! methods and signatures of their `std::os::unix::net` counterparts, and
//! addresses are std's [`SocketAddr`].
//!
//! They behave like [`greenrt::net`](crate::net)'s TCP types (see there for
//! details): a call that would block parks the calling green thread (or
//! blocks a plain OS thread in poll(2)); writes use `MSG_NOSIGNAL`, so a
//! closed peer is [`BrokenPipe`](std::io::ErrorKind::BrokenPipe), never
//! SIGPIPE; an expired read or write timeout is
//! [`WouldBlock`](std::io::ErrorKind::WouldBlock); timeouts and
//! non-blocking mode belong to the handle and `try_clone` copies them;
//! dropping a socket deregisters and closes it (a listener's socket file
//! stays on disk, as with std).
//!
//! `UnixStream::connect` to a listener whose backlog is full does not fail
//! with EAGAIN (as a non-blocking connect would) but retries with a short
//! back-off, as std's blocking connect would wait.
//!
//! ```
//! use std::io::{Read, Write};
//! use greenrt::os::unix::net::UnixStream;
//!
//! greenrt::run(|| {
//!     let (mut a, mut b) = UnixStream::pair().unwrap();
//!     let peer = greenrt::spawn(move || {
//!         let mut buf = [0; 4];
//!         b.read_exact(&mut buf).unwrap(); // parks until `a` writes
//!         b.write_all(&buf).unwrap();
//!     });
//!     a.write_all(b"ping").unwrap();
//!     let mut buf = [0; 4];
//!     a.read_exact(&mut buf).unwrap();
//!     assert_eq!(&buf, b"ping");
//!     peer.join().unwrap();
//! });
//! ```

mod datagram;
mod listener;
mod stream;

use std::io;
use std::mem;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use std::os::unix::net::SocketAddr;

pub use datagram::UnixDatagram;
pub use listener::{Incoming, UnixListener};
pub use stream::UnixStream;

/// A sockaddr_un and its length.
struct UnixAddr {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

/// Offset of `sun_path` in sockaddr_un.
use crate::net::addr::PATH_OFFSET;

/// std's error for a path or name that does not fit in `sun_path`.
fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "path must be shorter than SUN_LEN",
    )
}

impl UnixAddr {
    /// The address of a socket file (std's rules: no NUL bytes, shorter
    /// than `sun_path`).
    fn from_path(path: &Path) -> io::Result<UnixAddr> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "paths must not contain interior null bytes",
            ));
        }
        // The terminating NUL must fit too.
        if bytes.len() >= mem::size_of::<libc::sockaddr_un>() - PATH_OFFSET {
            return Err(too_long());
        }
        let mut a = UnixAddr::with_name(bytes)?;
        if !bytes.is_empty() {
            a.len += 1; // the terminating NUL, as std counts it
        }
        Ok(a)
    }

    /// The address of a named socket or of an abstract one.
    fn from_std(addr: &SocketAddr) -> io::Result<UnixAddr> {
        if let Some(path) = addr.as_pathname() {
            return UnixAddr::from_path(path);
        }
        if let Some(name) = addr.as_abstract_name() {
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            return UnixAddr::with_name(&bytes);
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot connect to an unnamed socket address",
        ))
    }

    /// `bytes` in sun_path, length counting exactly `bytes` (an abstract
    /// name, NUL first, may fill sun_path: it has no terminating NUL).
    fn with_name(bytes: &[u8]) -> io::Result<UnixAddr> {
        // SAFETY: all-zero is a valid sockaddr_un.
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if bytes.len() > addr.sun_path.len() {
            return Err(too_long());
        }
        for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        Ok(UnixAddr {
            addr,
            len: (PATH_OFFSET + bytes.len()) as libc::socklen_t,
        })
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.addr as *const libc::sockaddr_un).cast()
    }
}
