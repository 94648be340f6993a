//! TCP and UDP sockets for green threads, with std's API: [`TcpListener`],
//! [`TcpStream`], [`UdpSocket`] have the names, methods and signatures of
//! their `std::net` counterparts, and the address types are std's own
//! (re-exported here).
//!
//! ```
//! use std::io::{Read, Write};
//! use greenrt::net::{TcpListener, TcpStream};
//!
//! greenrt::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = greenrt::spawn(move || {
//!         let (mut conn, _) = listener.accept().unwrap(); // parks
//!         let mut buf = [0; 5];
//!         conn.read_exact(&mut buf).unwrap();
//!         conn.write_all(&buf).unwrap();
//!     });
//!     let mut client = TcpStream::connect(addr).unwrap();
//!     client.write_all(b"hello").unwrap();
//!     let mut echo = [0; 5];
//!     client.read_exact(&mut echo).unwrap();
//!     assert_eq!(&echo, b"hello");
//!     server.join().unwrap();
//! });
//! ```
//!
//! # Blocking
//!
//! Every socket is non-blocking underneath and registered with greenrt's
//! netpoller (one epoll instance, edge-triggered). A call that would block
//! (`accept`, `connect`, `read`, `write`, `recv_from`, ...) parks the
//! calling green thread until the socket is ready; its worker runs other
//! green threads meanwhile. Called from a plain OS thread, the same call
//! blocks that thread in poll(2). Reads and writes through `&TcpStream` may
//! come from several green threads at once, as with std.
//!
//! Name resolution (`ToSocketAddrs` for host names) calls getaddrinfo,
//! which blocks the worker; if it takes long, the runtime's monitor hands
//! the worker's other green threads to another OS thread.
//!
//! # Errors and timeouts
//!
//! Errors are the OS errors std reports. Writes use `MSG_NOSIGNAL`: writing
//! to a connection the peer has closed fails with
//! [`BrokenPipe`](std::io::ErrorKind::BrokenPipe) (or
//! [`ConnectionReset`](std::io::ErrorKind::ConnectionReset)) and never
//! raises SIGPIPE, whatever the process does with that signal.
//!
//! `set_read_timeout` / `set_write_timeout` bound how long one call waits;
//! an expired timeout fails the call with
//! [`WouldBlock`](std::io::ErrorKind::WouldBlock) (EAGAIN), exactly as std's
//! SO_RCVTIMEO / SO_SNDTIMEO do on Linux; a zero timeout is an
//! [`InvalidInput`](std::io::ErrorKind::InvalidInput) error. `connect_timeout`
//! fails with [`TimedOut`](std::io::ErrorKind::TimedOut). The timeouts and
//! `set_nonblocking` belong to the handle in greenrt (std keeps them in the
//! kernel, shared by every `try_clone` of a socket): `try_clone` copies
//! them.
//!
//! # Closing and conversions
//!
//! Dropping a socket removes it from the poller and closes it. `shutdown`
//! wakes green threads parked on the socket through other handles (a
//! reader sees end of file). The `TryFrom` conversions from std sockets
//! switch them to non-blocking mode and register them; `into_std`,
//! `IntoRawFd` and `From<_> for OwnedFd` deregister and hand the fd back
//! still in non-blocking mode. `FromRawFd` panics if the fd cannot be
//! registered (see its documentation).
//!
//! O_NONBLOCK belongs to the open socket, which every `try_clone` shares:
//! while greenrt handles to a socket remain, leave a std copy of it (from
//! `into_std` on a clone, or `AsFd`) non-blocking. Switched to blocking,
//! it makes the greenrt handles' reads and writes block in the kernel,
//! an OS thread each, past their timeouts (std's timeouts live in the
//! kernel, greenrt's in the handle).

pub(crate) mod addr;
mod inq;
mod socket;
mod tcp;
mod udp;
mod udp_offload;

pub use std::net::{
    AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6,
    ToSocketAddrs,
};

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

pub(crate) use socket::{cvt, Socket, StdRef};
pub(crate) use udp_offload::GSO_KNOB as UDP_GSO_KNOB;

/// The fd traits and std conversions of a socket type `$ty { sock: Socket }`
/// whose std counterpart is `$std`; further fields are listed as
/// `field: initial value` after it.
macro_rules! socket_traits {
    ($ty:ident, $name:literal, $std:ty $(, $field:ident: $init:expr)*) => {
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.sock.raw()
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                // SAFETY: the fd stays open while `self` is borrowed.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sock.raw()) }
            }
        }

        /// Deregisters the socket from the poller and returns its fd, still
        /// in non-blocking mode.
        impl std::os::fd::IntoRawFd for $ty {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.sock.into_owned())
            }
        }

        #[doc = concat!(
                    "Takes ownership of `fd`, makes it non-blocking and registers it with the ",
                    "netpoller.\n\n# Panics\n\n`FromRawFd` cannot return an error: if the fd ",
                    "cannot be registered (it is not open, or epoll refuses it), this closes ",
                    "`fd` and panics with `greenrt::", $name, "::from_raw_fd: cannot register fd ",
                    "...`. Use `TryFrom<", stringify!($std), ">` to get the error instead.",
                    "\n\n# Safety\n\n`fd` must be an open socket that the caller owns and ",
                    "gives up: nothing else may use or close it afterwards."
                )]
        impl std::os::fd::FromRawFd for $ty {
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $ty {
                $ty {
                    // SAFETY: the caller owns `fd`, an open socket (the
                    // trait's contract), and gives it to us.
                    sock: unsafe { $crate::net::Socket::from_raw_fd_or_panic(fd, $name) },
                    $($field: $init,)*
                }
            }
        }

        /// Deregisters the socket and returns its fd (non-blocking).
        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(s: $ty) -> std::os::fd::OwnedFd {
                s.sock.into_owned()
            }
        }

        /// Switches the std socket to non-blocking mode and registers it
        /// with the netpoller.
        impl TryFrom<$std> for $ty {
            type Error = std::io::Error;
            fn try_from(s: $std) -> std::io::Result<$ty> {
                Ok($ty {
                    sock: $crate::net::Socket::new(std::os::fd::OwnedFd::from(s))?,
                    $($field: $init,)*
                })
            }
        }
    };
}
pub(crate) use socket_traits;

/// `Read` and `Write` for a stream socket type and for a shared reference
/// to it (std's pattern: one green thread may read while another writes
/// through `&stream`). The type must have a `sock: Socket` field.
macro_rules! stream_io {
    ($ty:ty) => {
        impl std::io::Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }
            #[inline]
            fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
                (&*self).read_exact(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Read for &$ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.sock.recv_stream(buf)
            }
            #[inline]
            fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
                self.sock.recv_exact(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.sock.read_vectored_stream(bufs)
            }
        }

        impl std::io::Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }
            #[inline]
            fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
                (&*self).write_all(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for &$ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.sock.send(buf)
            }
            #[inline]
            fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
                self.sock.send_all(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.sock.write_vectored(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) use stream_io;

/// The read and write timeouts of a socket type with a `sock: Socket`
/// field, as std's methods (written inside the type's `impl` block).
macro_rules! timeout_methods {
    () => {
        /// Bounds how long one read, receive or peek waits for data. When
        /// it expires the call fails with
        /// [`WouldBlock`](std::io::ErrorKind::WouldBlock) (EAGAIN), as std's
        /// SO_RCVTIMEO does on Linux. `None` waits forever;
        /// `Some(Duration::ZERO)` is an `InvalidInput` error.
        pub fn set_read_timeout(&self, dur: Option<std::time::Duration>) -> std::io::Result<()> {
            self.sock.set_timeout(dur, crate::netpoll::Interest::Read)
        }

        /// Bounds how long one write or send waits for buffer space; on
        /// expiry it fails with [`WouldBlock`](std::io::ErrorKind::WouldBlock).
        /// As for [`set_read_timeout`](Self::set_read_timeout).
        pub fn set_write_timeout(&self, dur: Option<std::time::Duration>) -> std::io::Result<()> {
            self.sock.set_timeout(dur, crate::netpoll::Interest::Write)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.sock.timeout(crate::netpoll::Interest::Read))
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.sock.timeout(crate::netpoll::Interest::Write))
        }
    };
}
pub(crate) use timeout_methods;
