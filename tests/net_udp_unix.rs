//! `greenrt::net::UdpSocket` and `greenrt::os::unix::net` sockets, the
//! sockets on plain OS threads (no runtime), and std conversions, raw
//! fds, non-blocking mode and options.
//!
//! Every test holds `SERIAL` (the tests of this file run one at a time)
//! and checks that it leaves as many fds open as it found: the fd table is
//! shared by the whole process, so overlapping tests would blur the count.
//! Bounds on time are lower bounds (a timeout must not fire early) or
//! generous caps.

mod common;
mod net_util;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use common::expect_panic;
use greenrt::net::{TcpListener, TcpStream, UdpSocket};
use greenrt::os::unix::net::{UnixListener, UnixStream};
use net_util::{echo, echo_client_os, fd_checked, localhost, on_runtime, socket_path, tcp_pair};

#[test]
fn udp_send_to_recv_from_and_connected() {
    on_runtime(2, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = UdpSocket::bind(localhost()).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let receiver = greenrt::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = b.peek_from(&mut buf).unwrap(); // parks first
            assert_eq!((&buf[..n], from), (&b"datagram"[..], a_addr));
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"datagram"[..], a_addr));
            b
        });
        greenrt::sleep(Duration::from_millis(20));
        assert_eq!(a.send_to(b"datagram", b_addr).unwrap(), 8);
        let b = receiver.join().unwrap();
        let none: &[SocketAddr] = &[];
        assert_eq!(
            a.send_to(b"x", none).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );

        // Connected.
        a.connect(b_addr).unwrap();
        b.connect(a_addr).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        let b2 = b.try_clone().unwrap();
        let receiver = greenrt::spawn(move || {
            let mut buf = [0u8; 64];
            let n = b2.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        greenrt::sleep(Duration::from_millis(20));
        a.send(b"connected").unwrap();
        assert_eq!(receiver.join().unwrap(), b"connected");

        // Receive timeout.
        let t = Duration::from_millis(50);
        b.set_read_timeout(Some(t)).unwrap();
        let start = Instant::now();
        let e = b.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= t);
        // Non-blocking mode.
        b.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let e = b.recv_from(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(
            start.elapsed() < t,
            "a non-blocking recv waited for the timeout"
        );
        a.set_broadcast(true).unwrap();
        assert!(a.broadcast().unwrap());
    });
}

#[test]
fn unix_pair_and_listener() {
    on_runtime(2, || {
        // A pair.
        let (a, b) = UnixStream::pair().unwrap();
        let e = greenrt::spawn(move || echo(b));
        let mut a2 = a.try_clone().unwrap();
        a2.write_all(b"through the pair").unwrap();
        let mut buf = [0u8; 16];
        (&a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"through the pair");
        drop((a, a2));
        e.join().unwrap();

        // A listener on a path.
        let path = socket_path("listener");
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let p = path.clone();
        let clients = greenrt::spawn(move || {
            for i in 0..3u8 {
                let mut s = UnixStream::connect(&p).unwrap();
                assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
                s.write_all(&[i]).unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                assert_eq!(b[0], i);
            }
        });
        for s in listener.incoming().take(3) {
            let s = s.unwrap();
            assert!(s.peer_addr().unwrap().is_unnamed());
            echo(s);
        }
        clients.join().unwrap();
        drop(listener);
        std::fs::remove_file(&path).unwrap();

        // An abstract address.
        use std::os::linux::net::SocketAddrExt;
        let name = format!("greenrt-net-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let mut c = UnixStream::connect_addr(&addr).unwrap();
        let (mut s, peer) = listener.accept().unwrap();
        assert!(peer.is_unnamed(), "{peer:?}");
        assert_eq!(
            s.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        c.write_all(b"abstract").unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abstract");

        // Timeouts.
        let t = Duration::from_millis(50);
        c.set_read_timeout(Some(t)).unwrap();
        let start = Instant::now();
        assert_eq!(
            c.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(start.elapsed() >= t);
    });
}

/// A Unix connect to a listener whose backlog is full waits (retrying)
/// until the listener accepts, like a blocking connect.
#[test]
fn unix_connect_waits_for_backlog_room() {
    on_runtime(2, || {
        let path = socket_path("backlog");
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) again on our listening socket: backlog 0 holds
        // one pending connection.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let first = UnixStream::connect(&path).unwrap();
        let p = path.clone();
        let second = greenrt::spawn(move || UnixStream::connect(&p));
        greenrt::sleep(Duration::from_millis(100));
        assert!(
            !second.is_finished(),
            "connect to a full backlog returned at once"
        );
        let (a, _) = listener.accept().unwrap();
        let second = second.join().unwrap().expect("connect after room was made");
        let (b, _) = listener.accept().unwrap();
        drop((first, second, a, b, listener));
        std::fs::remove_file(&path).unwrap();
    });
}

/// The same sockets from plain OS threads (no runtime): they block in
/// poll(2); and an OS thread talking to a green thread.
#[test]
fn sockets_on_plain_os_threads() {
    fd_checked(|| {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            echo(s);
        });
        let client = std::thread::spawn(move || echo_client_os(addr));
        client.join().unwrap();
        server.join().unwrap();

        // Timeouts through poll(2).
        let (c, _s) = tcp_pair();
        let t = Duration::from_millis(50);
        c.set_read_timeout(Some(t)).unwrap();
        let start = Instant::now();
        assert_eq!(
            (&c).read(&mut [0u8; 4]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(start.elapsed() >= t);
        let (a, b) = UnixStream::pair().unwrap();
        let t2 = std::thread::spawn(move || echo(b));
        (&a).write_all(b"os").unwrap();
        let mut buf = [0u8; 2];
        (&a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"os");
        drop(a);
        t2.join().unwrap();

        // A green server, an OS-thread client.
        let rt = common::runtime(1);
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = rt.spawn(move || {
            let (s, _) = listener.accept().unwrap();
            echo(s);
        });
        echo_client_os(addr);
        server.join().unwrap();
    });
}

/// std conversions, raw fds, non-blocking mode, options and Debug.
#[test]
fn conversions_options_and_nonblocking() {
    on_runtime(2, || {
        // From a std listener; accept parks.
        let std_listener = std::net::TcpListener::bind(localhost()).unwrap();
        let listener = TcpListener::try_from(std_listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let h = greenrt::spawn(move || {
            let s = std::net::TcpStream::connect(addr).unwrap(); // completes at once
            TcpStream::try_from(s).unwrap()
        });
        let (server, _) = listener.accept().unwrap();
        let client = h.join().unwrap();

        // Raw fd round trip keeps the connection.
        let fd = client.into_raw_fd();
        // SAFETY: `fd` was just released by into_raw_fd and is ours.
        let mut client = unsafe { TcpStream::from_raw_fd(fd) };
        client.write_all(b"raw").unwrap();
        let mut buf = [0u8; 3];
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"raw");

        // Non-blocking mode: WouldBlock at once, per handle.
        client.set_nonblocking(true).unwrap();
        assert_eq!(
            client.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let blocking_clone = listener.try_clone().unwrap();
        blocking_clone.set_nonblocking(false).unwrap();
        drop(blocking_clone);

        // Options.
        client.set_nodelay(true).unwrap();
        assert!(client.nodelay().unwrap());
        client.set_ttl(42).unwrap();
        assert_eq!(client.ttl().unwrap(), 42);
        assert!(client.take_error().unwrap().is_none());
        let dbg = format!("{client:?}");
        assert!(dbg.contains("TcpStream") && dbg.contains("peer"), "{dbg}");

        // Back to std: the fd leaves the poller, still non-blocking.
        let std_client = client.into_std();
        std_client.set_nonblocking(false).unwrap();
        (&server).write_all(b"std").unwrap();
        let mut s = std_client;
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"std");

        // FromRawFd on an fd epoll refuses (a regular file) panics, and
        // closes it.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = file.into_raw_fd();
        let msg = expect_panic("from_raw_fd of a regular file", || {
            // SAFETY: `fd` is ours (released by into_raw_fd).
            unsafe { TcpStream::from_raw_fd(fd) }
        });
        assert!(msg.contains("cannot register"), "{msg}");
    });
}

/// A writer parked on a full Unix stream wakes when its own side shuts
/// down writing, through another handle, with `BrokenPipe` (as std's
/// blocking write does). epoll reports nothing for that on a Unix socket
/// (a TCP socket says EPOLLOUT), so the writer stayed parked for ever.
#[test]
fn a_writer_parked_on_a_full_unix_stream_wakes_when_its_side_shuts_writing() {
    on_runtime(2, || {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = std::sync::Arc::new(a);
        let a2 = a.clone();
        let writer = greenrt::spawn(move || (&*a2).write_all(&vec![0u8; 64 << 20]));
        // Long enough for the writer to fill the buffer and park.
        greenrt::sleep(Duration::from_millis(100));
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let r = writer
            .join_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the writer is still parked 10 s after the shutdown"))
            .unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    });
}
