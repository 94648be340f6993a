//! UDP: `UdpSocket`.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::addr::each_addr;
use super::socket::{Socket, StdRef};
use super::udp_offload::{self, Offload};

/// A UDP socket: std's [`UdpSocket`](std::net::UdpSocket) whose blocking
/// calls park the calling green thread instead of blocking its worker.
///
/// The socket is closed when the value is dropped.
pub struct UdpSocket {
    sock: Socket,
    /// Whether GSO failed on this socket (see `send_segments`).
    offload: Offload,
}

impl UdpSocket {
    /// Creates a UDP socket bound to `addr` (each resolved address is
    /// tried in turn; the last error is returned if none works).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        UdpSocket::try_from(std::net::UdpSocket::bind(addr)?)
    }

    /// Receives one datagram, parking until one arrives (or the read
    /// timeout passes: [`WouldBlock`](io::ErrorKind::WouldBlock)). Bytes
    /// beyond `buf` are discarded.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf, 0)
    }

    /// As [`recv_from`](Self::recv_from), leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf, libc::MSG_PEEK)
    }

    /// Sends `buf` to the first address `addr` resolves to, parking while
    /// the send buffer is full (at most the write timeout).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        match addr.to_socket_addrs()?.next() {
            Some(addr) => self.sock.send_to(buf, &addr),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            )),
        }
    }

    /// The address of the peer this socket is connected to.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// A new handle on the same socket (a dup), with a copy of this
    /// handle's timeouts and non-blocking mode (see
    /// [`TcpStream::try_clone`](super::TcpStream::try_clone)).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            sock: self.sock.try_clone()?,
            offload: self.offload.copy(),
        })
    }

    super::timeout_methods!();

    /// SO_BROADCAST.
    pub fn set_broadcast(&self, broadcast: bool) -> io::Result<()> {
        self.std().set_broadcast(broadcast)
    }

    /// SO_BROADCAST.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.std().broadcast()
    }

    /// IP_MULTICAST_LOOP.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.std().set_multicast_loop_v4(on)
    }

    /// IP_MULTICAST_LOOP.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.std().multicast_loop_v4()
    }

    /// IP_MULTICAST_TTL.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.std().set_multicast_ttl_v4(ttl)
    }

    /// IP_MULTICAST_TTL.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.std().multicast_ttl_v4()
    }

    /// IPV6_MULTICAST_LOOP.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.std().set_multicast_loop_v6(on)
    }

    /// IPV6_MULTICAST_LOOP.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.std().multicast_loop_v6()
    }

    /// IP_ADD_MEMBERSHIP.
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.std().join_multicast_v4(multiaddr, interface)
    }

    /// IPV6_ADD_MEMBERSHIP.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.std().join_multicast_v6(multiaddr, interface)
    }

    /// IP_DROP_MEMBERSHIP.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.std().leave_multicast_v4(multiaddr, interface)
    }

    /// IPV6_DROP_MEMBERSHIP.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.std().leave_multicast_v6(multiaddr, interface)
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

    /// Connects the socket to a remote address (each resolved address is
    /// tried in turn), so that `send` and `recv` may be used and datagrams
    /// from elsewhere are dropped. Never waits.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let std = self.std();
        each_addr(addr, |a| std.connect(a))
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf, 0)
    }

    /// As [`recv`](Self::recv), leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf, libc::MSG_PEEK)
    }

    /// Sends `buf` to the connected peer as datagrams of `segment_size`
    /// bytes each (the last one may be shorter), in as few syscalls as
    /// the kernel allows: with UDP segmentation offload (GSO) one
    /// sendmsg(2) carries up to [`max_gso_segments`](Self::max_gso_segments)
    /// datagrams and at most 65507 bytes, without it sendmmsg(2) sends up
    /// to 64. Larger buffers take several calls. Datagram boundaries are
    /// kept: a receiver sees `buf.len().div_ceil(segment_size)` datagrams.
    ///
    /// Parks while the send buffer is full, for at most the write timeout
    /// in all. Returns `buf.len()`, or, when an error (or the timeout)
    /// stops it after some datagrams went out, the bytes of those (a
    /// multiple of `segment_size`); the error itself is returned only when
    /// nothing was sent. An empty `buf` sends nothing.
    ///
    /// A GSO send the kernel refuses with EIO (IPsec routes; devices
    /// without checksum offload on older kernels) is resent one
    /// datagram each, and this socket uses no GSO afterwards.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a `segment_size`
    /// of 0 or above 65507; otherwise the OS errors of `send`.
    pub fn send_segments(&self, buf: &[u8], segment_size: usize) -> io::Result<usize> {
        udp_offload::send_segments(&self.sock, &self.offload, buf, segment_size, None)
    }

    /// As [`send_segments`](Self::send_segments), to the first address
    /// `addr` resolves to.
    pub fn send_segments_to(
        &self,
        buf: &[u8],
        segment_size: usize,
        addr: impl ToSocketAddrs,
    ) -> io::Result<usize> {
        udp_offload::check_segment_size(segment_size)?;
        match addr.to_socket_addrs()?.next() {
            Some(addr) => udp_offload::send_segments(
                &self.sock,
                &self.offload,
                buf,
                segment_size,
                Some(&addr),
            ),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            )),
        }
    }

    /// Turns UDP receive offload (`UDP_GRO`) on or off: with it on, the
    /// kernel may hand a run of same-size datagrams from one sender to
    /// one [`recv_segments`](Self::recv_segments) call. Other receive
    /// calls then see such runs as one datagram: use `recv_segments`.
    ///
    /// # Errors
    ///
    /// The OS error when the kernel lacks `UDP_GRO` (before Linux 5.0).
    pub fn set_gro(&self, on: bool) -> io::Result<()> {
        nix::sys::socket::setsockopt(self, nix::sys::socket::sockopt::UdpGroSegment, &on)?;
        Ok(())
    }

    /// Receives datagrams, parking until some arrive (or the read timeout
    /// passes: [`WouldBlock`](io::ErrorKind::WouldBlock)). Returns the
    /// bytes received and the segment size: with
    /// [`set_gro(true)`](Self::set_gro) the bytes may be several
    /// datagrams of that size back to back (the last one may be
    /// shorter); otherwise they are one datagram and the segment size is
    /// its length. Bytes beyond `buf` are discarded: give it 65535 bytes
    /// to miss nothing.
    pub fn recv_segments(&self, buf: &mut [u8]) -> io::Result<(usize, usize)> {
        udp_offload::recv_segments(&self.sock, buf)
    }

    /// How many datagrams one [`send_segments`](Self::send_segments)
    /// syscall may carry: 64 where the kernel has UDP segmentation
    /// offload (Linux 4.18), 1 where it has not, where
    /// `GREENRT_UDP_GSO=off`, or once a GSO send failed with EIO on this
    /// socket.
    pub fn max_gso_segments(&self) -> usize {
        self.offload.max_segments()
    }

    /// With `true`, calls that would wait return
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) at once. This handle only.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Deregisters the socket and returns it as a std socket, left in
    /// non-blocking mode and without this handle's timeouts.
    pub fn into_std(self) -> std::net::UdpSocket {
        std::net::UdpSocket::from(self.sock.into_owned())
    }

    fn std(&self) -> StdRef<'_, std::net::UdpSocket> {
        self.sock.std()
    }
}

super::socket_traits!(
    UdpSocket,
    "net::UdpSocket",
    std::net::UdpSocket,
    offload: Default::default()
);

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UdpSocket");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.sock.raw()).finish()
    }
}
