//! Helpers shared by the `greenrt::net` test files (net_load.rs,
//! net_tcp.rs, net_udp_unix.rs, net_short_reads.rs): fd-checked test
//! bodies, connected pairs, an echo server and its clients, socket paths.
#![allow(dead_code)]

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{self, serial, with_timeout, TIMEOUT};
use greenrt::net::{TcpListener, TcpStream, UdpSocket};
use greenrt::JoinHandle;

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Runs `body` alone (under `SERIAL`) and under `limit`, and checks that
/// it closed every fd it opened.
pub fn fd_checked_for<T, F>(limit: Duration, body: F) -> T
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

pub fn fd_checked<T, F>(body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fd_checked_for(TIMEOUT, body)
}

/// Runs `f` as the main green thread of a runtime with `workers` workers,
/// fd-checked (the runtime is dropped before counting).
pub fn on_runtime<T, F>(workers: usize, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fd_checked(move || common::runtime(workers).block_on(f))
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected TCP pair (client, server side), made in one thread: the
/// kernel completes the handshake before `accept`.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// Echoes until end of file.
pub fn echo<S: Read + Write>(mut s: S) {
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
pub fn echo_server(listener: TcpListener, n: usize) -> JoinHandle<()> {
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

pub fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

/// Sends `data` through an echo server and checks it comes back intact:
/// a writer green thread (on a `try_clone`) sends it all and half-closes,
/// while this one reads until end of file.
pub fn echo_client(addr: SocketAddr, data: Vec<u8>) {
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

pub fn socket_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("greenrt-net-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// `echo_client` for an OS thread (the writer is an OS thread too).
pub fn echo_client_os(addr: SocketAddr) {
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
