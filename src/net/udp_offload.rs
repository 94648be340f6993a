//! UDP segmentation offload (GSO) and receive offload (GRO) for
//! `UdpSocket`: one sendmsg(2) hands the kernel up to 64 datagrams of one
//! size (cmsg `UDP_SEGMENT`), and with `UDP_GRO` on one recvmsg(2) returns
//! a run of same-size datagrams with their size in a cmsg.
//!
//! Support is probed once per process, as quinn-udp does: `UDP_SEGMENT`
//! set on a throwaway socket (then reset to 0). Without it the datagrams
//! go out through sendmmsg(2), up to 64 per call. A GSO send that fails
//! with EIO (the kernel refuses GSO on routes through IPsec, and older
//! kernels on devices without checksum offload: some NICs and tunnels;
//! the 6.18 kernel this was written on checksums in software instead) is
//! resent datagram by datagram, and GSO stays off for that
//! socket; quinn-udp drops such a batch instead. EINVAL (a segment larger
//! than the route's MTU allows, or SO_NO_CHECK) resends that batch alone.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::sys::socket::{
    self as nixsock, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, SockaddrStorage,
};

use super::addr::SockAddr;
use super::socket::{cvt, Socket};
use crate::netpoll::Interest;

/// The kernel's `UDP_MAX_SEGMENTS`: at most this many datagrams per GSO
/// send (and per sendmmsg(2) call of the fallback).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// The largest UDP payload over IPv4 (65535 - 20 - 8): the bound on one
/// datagram and on the sum of one GSO send's datagrams.
pub(crate) const MAX_PAYLOAD: usize = 65_507;

/// The environment knob that turns GSO off (`GREENRT_UDP_GSO=off`).
pub(crate) const GSO_KNOB: &str = "GREENRT_UDP_GSO";

/// Per-socket offload state: whether a GSO send has failed with EIO.
#[derive(Debug, Default)]
pub(crate) struct Offload {
    gso_broken: AtomicBool,
}

impl Offload {
    /// A copy for a `try_clone` of the socket.
    pub(crate) fn copy(&self) -> Offload {
        Offload {
            gso_broken: AtomicBool::new(self.gso_broken.load(Ordering::Relaxed)),
        }
    }

    /// Datagrams one send may carry: 64 with GSO, 1 without.
    pub(crate) fn max_segments(&self) -> usize {
        if self.gso_broken.load(Ordering::Relaxed) {
            1
        } else {
            process_gso_segments()
        }
    }

    fn mark_broken(&self) {
        self.gso_broken.store(true, Ordering::Relaxed);
    }
}

/// GSO's segment limit in this process: probed once; 1 when the kernel
/// lacks `UDP_SEGMENT` or `GREENRT_UDP_GSO` is off (a value that is not a
/// boolean counts as unset: `Builder::build` reports it).
fn process_gso_segments() -> usize {
    static SEGMENTS: OnceLock<usize> = OnceLock::new();
    *SEGMENTS.get_or_init(|| match crate::env::flag(GSO_KNOB) {
        Ok(Some(false)) => 1,
        _ => probe_gso(),
    })
}

fn probe_gso() -> usize {
    let family = [AddressFamily::Inet, AddressFamily::Inet6];
    let Some(fd) = family
        .into_iter()
        .find_map(|f| nixsock::socket(f, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).ok())
    else {
        return 1;
    };
    // quinn-udp's probe: a kernel that knows UDP_SEGMENT takes the option.
    match nixsock::setsockopt(&fd, sockopt::UdpGsoSegment, &1200) {
        Ok(()) => {
            let _ = nixsock::setsockopt(&fd, sockopt::UdpGsoSegment, &0);
            MAX_SEGMENTS
        }
        Err(_) => 1,
    }
}

/// A segment size is that of one datagram: 1..=65507 bytes.
pub(crate) fn check_segment_size(segment_size: usize) -> io::Result<()> {
    if segment_size == 0 || segment_size > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UDP segment size must be 1..={MAX_PAYLOAD} bytes, got {segment_size}"),
        ));
    }
    Ok(())
}

/// Bytes of `segment_size` datagrams one send may carry: at most
/// `max_segments` of them and (with GSO, `max_segments` > 1) at most
/// [`MAX_PAYLOAD`] in all; never less than one datagram.
pub(crate) fn batch_len(segment_size: usize, max_segments: usize, gso: bool) -> usize {
    let by_size = if gso {
        MAX_PAYLOAD / segment_size
    } else {
        usize::MAX
    };
    segment_size * max_segments.min(by_size).max(1)
}

/// How a batch of datagrams leaves: one GSO send, or one datagram each.
/// The splitting logic ([`send_batches`]) is written against this so that
/// tests can inject the failures a real NIC gives.
pub(crate) trait SegmentWire {
    /// Whether GSO may be tried now.
    fn gso_usable(&self) -> bool;
    /// Sends `batch` (two or more datagrams) in one GSO send.
    fn send_gso(&mut self, batch: &[u8]) -> io::Result<()>;
    /// Sends some of `batch`'s datagrams one each; returns the bytes sent
    /// (whole datagrams, at least one).
    fn send_each(&mut self, batch: &[u8]) -> io::Result<usize>;
    /// A GSO send failed with EIO: no more GSO on this socket.
    fn gso_broken(&mut self);
}

/// Sends `buf` as datagrams of `segment_size` through `wire`, batch by
/// batch. Returns the bytes sent; an error after some datagrams went out
/// returns their bytes instead (a multiple of `segment_size`), as a short
/// `write` does.
pub(crate) fn send_batches(
    wire: &mut impl SegmentWire,
    buf: &[u8],
    segment_size: usize,
) -> io::Result<usize> {
    let mut sent = 0;
    let result = (|| {
        while sent < buf.len() {
            let gso = wire.gso_usable();
            let len = batch_len(segment_size, MAX_SEGMENTS, gso).min(buf.len() - sent);
            let batch = &buf[sent..sent + len];
            if gso && len > segment_size {
                match wire.send_gso(batch) {
                    Ok(()) => {
                        sent += len;
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => wire.gso_broken(),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
            // Without GSO, or after it failed: the same datagrams one each.
            let mut rest = batch;
            while !rest.is_empty() {
                let n = wire.send_each(rest)?;
                rest = &rest[n..];
                sent += n;
            }
        }
        Ok(())
    })();
    match result {
        Err(e) if sent == 0 => Err(e),
        _ => Ok(sent),
    }
}

/// The real wire: a registered socket, parking on a full send buffer
/// until `deadline`.
struct SocketWire<'a> {
    sock: &'a Socket,
    offload: &'a Offload,
    deadline: Option<u64>,
    segment_size: usize,
    /// The destination for each form of send, or None when connected.
    to: Option<(SockaddrStorage, SockAddr)>,
}

impl SegmentWire for SocketWire<'_> {
    fn gso_usable(&self) -> bool {
        self.offload.max_segments() > 1
    }

    fn send_gso(&mut self, batch: &[u8]) -> io::Result<()> {
        // Checked against MAX_PAYLOAD, so it fits.
        let segment = self.segment_size as u16;
        let to = self.to.as_ref().map(|(nix_addr, _)| nix_addr);
        self.sock.io_until(Interest::Write, self.deadline, |fd| {
            let iov = [IoSlice::new(batch)];
            let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
            nixsock::sendmsg(fd, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, to).map_err(io::Error::from)
        })?;
        Ok(())
    }

    fn send_each(&mut self, batch: &[u8]) -> io::Result<usize> {
        let segment_size = self.segment_size;
        let to = self.to.as_ref().map(|(_, addr)| addr);
        let mut iovs: Vec<libc::iovec> = batch
            .chunks(segment_size)
            .map(|d| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero is a valid mmsghdr (no name, no control).
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                if let Some(addr) = to {
                    h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = addr.len;
                }
                h
            })
            .collect();
        let count = self
            .sock
            .io_until(Interest::Write, self.deadline, |fd| sendmmsg(fd, &mut hdrs))?;
        Ok((count * segment_size).min(batch.len()))
    }

    fn gso_broken(&mut self) {
        self.offload.mark_broken();
    }
}

/// sendmmsg(2) of `hdrs` (at most [`MAX_SEGMENTS`]) with MSG_NOSIGNAL:
/// the number of datagrams sent.
fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: every header points at one iovec over a live slice of the
    // caller's buffer and, if set, at a live sockaddr of `msg_namelen`
    // bytes; `hdrs.len()` is at most MAX_SEGMENTS, so the count fits.
    let n = cvt(unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_NOSIGNAL,
        )
    })?;
    Ok(n as usize)
}

/// `UdpSocket::send_segments{,_to}`: `buf` as datagrams of
/// `segment_size`, parking while the send buffer is full, for at most the
/// write timeout in all.
pub(crate) fn send_segments(
    sock: &Socket,
    offload: &Offload,
    buf: &[u8],
    segment_size: usize,
    to: Option<&SocketAddr>,
) -> io::Result<usize> {
    check_segment_size(segment_size)?;
    let to = to.map(|a| (SockaddrStorage::from(*a), SockAddr::from_std(a)));
    sock.timed(Interest::Write, |deadline| {
        let mut wire = SocketWire {
            sock,
            offload,
            deadline,
            segment_size,
            to,
        };
        send_batches(&mut wire, buf, segment_size)
    })
}

/// `UdpSocket::recv_segments`: one recvmsg(2); the segment size is the
/// `UDP_GRO` cmsg's, or the byte count when there is none.
pub(crate) fn recv_segments(sock: &Socket, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    sock.io(Interest::Read, |fd| {
        let mut cmsg_buf = nix::cmsg_space!(libc::c_int);
        let mut iov = [IoSliceMut::new(&mut *buf)];
        let msg = nixsock::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg_buf), MsgFlags::empty())?;
        let mut segment_size = msg.bytes;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::UdpGroSegments(size) = cmsg {
                segment_size = usize::try_from(size).unwrap_or(msg.bytes);
            }
        }
        Ok((msg.bytes, segment_size))
    })
}

#[cfg(test)]
mod tests;
