//! Socket addresses: `SocketAddr` ⇄ `sockaddr` (IPv4, IPv6, and the
//! Unix-domain form std exposes), and std's resolve-and-try-each loop.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr as UnixSocketAddr;

/// Where the path starts in a sockaddr_un.
pub(crate) const PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// A sockaddr_storage and its length, for the calls that fill one or take
/// one.
pub(crate) struct SockAddr {
    storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl SockAddr {
    pub(crate) fn new() -> SockAddr {
        SockAddr {
            // SAFETY: all-zero is a valid sockaddr_storage.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    /// The C form of an IP socket address (as std converts it).
    pub(crate) fn from_std(addr: &SocketAddr) -> SockAddr {
        let mut s = SockAddr::new();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: `s.storage` is a sockaddr_storage we own, larger
                // than and at least as aligned as sockaddr_in; write() stores
                // plain data, dropping nothing.
                unsafe { s.as_mut_ptr().cast::<libc::sockaddr_in>().write(sin) };
                s.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: `s.storage` is a sockaddr_storage we own, larger
                // (128 bytes) than sockaddr_in6 (28) and at least as aligned;
                // write() stores plain data, dropping nothing.
                unsafe { s.as_mut_ptr().cast::<libc::sockaddr_in6>().write(sin6) };
                s.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        s
    }

    /// The std form of a Unix socket address the kernel filled in.
    pub(crate) fn to_unix(&self) -> io::Result<UnixSocketAddr> {
        if libc::c_int::from(self.storage.ss_family) != libc::AF_UNIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a Unix socket address",
            ));
        }
        // SAFETY: the family says the storage holds a sockaddr_un, and
        // sockaddr_storage is large and aligned enough for one.
        let sun = unsafe { self.as_ptr().cast::<libc::sockaddr_un>().read() };
        unix_addr_to_std(&sun, self.len)
    }

    /// The std form of an IP socket address the kernel filled in.
    pub(crate) fn to_std(&self) -> io::Result<SocketAddr> {
        let len = self.len as usize;
        match libc::c_int::from(self.storage.ss_family) {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in,
                // and it is large and aligned enough for one.
                let sin = unsafe { self.as_ptr().cast::<libc::sockaddr_in>().read() };
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family is AF_INET6 and `len` covers a whole
                // sockaddr_in6, so the kernel filled one in at the start of
                // the storage, which is large and aligned enough for it; any
                // bytes are a valid sockaddr_in6 (integers only).
                let sin6 = unsafe { self.as_ptr().cast::<libc::sockaddr_in6>().read() };
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address",
            )),
        }
    }
}

/// Resolves `addr` and calls `f` on each address until one succeeds;
/// otherwise returns the last error (std's `each_addr`).
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for addr in addr.to_socket_addrs()? {
        match f(&addr) {
            Ok(v) => return Ok(v),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The std form of the first `len` bytes of `addr`, an address the kernel
/// filled in (accept's).
pub(crate) fn unix_addr_to_std(
    addr: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<UnixSocketAddr> {
    let len = (len as usize).min(mem::size_of::<libc::sockaddr_un>());
    let name: Vec<u8> = addr.sun_path[..len.saturating_sub(PATH_OFFSET)]
        .iter()
        .map(|&c| c as u8)
        .collect();
    match name.split_first() {
        // Unnamed: std's unnamed address is the empty path.
        None => UnixSocketAddr::from_pathname(""),
        Some((0, abstract_name)) => UnixSocketAddr::from_abstract_name(abstract_name),
        Some(_) => {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            UnixSocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&name[..end]))
        }
    }
}
