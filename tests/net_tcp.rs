//! `greenrt::net` TCP edge and error cases: read/write/connect timeouts,
//! refused and reset connections, half close, exact reads, writes to a
//! closed peer without SIGPIPE, shutdown waking parked green threads and
//! concurrent readers of one stream.
//!
//! Every test holds `SERIAL` (the tests of this file run one at a time)
//! and checks that it leaves as many fds open as it found: the fd table is
//! shared by the whole process, so overlapping tests would blur the count.
//! Bounds on time are lower bounds (a timeout must not fire early) or
//! generous caps.

mod common;
mod net_util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child, TIMEOUT};
use greenrt::net::{TcpListener, TcpStream};
use greenrt::os::unix::net::UnixStream;
use net_util::{fd_checked, localhost, on_runtime, tcp_pair};

#[test]
fn read_timeout_gives_would_block() {
    on_runtime(2, || {
        let (client, mut server) = tcp_pair();
        let t = Duration::from_millis(100);
        assert_eq!(client.read_timeout().unwrap(), None);
        client.set_read_timeout(Some(t)).unwrap();
        assert_eq!(client.read_timeout().unwrap(), Some(t));
        let mut buf = [0u8; 16];
        let start = Instant::now();
        let e = (&client).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(
            start.elapsed() >= t,
            "read timed out early: {:?}",
            start.elapsed()
        );
        let start = Instant::now();
        let e = client.peek(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(start.elapsed() >= t);
        // The stream still works, and data ends a timed read early.
        let w = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(20));
            server.write_all(b"late").unwrap();
            server
        });
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(client.peek(&mut buf).unwrap(), 4);
        (&client).read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"late");
        drop(w.join().unwrap());
        // std's rules for the value.
        let e = client.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        client.set_read_timeout(None).unwrap();
        assert_eq!(client.read_timeout().unwrap(), None);
        // try_clone copies the timeout.
        client.set_read_timeout(Some(t)).unwrap();
        assert_eq!(client.try_clone().unwrap().read_timeout().unwrap(), Some(t));
    });
}

#[test]
fn write_timeout_gives_would_block() {
    on_runtime(2, || {
        let (client, _server) = tcp_pair();
        let t = Duration::from_millis(100);
        client.set_write_timeout(Some(t)).unwrap();
        assert_eq!(client.write_timeout().unwrap(), Some(t));
        assert_eq!(
            client
                .set_write_timeout(Some(Duration::ZERO))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        // The peer never reads: the buffers fill, then a write times out.
        let chunk = vec![7u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let start = Instant::now();
            match (&client).write(&chunk) {
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    assert!(start.elapsed() >= t, "write timed out early");
                    break;
                }
            }
            assert!(total < 1 << 30, "wrote 1 GiB to a peer that never reads");
        }
        assert!(total > 0);
    });
}

#[test]
fn connect_to_closed_port_is_refused() {
    on_runtime(1, || {
        let closed = {
            let l = TcpListener::bind(localhost()).unwrap();
            l.local_addr().unwrap()
        };
        let e = TcpStream::connect(closed).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        // Every address is tried; the first that connects wins.
        let l = TcpListener::bind(localhost()).unwrap();
        let good = l.local_addr().unwrap();
        let s = TcpStream::connect(&[closed, good][..]).unwrap();
        assert_eq!(s.peer_addr().unwrap(), good);
        // None connects: the last error.
        let e = TcpStream::connect(&[closed, closed][..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // No address at all.
        let none: &[SocketAddr] = &[];
        let e = TcpStream::connect(none).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

/// A listener with a zero backlog holds one connection in its accept
/// queue; Linux drops the SYNs of later ones while the queue is full, so
/// their handshakes never finish and `connect_timeout` must give up.
#[test]
fn connect_timeout_on_full_backlog() {
    on_runtime(2, || {
        let l = TcpListener::bind(localhost()).unwrap();
        // SAFETY: listen(2) again on our listening socket, to shrink the
        // backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let addr = l.local_addr().unwrap();
        let e = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let t = Duration::from_millis(200);
        let mut held = Vec::new();
        let timed_out = (0..16).any(|_| {
            let start = Instant::now();
            match TcpStream::connect_timeout(&addr, t) {
                Ok(s) => {
                    held.push(s);
                    false
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    assert!(start.elapsed() >= t, "connect timed out early");
                    true
                }
            }
        });
        assert!(
            timed_out,
            "{} connections to a zero-backlog listener succeeded",
            held.len()
        );
    });
}

#[test]
fn peer_reset_gives_connection_reset() {
    on_runtime(2, || {
        let (mut client, server) = tcp_pair();
        let closer = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(20)); // let the reader park
            common::close_with_reset(server);
        });
        let mut buf = [0u8; 8];
        let e = client.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
        closer.join().unwrap();
    });
}

#[test]
fn half_close_then_reply() {
    on_runtime(2, || {
        let (mut client, mut server) = tcp_pair();
        let srv = greenrt::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap(); // until the client's FIN
            assert_eq!(got, b"request");
            server.write_all(b"reply after EOF").unwrap();
        });
        client.write_all(b"request").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"reply after EOF");
        // Writing after shutdown(Write) is an error, not a signal.
        assert_eq!(
            client.write(b"x").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        srv.join().unwrap();
    });
}

#[test]
fn read_exact_across_pieces_and_eof() {
    on_runtime(2, || {
        let (mut client, mut server) = tcp_pair();
        let srv = greenrt::spawn(move || {
            // Three pieces with pauses, so read_exact parks between them.
            for piece in [&b"abc"[..], b"defg", b"hi"] {
                server.write_all(piece).unwrap();
                greenrt::sleep(Duration::from_millis(5));
            }
            // Then fewer bytes than the next read_exact wants, and EOF.
            server.write_all(b"xyz").unwrap();
        });
        let mut buf = [0u8; 9];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abcdefghi");
        let mut rest = [0u8; 8];
        let e = (&client).read_exact(&mut rest).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        srv.join().unwrap();
        // write_all to a reset peer fails rather than looping.
        let (mut client, server) = tcp_pair();
        common::close_with_reset(server);
        let kind = loop {
            match client.write_all(&[0u8; 64 * 1024]) {
                Ok(()) => greenrt::sleep(Duration::from_millis(1)),
                Err(e) => break e.kind(),
            }
        };
        assert!(
            matches!(
                kind,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{kind:?}"
        );
    });
}

#[test]
fn exact_reads_of_back_to_back_messages() {
    // Reads that fill their buffer exactly learn from the kernel whether
    // bytes are left (TCP_INQ): after the first 8 of 16 bytes sent at once
    // they are, and the second read must not wait for an edge. The writer
    // waits for the reader's acknowledgement before the next message, so
    // no edge would come: a read wrongly taken to have emptied the socket
    // hangs here.
    on_runtime(2, || {
        let (mut client, mut server) = tcp_pair();
        let (ack_tx, ack_rx) = greenrt::sync::mpsc::channel::<()>();
        let srv = greenrt::spawn(move || {
            for round in 0..200u8 {
                server.write_all(&[round; 16]).unwrap();
                ack_rx.recv().unwrap();
            }
        });
        for round in 0..200u8 {
            for _ in 0..2 {
                let mut buf = [0u8; 8];
                client.read_exact(&mut buf).unwrap();
                assert_eq!(buf, [round; 8]);
            }
            ack_tx.send(()).unwrap();
        }
        srv.join().unwrap();
    });
}

#[test]
fn empty_read_after_a_short_read_returns_at_once() {
    // A short read marks the socket drained (the next read waits for an
    // edge); a read into an empty buffer must still return Ok(0) at once,
    // as std's does, while the peer sends nothing.
    on_runtime(2, || {
        let (mut client, mut server) = tcp_pair();
        server.write_all(b"abcd").unwrap();
        let mut buf = [0u8; 8];
        let mut got = 0;
        while got < 4 {
            got += client.read(&mut buf[got..]).unwrap();
        }
        assert_eq!(client.read(&mut []).unwrap(), 0);
        drop(server);
    });
}

/// Writes to a stream whose peer is closed until a write fails; returns
/// the error kind.
fn write_until_error<W: Write>(mut w: W) -> io::ErrorKind {
    for _ in 0..200 {
        match w.write_all(&[1u8; 1024]) {
            Ok(()) => greenrt::sleep(Duration::from_millis(5)),
            Err(e) => return e.kind(),
        }
    }
    panic!("writes to a closed peer kept succeeding");
}

/// In a child with SIGPIPE at its default action (which kills the
/// process): writing to a closed peer must be an error (TCP and Unix).
#[test]
fn write_to_closed_peer_is_an_error_not_sigpipe() {
    if child_tag().as_deref() == Some("sigpipe") {
        // SAFETY: restoring the default action of SIGPIPE (Rust's runtime
        // ignores it), before any thread of ours can depend on it.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        common::runtime(2).block_on(|| {
            let (client, server) = tcp_pair();
            drop(server);
            let kind = write_until_error(&client);
            assert!(
                matches!(
                    kind,
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{kind:?}"
            );
            let (a, b) = UnixStream::pair().unwrap();
            drop(b);
            assert_eq!(write_until_error(&a), io::ErrorKind::BrokenPipe);
        });
        println!("CHILD_OK sigpipe");
        return;
    }
    fd_checked(|| {
        let out = run_child(
            "write_to_closed_peer_is_an_error_not_sigpipe",
            "sigpipe",
            &[],
            TIMEOUT,
        );
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK sigpipe"),
            "child failed (killed by SIGPIPE?):\n{}",
            describe(&out)
        );
    });
}

/// A green thread parked in `read` wakes with end of file when another
/// handle (a `try_clone`) shuts the socket down; one parked in `write` on a
/// full socket wakes with an error.
#[test]
fn shutdown_through_clone_wakes_parked_threads() {
    on_runtime(2, || {
        let (client, _server) = tcp_pair();
        let clone = client.try_clone().unwrap();
        let reader = greenrt::spawn(move || {
            let mut buf = [0u8; 8];
            (&client).read(&mut buf)
        });
        greenrt::sleep(Duration::from_millis(50)); // let it park
        assert!(!reader.is_finished(), "read returned with no data");
        clone.shutdown(Shutdown::Both).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 0);

        let (client, _server) = tcp_pair();
        let clone = client.try_clone().unwrap();
        let writer = greenrt::spawn(move || {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = (&client).write(&chunk) {
                    return e;
                }
            }
        });
        // Time to fill the buffers and park.
        greenrt::sleep(Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "writes to a peer that never reads failed"
        );
        clone.shutdown(Shutdown::Both).unwrap();
        let e = writer.join().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    });
}

/// Several green threads read from one `&TcpStream` at once; each byte
/// written wakes one of them and none is lost.
#[test]
fn concurrent_readers_share_a_stream() {
    on_runtime(2, || {
        let (client, mut server) = tcp_pair();
        let client = Arc::new(client);
        let readers = 4;
        let hs: Vec<_> = (0..readers)
            .map(|_| {
                let c = client.clone();
                greenrt::spawn(move || {
                    let mut b = [0u8; 1];
                    (&*c).read_exact(&mut b).unwrap();
                    b[0]
                })
            })
            .collect();
        for i in 0..readers as u8 {
            greenrt::sleep(Duration::from_millis(20)); // readers park first
            server.write_all(&[i]).unwrap();
        }
        let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..readers as u8).collect::<Vec<_>>());
    });
}
