//! TCP_INQ: reads that also tell how many bytes are left in the receive
//! queue.
//!
//! A read of a stream socket that fills the caller's whole buffer says
//! nothing about what is left: the next read has to try, and in
//! request/response traffic it usually fails with EAGAIN before the
//! green thread parks. With the `TCP_INQ` option (Linux ≥ 4.18) each
//! recvmsg(2) returns the bytes still queued as a control message; when
//! that is 0 the read emptied the socket, so the next read may wait for
//! epoll's next edge without a syscall, exactly as after a short read
//! (see the `netpoll::desc` module docs for why that is safe). Request /
//! response connections then cost one read per message instead of two.
//!
//! The option is switched on per socket the first time a read fills its
//! buffer (one setsockopt); sockets where it does not apply (Unix
//! streams, older kernels) are remembered and read with plain recv(2).

use std::io::{self, IoSliceMut};
use std::mem;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::sys::{cvt_size, iov_count};

/// Whether a socket's reads use TCP_INQ.
#[derive(Default)]
pub(crate) struct InqState(AtomicU8);

const UNKNOWN: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

impl InqState {
    pub(crate) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed) == ON
    }

    /// After a read that filled its whole buffer: the first time, try to
    /// switch TCP_INQ on for `fd` so later reads learn what is left.
    pub(crate) fn full_read(&self, fd: RawFd) {
        if self.0.load(Ordering::Relaxed) != UNKNOWN {
            return;
        }
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid c_int option value on our fd.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INQ,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        self.0
            .store(if r == 0 { ON } else { OFF }, Ordering::Relaxed);
    }
}

/// Room for one control message carrying a c_int, aligned for cmsghdr.
#[repr(C, align(8))]
struct Control([u8; 32]);

/// recvmsg(2) into `bufs` on a socket with TCP_INQ on. Returns the bytes
/// read and whether the receive queue is empty after them (false when the
/// kernel did not say, or the stream has ended: the kernel then reports
/// a non-zero count so that readers go on to see the end).
pub(crate) fn recv(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> io::Result<(usize, bool)> {
    let mut control = Control([0; 32]);
    // SAFETY: all-zero is a valid msghdr (no name, no buffers yet).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = iov_count(bufs.len()) as usize;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: IoSliceMut is ABI-compatible with iovec on Unix and every
    // slice is valid for writes of its length; the control buffer is
    // valid for `msg_controllen` bytes.
    let n = cvt_size(unsafe { libc::recvmsg(fd, &mut msg, 0) })?;
    Ok((n, queue_empty(&msg)))
}

/// Whether the TCP_CM_INQ control message in `msg` says 0 bytes are left.
fn queue_empty(msg: &libc::msghdr) -> bool {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR checks the
    // control length and returns null when there is no message.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    if cmsg.is_null() {
        return false;
    }
    // SAFETY: non-null, so a whole cmsghdr lies in the control buffer.
    let hdr = unsafe { &*cmsg };
    // SAFETY: CMSG_LEN is arithmetic on its argument.
    let want = unsafe { libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) } as usize;
    if hdr.cmsg_level != libc::SOL_TCP || hdr.cmsg_type != libc::TCP_CM_INQ || hdr.cmsg_len < want {
        return false;
    }
    // SAFETY: the header says a c_int of data follows it, inside the
    // buffer; it may be unaligned.
    let left = unsafe { libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned() };
    left == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    fn reads_say_when_the_queue_is_empty_but_not_at_the_end() {
        let (mut tx, rx) = pair();
        let state = InqState::default();
        state.full_read(rx.as_raw_fd());
        assert!(state.is_on(), "TCP_INQ is available on Linux ≥ 4.18");
        let mut buf = [0u8; 8];
        tx.write_all(b"0123456789abcdef").unwrap();
        // Blocking reads: the bytes are there (loopback) or soon will be.
        let mut got = 0;
        let mut last = (0, false);
        while got < 16 {
            last = recv(rx.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)]).unwrap();
            got += last.0;
            if got < 16 {
                assert!(!last.1, "bytes are left after {got} of 16");
            }
        }
        assert!(last.1, "the last read emptied the queue");
        // Before an end of stream the kernel never says empty, so readers
        // go on to read the EOF.
        tx.write_all(b"xyz").unwrap();
        tx.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (n, empty) = recv(rx.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)]).unwrap();
        assert_eq!((n, empty), (3, false));
        assert_eq!(
            recv(rx.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)])
                .unwrap()
                .0,
            0
        );
    }

    #[test]
    fn not_for_unix_streams() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let state = InqState::default();
        state.full_read(a.as_raw_fd());
        assert!(!state.is_on());
    }
}
