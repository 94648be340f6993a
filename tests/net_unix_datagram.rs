//! `greenrt::os::unix::net::UnixDatagram`: std's API on the netpoller —
//! pairs, bound and unbound sockets, connect, addresses, timeouts,
//! non-blocking mode, shutdown, try_clone, plain OS threads. Each test is
//! fd-checked (it must close every fd it opens).

mod common;
mod net_util;

use std::io;
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::time::{Duration, Instant};

use greenrt::os::unix::net::{SocketAddr, UnixDatagram};
use net_util::{fd_checked, on_runtime, socket_path};

#[test]
fn a_pair_sends_and_receives_and_recv_parks() {
    on_runtime(1, || {
        let (a, b) = UnixDatagram::pair().unwrap();
        let receiver = greenrt::spawn(move || {
            let mut buf = [0u8; 64];
            let n = b.peek(&mut buf).unwrap(); // parks first
            assert_eq!(&buf[..n], b"one");
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
            let n = b.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        // One worker: the parked receiver left it free for us.
        greenrt::sleep(Duration::from_millis(20));
        assert!(!receiver.is_finished());
        assert_eq!(a.send(b"one").unwrap(), 3);
        assert_eq!(a.send(b"two").unwrap(), 3);
        assert_eq!(receiver.join().unwrap(), b"two");
    });
}

#[test]
fn bound_sockets_send_to_and_recv_from_with_addresses() {
    on_runtime(2, || {
        let (pa, pb) = (socket_path("dgram-a"), socket_path("dgram-b"));
        let a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        assert_eq!(a.local_addr().unwrap().as_pathname(), Some(pa.as_path()));
        let (pa2, pb2) = (pa.clone(), pb.clone());
        let receiver = greenrt::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = b.peek_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from.as_pathname()),
                (&b"hello"[..], Some(pa2.as_path()))
            );
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            // Reply to the sender's address.
            b.send_to_addr(b"reply", &from).unwrap();
            b
        });
        greenrt::sleep(Duration::from_millis(10));
        assert_eq!(a.send_to(b"hello", &pb2).unwrap(), 5);
        let mut buf = [0u8; 64];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from.as_pathname()),
            (&b"reply"[..], Some(pb.as_path()))
        );
        let b = receiver.join().unwrap();

        // An unbound socket sends; its address is unnamed.
        let u = UnixDatagram::unbound().unwrap();
        assert!(u.local_addr().unwrap().is_unnamed());
        u.send_to(b"anon", &pb).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"anon");
        assert!(from.is_unnamed());

        // Connected: send/recv and peer_addr.
        u.connect(&pa).unwrap();
        assert_eq!(u.peer_addr().unwrap().as_pathname(), Some(pa.as_path()));
        u.send(b"connected").unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 9);
        assert!(a.peer_addr().is_err());
        drop((a, b, u));
        std::fs::remove_file(&pa).unwrap();
        std::fs::remove_file(&pb).unwrap();
    });
}

#[test]
fn abstract_addresses() {
    on_runtime(1, || {
        let name = format!("greenrt-dgram-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.connect_addr(&addr).unwrap();
        client.send(b"abstract").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.recv(&mut buf).unwrap(), 8);
        let other = UnixDatagram::unbound().unwrap();
        other.send_to_addr(b"to", &addr).unwrap();
        assert_eq!(server.recv(&mut buf).unwrap(), 2);
        assert_eq!(
            server.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
    });
}

#[test]
fn timeouts_nonblocking_and_try_clone() {
    on_runtime(1, || {
        let (a, b) = UnixDatagram::pair().unwrap();
        let t = Duration::from_millis(30);
        b.set_read_timeout(Some(t)).unwrap();
        assert_eq!(b.read_timeout().unwrap(), Some(t));
        let start = Instant::now();
        let e = b.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= t);
        assert_eq!(
            b.set_write_timeout(Some(Duration::ZERO))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(b.write_timeout().unwrap(), None);

        // try_clone copies the handle's settings.
        let c = b.try_clone().unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(t));
        a.send(b"x").unwrap();
        assert_eq!(c.recv(&mut [0u8; 8]).unwrap(), 1);

        b.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let e = b.recv_from(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() < t, "a non-blocking recv waited");
        assert!(b.take_error().unwrap().is_none());
        assert!(format!("{b:?}").starts_with("UnixDatagram"));
    });
}

#[test]
fn shutdown_wakes_a_parked_receiver() {
    on_runtime(2, || {
        let (_a, b) = UnixDatagram::pair().unwrap();
        let b2 = b.try_clone().unwrap();
        let receiver = greenrt::spawn(move || b2.recv(&mut [0u8; 8]));
        greenrt::sleep(Duration::from_millis(20));
        b.shutdown(Shutdown::Read).unwrap();
        assert_eq!(receiver.join().unwrap().unwrap(), 0);
        // Every later receive returns at once.
        let (n, from) = b.recv_from(&mut [0u8; 8]).unwrap();
        assert_eq!(n, 0);
        assert!(from.is_unnamed());
    });
}

#[test]
fn works_on_plain_os_threads_and_across_to_green_threads() {
    fd_checked(|| {
        // No runtime at all.
        let (a, b) = UnixDatagram::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let n = b.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        std::thread::sleep(Duration::from_millis(10));
        a.send(b"os").unwrap();
        assert_eq!(t.join().unwrap(), b"os");

        // An OS thread receives what a green thread sends.
        let rt = common::runtime(1);
        let (a, b) = UnixDatagram::pair().unwrap();
        let sender = rt.spawn(move || {
            greenrt::sleep(Duration::from_millis(10));
            a.send(b"green").unwrap();
        });
        let mut buf = [0u8; 8];
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"green");
        sender.join().unwrap();

        // Conversions.
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let a = UnixDatagram::try_from(a).unwrap();
        a.send(b"std").unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        let a = a.into_std();
        a.send(b"back").unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 4);
    });
}

#[test]
fn a_send_to_a_full_receiver_waits_for_room() {
    on_runtime(2, || {
        let path = socket_path("dgram-full");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let p = path.clone();
        // The receiver's queue holds a few datagrams (net.unix.max_dgram_qlen);
        // sends beyond that must park until it reads, not fail or hang.
        let n = 200;
        let s = greenrt::spawn(move || {
            for i in 0..n {
                sender.send_to(&[i as u8; 8], &p).unwrap();
            }
        });
        greenrt::sleep(Duration::from_millis(30));
        let mut buf = [0u8; 8];
        for i in 0..n {
            assert_eq!(receiver.recv(&mut buf).unwrap(), 8);
            assert_eq!(buf[0], i as u8);
        }
        s.join().unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn a_send_to_a_queue_full_of_other_senders_datagrams_still_goes_through() {
    on_runtime(2, || {
        let path = socket_path("dgram-others");
        let receiver = UnixDatagram::bind(&path).unwrap();
        // Another sender fills the receiver's queue.
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut queued = 0;
        loop {
            match filler.send_to(b"filler", &path) {
                Ok(_) => queued += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(queued > 0);
        // Our send parks until the receiver reads (the datagrams it frees
        // are not ours: a wake-up for the filler alone would strand us).
        let p = path.clone();
        let s = greenrt::spawn(move || {
            let sender = UnixDatagram::unbound().unwrap();
            sender.send_to(b"mine", &p).unwrap()
        });
        greenrt::sleep(Duration::from_millis(30));
        assert!(!s.is_finished(), "a send to a full queue did not wait");
        let mut buf = [0u8; 8];
        for _ in 0..queued {
            assert_eq!(receiver.recv(&mut buf).unwrap(), 6);
        }
        assert_eq!(s.join().unwrap(), 4);
        assert_eq!(receiver.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"mine");
        std::fs::remove_file(&path).unwrap();
    });
}

/// An abstract name may fill `sun_path` but for its leading NUL (107
/// bytes; it needs no terminating NUL), as std takes it: connecting and
/// sending to one was refused as too long.
#[test]
fn the_longest_abstract_names_can_be_connected_and_sent_to() {
    use std::io::{Read, Write};
    let name = |tag: &str| {
        let mut n = format!("greenrt-{tag}-{}-", std::process::id()).into_bytes();
        n.resize(107, b'x');
        SocketAddr::from_abstract_name(&n).unwrap()
    };
    // On a runtime, fd-checked and alone, as every test here.
    on_runtime(1, move || {
        let addr = name("stream");
        let listener = greenrt::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let mut c = greenrt::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        c.write_all(b"long").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"long");

        let to = name("datagram");
        let d = UnixDatagram::bind_addr(&to).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        assert_eq!(sender.send_to_addr(b"long", &to).unwrap(), 4);
        assert_eq!(d.recv(&mut buf).unwrap(), 4);
        sender.connect_addr(&to).unwrap();
        assert_eq!(sender.send(b"long").unwrap(), 4);
        assert_eq!(d.recv(&mut buf).unwrap(), 4);

        // A path needs room for its terminating NUL: 108 bytes is too long.
        let path = format!("/tmp/{}", "p".repeat(103));
        assert_eq!(path.len(), 108);
        let e = greenrt::os::unix::net::UnixStream::connect(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = sender.send_to(b"x", &path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    });
}
