//! `greenrt::net` and `greenrt::os::unix::net` on the netpoller: TCP, UDP
//! and Unix sockets between green threads, from plain OS threads, under
//! load (10 000 connections) and in the error cases (timeouts, refused and
//! reset connections, half close, closed peers without SIGPIPE, shutdown
//! waking parked green threads).
//!
//! Every test holds `SERIAL` (the tests of this file run one at a time)
//! and checks that it leaves as many fds open as it found: the fd table is
//! shared by the whole process, so overlapping tests would blur the count.
//! Bounds on time are lower bounds (a timeout must not fire early) or
//! generous caps.

mod common;

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, expect_panic, run_child, serial, with_timeout, TIMEOUT};
use greenrt::net::{TcpListener, TcpStream, UdpSocket};
use greenrt::os::unix::net::{UnixListener, UnixStream};
use greenrt::JoinHandle;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Runs `body` alone (under `SERIAL`) and under `limit`, and checks that
/// it closed every fd it opened.
fn fd_checked_for<T, F>(limit: Duration, body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _serial = serial();
    // The poller's epoll fd and eventfd are opened once, on first use, and
    // stay: make sure they exist before counting.
    drop(UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket"));
    let before = open_fds();
    let v = with_timeout(limit, body);
    let after = open_fds();
    assert_eq!(
        before, after,
        "the test leaked fds: {before} open before it, {after} after"
    );
    v
}

fn fd_checked<T, F>(body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fd_checked_for(TIMEOUT, body)
}

/// Runs `f` as the main green thread of a runtime with `workers` workers,
/// fd-checked (the runtime is dropped before counting).
fn on_runtime<T, F>(workers: usize, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fd_checked(move || common::runtime(workers).block_on(f))
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected TCP pair (client, server side), made in one thread: the
/// kernel completes the handshake before `accept`.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// Echoes until end of file.
fn echo<S: Read + Write>(mut s: S) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("echo: read");
        if n == 0 {
            return;
        }
        s.write_all(&buf[..n]).expect("echo: write");
    }
}

/// Accepts `n` connections and echoes on each in its own green thread;
/// returns when all of them have ended.
fn echo_server(listener: TcpListener, n: usize) -> JoinHandle<()> {
    greenrt::spawn(move || {
        let handlers: Vec<_> = (0..n)
            .map(|_| {
                let (s, _) = listener.accept().expect("accept");
                greenrt::spawn(move || echo(s))
            })
            .collect();
        for h in handlers {
            h.join().expect("echo handler panicked");
        }
    })
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

/// Sends `data` through an echo server and checks it comes back intact:
/// a writer green thread (on a `try_clone`) sends it all and half-closes,
/// while this one reads until end of file.
fn echo_client(addr: SocketAddr, data: Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    assert_eq!(stream.peer_addr().unwrap(), addr);
    let writer = stream.try_clone().expect("try_clone");
    let expected = data.clone();
    let w = greenrt::spawn(move || {
        let mut writer = writer;
        let (head, tail) = data.split_at(data.len() / 2);
        // Vectored, then plain writes.
        let mut sent = 0;
        while sent < head.len() {
            let half = (head.len() - sent) / 2;
            let bufs = [
                IoSlice::new(&head[sent..sent + half]),
                IoSlice::new(&head[sent + half..]),
            ];
            sent += writer.write_vectored(&bufs).expect("write_vectored");
        }
        writer.write_all(tail).expect("write_all");
        writer.shutdown(Shutdown::Write).expect("shutdown(Write)");
    });
    let mut got = Vec::with_capacity(expected.len());
    let mut a = [0u8; 1000];
    let mut b = [0u8; 3000];
    loop {
        let n = {
            let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
            stream.read_vectored(&mut bufs).expect("read_vectored")
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&a[..n.min(1000)]);
        if n > 1000 {
            got.extend_from_slice(&b[..n - 1000]);
        }
    }
    w.join().expect("writer panicked");
    assert!(
        got == expected,
        "echoed data differs ({} bytes back of {})",
        got.len(),
        expected.len()
    );
}

fn echo_round_trip(workers: usize) {
    on_runtime(workers, || {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = 4;
        let server = echo_server(listener, clients);
        // 1 MiB each: far more than the socket buffers, so writers park.
        let cs: Vec<_> = (0..clients)
            .map(|i| greenrt::spawn(move || echo_client(addr, pattern(1 << 20, i))))
            .collect();
        for c in cs {
            c.join().expect("client panicked");
        }
        server.join().expect("server panicked");
    });
}

#[test]
fn echo_round_trip_one_worker() {
    echo_round_trip(1);
}

#[test]
fn echo_round_trip_two_workers() {
    echo_round_trip(2);
}

const MANY: usize = 10_000;
const MANY_ADDR_ENV: &str = "GREENRT_NET_ECHO_ADDR";

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid rlimit; raising the soft limit up to the hard one is
    // always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    lim.rlim_cur
}

/// A counting semaphore for green threads.
struct Semaphore {
    count: greenrt::sync::Mutex<usize>,
    cv: greenrt::sync::Condvar,
}

impl Semaphore {
    fn acquire(&self) {
        let g = self.count.lock().unwrap();
        let mut g = self.cv.wait_while(g, |c| *c == 0).unwrap();
        *g -= 1;
    }
    fn release(&self) {
        *self.count.lock().unwrap() += 1;
        self.cv.notify_one();
    }
}

/// The child's side of `ten_thousand_concurrent_connections`: MANY green
/// threads connect (at most 64 handshakes in flight, below the listen
/// backlog), do a round trip, wait until every one of them is connected,
/// do a second round trip and close.
fn many_clients(addr: SocketAddr) {
    raise_nofile();
    common::runtime(2).block_on(move || {
        let sem = Arc::new(Semaphore {
            count: greenrt::sync::Mutex::new(64),
            cv: greenrt::sync::Condvar::new(),
        });
        let all_connected = greenrt::sync::WaitGroup::new();
        all_connected.add(MANY);
        let clients: Vec<_> = (0..MANY)
            .map(|i| {
                let sem = sem.clone();
                let all_connected = all_connected.clone();
                greenrt::spawn(move || {
                    let id = (i as u64).to_le_bytes();
                    let mut back = [0u8; 8];
                    sem.acquire();
                    let mut s = TcpStream::connect(addr).expect("client connect");
                    s.write_all(&id).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, id);
                    sem.release();
                    all_connected.done();
                    all_connected.wait();
                    s.write_all(&id).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, id);
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client panicked");
        }
    });
}

/// 10 000 connections open at once through an echo server inside greenrt
/// (2 workers). The clients run in a child process (also on greenrt), so
/// each process needs about 10 000 fds, not 20 000. The server counts
/// connections open at once: all 10 000 must be.
#[test]
fn ten_thousand_concurrent_connections() {
    if child_tag().as_deref() == Some("many-clients") {
        let addr = std::env::var(MANY_ADDR_ENV).unwrap().parse().unwrap();
        many_clients(addr);
        println!("CHILD_OK many-clients");
        return;
    }
    let limit = raise_nofile();
    let needed = MANY as u64 + 512;
    if limit < needed {
        eprintln!(
            "skipping ten_thousand_concurrent_connections: RLIMIT_NOFILE hard limit is {limit}, \
             {needed} fds are needed"
        );
        return;
    }
    fd_checked_for(Duration::from_secs(180), || {
        let rt = common::runtime(2);
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (o, m) = (open.clone(), max_open.clone());
        let server = rt.spawn(move || {
            let handlers: Vec<_> = (0..MANY)
                .map(|_| {
                    let (s, _) = listener.accept().expect("accept");
                    let now = o.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                    let o = o.clone();
                    greenrt::spawn(move || {
                        echo(s);
                        o.fetch_sub(1, SeqCst);
                    })
                })
                .collect();
            for h in handlers {
                h.join().expect("echo handler panicked");
            }
        });
        let out = run_child(
            "ten_thousand_concurrent_connections",
            "many-clients",
            &[(MANY_ADDR_ENV, Some(&addr.to_string()))],
            Duration::from_secs(150),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD_OK many-clients"),
            "client process failed:\n{}",
            describe(&out)
        );
        server.join().expect("server panicked");
        assert_eq!(open.load(SeqCst), 0);
        assert_eq!(
            max_open.load(SeqCst),
            MANY,
            "not all connections were open at once"
        );
    });
}

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

fn socket_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("greenrt-net-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
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

/// `echo_client` for an OS thread (the writer is an OS thread too).
fn echo_client_os(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = pattern(256 * 1024, 3);
    let expected = data.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    w.join().unwrap();
    assert!(got == expected, "echoed data differs");
}

/// One worker, one green thread computing without ever yielding, and 20
/// echo pairs doing round trips: with preemption the I/O makes progress
/// and finishes while the hog still runs.
#[test]
fn io_progresses_beside_a_cpu_hog_on_one_worker() {
    on_runtime(1, || {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let hog = greenrt::spawn(move || {
            let start = Instant::now();
            let mut x = 0u64;
            while !d.load(SeqCst) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                if start.elapsed() > Duration::from_secs(40) {
                    return false; // the I/O never finished
                }
            }
            true
        });
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let pairs = 20;
        let server = echo_server(listener, pairs);
        let clients: Vec<_> = (0..pairs)
            .map(|i| {
                greenrt::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    for round in 0..20u8 {
                        s.write_all(&[i as u8, round]).unwrap();
                        let mut b = [0u8; 2];
                        s.read_exact(&mut b).unwrap();
                        assert_eq!(b, [i as u8, round]);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        server.join().unwrap();
        done.store(true, SeqCst);
        assert!(hog.join().unwrap(), "the I/O did not finish beside the hog");
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

/// A short read lets the next read wait for readiness without a syscall
/// (the socket is known to be drained). That must never lose data or an
/// end of stream: a writer (an OS thread, so its timing is independent of
/// the reader's worker) sends small chunks with irregular gaps and then
/// ends the stream (FIN or, for every fourth connection, RST); the reader
/// reads with a buffer much larger than the chunks. A lost wake-up shows
/// as the read timeout.
#[test]
fn short_reads_never_lose_data_or_end_of_stream() {
    const CONNECTIONS: usize = 200;
    on_runtime(2, || {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            for c in 0..CONNECTIONS {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                for i in 0..(c % 7 + 1) {
                    s.write_all(&pattern(1 + (c * 13 + i * 5) % 90, c + i))
                        .unwrap();
                    match (c + i) % 3 {
                        0 => {}
                        1 => std::thread::yield_now(),
                        _ => std::thread::sleep(Duration::from_micros(((c * 37) % 200) as u64)),
                    }
                }
                if c % 4 == 3 {
                    common::close_with_reset(s);
                } else {
                    drop(s);
                }
            }
        });
        let readers: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let (mut s, _) = listener.accept().unwrap();
                greenrt::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let expected: Vec<u8> = (0..(c % 7 + 1))
                        .flat_map(|i| pattern(1 + (c * 13 + i * 5) % 90, c + i))
                        .collect();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && c % 4 == 3 => {
                                break
                            }
                            Err(e) => {
                                panic!("connection {c}: read failed after {} bytes: {e}", got.len())
                            }
                        }
                    }
                    // A reset may discard bytes the reader had not read yet.
                    if c % 4 == 3 {
                        assert!(expected.starts_with(&got), "connection {c}: wrong bytes");
                    } else {
                        assert_eq!(got, expected, "connection {c}: wrong bytes");
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        writer.join().unwrap();
    });
}

/// After a short read the socket counts as drained: more data still wakes
/// the reader, a read timeout still fires, and `read_vectored` and a
/// `try_clone` see the same state.
#[test]
fn reads_after_a_short_read() {
    on_runtime(2, || {
        let (mut client, server) = tcp_pair();
        let mut reader = server.try_clone().unwrap();
        let mut buf = [0u8; 64];
        client.write_all(b"first").unwrap();
        assert_eq!(reader.read(&mut buf).unwrap(), 5); // short: drained
        let late = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(30));
            client.write_all(b"second").unwrap();
            client
        });
        let mut server = server;
        assert_eq!(server.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"second");
        let mut client = late.join().unwrap();
        // Drained again: a timeout still gives WouldBlock.
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t = Instant::now();
        let e = server.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(40));
        client.write_all(b"vectored").unwrap();
        let (mut a, mut b) = ([0u8; 4], [0u8; 32]);
        let n = server
            .read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
            .unwrap();
        assert_eq!(n, 8);
        assert_eq!((&a, &b[..4]), (b"vect", &b"ored"[..]));
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
    });
}

/// Streams of small chunks written without pause (by OS threads) to
/// readers on 2 workers: reads are short or full in every mix while edges
/// keep coming, and every byte must arrive. A lost wake-up stalls a
/// reader until its read timeout. (The narrowest race, an edge notified
/// between a short read and its marking, is rare here; the unit tests in
/// `netpoll::desc` check that rule directly.)
#[test]
fn streamed_small_chunks_all_arrive() {
    const STREAMS: usize = 8;
    const CHUNKS: usize = 20_000;
    const CHUNK: usize = 10;
    on_runtime(2, || {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let writers: Vec<_> = (0..STREAMS)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_nodelay(true).unwrap();
                    for i in 0..CHUNKS {
                        s.write_all(&[i as u8; CHUNK]).unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..STREAMS)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                greenrt::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let (mut total, mut buf) = (0, [0u8; 1024]);
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => return total,
                            Ok(n) => total += n,
                            Err(e) => panic!("read failed after {total} bytes: {e}"),
                        }
                    }
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.join().unwrap(), CHUNKS * CHUNK);
        }
        for w in writers {
            w.join().unwrap();
        }
    });
}
