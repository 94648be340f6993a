//! `greenrt::io::copy` / `copy_bidirectional`: which path runs (stats,
//! fallbacks to the buffered path, other types) and timeouts.
//!
//! The proxy runs on a greenrt runtime (2 workers); the client and the
//! upstream server are plain OS threads with std's blocking sockets (or,
//! for the 1 000-connection test, green threads of a second runtime), so
//! they test the proxy without sharing its code. Every test holds
//! `SERIAL`: they compare process-wide fd counts and copy counters, which
//! tests running at the same time would disturb.

mod common;
mod splice_util;

use std::io::{self, Cursor, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use greenrt::io::{CopyOptions, CopyStats};
use greenrt::net::{TcpListener, TcpStream};
use greenrt::os::unix::net::UnixStream;

use common::{serial, with_timeout};
use splice_util::{
    assert_mostly_spliced, buffered_opts, send_pattern, splice_opts, upstream, verify_pattern,
    Proxy,
};

// ---------------------------------------------------------------------
// Which path runs: stats, fallbacks, other types.
// ---------------------------------------------------------------------

/// A connected pair of greenrt TCP streams (call on a green thread).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (c, l.accept().unwrap().0)
}

/// copy() from one greenrt socket to another, `total` bytes; returns the
/// counter deltas. `src` is fed by a green thread, `dst`'s peer verified
/// by another.
fn socket_copy(opts: CopyOptions, unix: bool, total: u64) -> CopyStats {
    let before = greenrt::io::stats();
    let n = common::block_on(2, move || {
        let (feed, verify, copied) = if unix {
            let (mut feed, mut src) = UnixStream::pair().unwrap();
            let (mut dst, mut sink) = UnixStream::pair().unwrap();
            let f = greenrt::spawn(move || {
                send_pattern(&mut feed, 7, total).unwrap();
            });
            let v = greenrt::spawn(move || verify_pattern(&mut sink, 7).unwrap());
            let n = greenrt::io::copy_with(&mut src, &mut dst, opts).unwrap();
            (f, v, n)
        } else {
            let (mut feed, mut src) = tcp_pair();
            let (mut dst, mut sink) = tcp_pair();
            let f = greenrt::spawn(move || {
                send_pattern(&mut feed, 7, total).unwrap();
            });
            let v = greenrt::spawn(move || verify_pattern(&mut sink, 7).unwrap());
            let n = greenrt::io::copy_with(&mut src, &mut dst, opts).unwrap();
            (f, v, n)
        };
        // `dst` was dropped at the end of its block: the sink sees EOF.
        feed.join().unwrap();
        assert_eq!(verify.join().unwrap(), total);
        copied
    });
    assert_eq!(n, total);
    greenrt::io::stats().since(&before)
}

#[test]
fn tcp_copy_uses_splice() {
    let _serial = serial();
    let d = socket_copy(splice_opts(), false, 64 << 20);
    assert_mostly_spliced(&d, 64 << 20);
}

#[test]
fn unix_copy_uses_splice() {
    let _serial = serial();
    let d = socket_copy(splice_opts(), true, 64 << 20);
    assert_mostly_spliced(&d, 64 << 20);
}

#[test]
fn buffered_mode_never_splices() {
    let _serial = serial();
    let d = socket_copy(buffered_opts(), false, 16 << 20);
    assert_eq!(d.copied_bytes, 16 << 20, "{d:?}");
    assert_eq!((d.spliced_bytes, d.splice_calls), (0, 0), "{d:?}");
}

#[test]
fn tcp_to_unix_uses_splice() {
    let _serial = serial();
    let total = 8u64 << 20;
    let before = greenrt::io::stats();
    common::block_on(2, move || {
        let (mut feed, mut src) = tcp_pair();
        let (mut dst, mut sink) = UnixStream::pair().unwrap();
        let f = greenrt::spawn(move || send_pattern(&mut feed, 9, total).unwrap());
        let v = greenrt::spawn(move || verify_pattern(&mut sink, 9).unwrap());
        assert_eq!(greenrt::io::copy(&mut src, &mut dst).unwrap(), total);
        drop(dst);
        f.join().unwrap();
        assert_eq!(v.join().unwrap(), total);
    });
    let d = greenrt::io::stats().since(&before);
    assert_mostly_spliced(&d, total);
}

/// Request/response traffic (messages smaller than the copy buffer) is
/// read and written, never spliced: three splice calls and a page per
/// message would cost more than copying a few bytes.
#[test]
fn small_messages_are_copied_not_spliced() {
    const ROUNDS: u64 = 2000;
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        let before = greenrt::io::stats();
        let (up_addr, up) = upstream(|mut s| {
            let mut buf = [0u8; 100];
            for _ in 0..ROUNDS {
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
            }
        });
        let proxy = Proxy::start(up_addr, 1, splice_opts());
        let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
        client.set_nodelay(true).unwrap();
        let mut buf = [7u8; 100];
        for _ in 0..ROUNDS {
            client.write_all(&buf).unwrap();
            client.read_exact(&mut buf).unwrap();
        }
        up.join().unwrap();
        drop(client);
        let results = proxy.finish();
        assert_eq!(*results[0].as_ref().unwrap(), (100 * ROUNDS, 100 * ROUNDS));
        let d = greenrt::io::stats().since(&before);
        assert_eq!(d.copied_bytes, 200 * ROUNDS, "{d:?}");
        assert_eq!((d.spliced_bytes, d.splice_calls), (0, 0), "{d:?}");
    });
}

/// Regular files, `Cursor`s and `Vec`s cannot be spliced: copies involving
/// them are buffered and still move every byte.
#[test]
fn files_and_memory_fall_back_to_buffered() {
    let _serial = serial();
    let total = 4u64 << 20;
    let path = std::env::temp_dir().join(format!("greenrt-splice-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    send_pattern(&mut file, 11, total).unwrap();
    drop(file);
    let before = greenrt::io::stats();
    let path2 = path.clone();
    common::block_on(2, move || {
        // File → socket → Vec, through two copies on two green threads.
        let (mut a, mut b) = tcp_pair();
        let reader = greenrt::spawn(move || {
            let mut out = Vec::new();
            let n = greenrt::io::copy(&mut b, &mut out).unwrap();
            (n, out)
        });
        let mut file = std::fs::File::open(&path2).unwrap();
        assert_eq!(greenrt::io::copy(&mut file, &mut a).unwrap(), total);
        drop(a);
        let (n, out) = reader.join().unwrap();
        assert_eq!(n, total);
        assert_eq!(verify_pattern(&mut Cursor::new(&out), 11).unwrap(), total);
        // Cursor → Vec, with a tiny buffer.
        let mut sink = Vec::new();
        let opts = CopyOptions::new().buffer_size(1000);
        let n = greenrt::io::copy_with(&mut Cursor::new(out), &mut sink, opts).unwrap();
        assert_eq!(n, total);
        assert_eq!(verify_pattern(&mut Cursor::new(&sink), 11).unwrap(), total);
    });
    std::fs::remove_file(&path).unwrap();
    let d = greenrt::io::stats().since(&before);
    // File → socket goes by sendfile (see tests/io_copy_file.rs); socket
    // → Vec and Cursor → Vec are buffered.
    assert_eq!(d.copied_bytes, 2 * total, "{d:?}");
    assert_eq!(d.spliced_bytes, total, "{d:?}");
    assert_eq!(d.splice_calls, 0, "{d:?}");
}

#[test]
fn bidirectional_needs_sockets() {
    let _serial = serial();
    let mut a = Cursor::new(vec![1u8; 10]);
    let mut b = Cursor::new(Vec::new());
    let e = greenrt::io::copy_bidirectional(&mut a, &mut b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("TcpStream"), "{e}");
    // A std socket is blocking: not spliced, not relayed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let e = greenrt::io::copy_bidirectional(&mut c, &mut b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
}

/// From a plain OS thread the second direction runs on a helper OS thread;
/// half-closes pass through and the counts come back per direction.
#[test]
fn bidirectional_from_an_os_thread() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        let (mut a, mut a_peer) = UnixStream::pair().unwrap();
        let (mut b, mut b_peer) = UnixStream::pair().unwrap();
        let ta = std::thread::spawn(move || {
            a_peer.write_all(&[1u8; 3000]).unwrap();
            a_peer.shutdown(Shutdown::Write).unwrap();
            let mut v = Vec::new();
            a_peer.read_to_end(&mut v).unwrap();
            v.len()
        });
        let tb = std::thread::spawn(move || {
            let mut v = Vec::new();
            b_peer.read_to_end(&mut v).unwrap(); // ends: a's half-close passed on
            b_peer.write_all(&[2u8; 5000]).unwrap();
            v.len()
        });
        let counts = greenrt::io::copy_bidirectional(&mut a, &mut b).unwrap();
        assert_eq!(counts, (3000, 5000));
        assert_eq!((ta.join().unwrap(), tb.join().unwrap()), (5000, 3000));
    });
}

/// A read timeout on the source bounds each wait of a spliced copy as it
/// bounds a read: WouldBlock, as std reports SO_RCVTIMEO.
#[test]
fn read_timeout_applies_to_spliced_copy() {
    let _serial = serial();
    common::block_on(2, || {
        let (_feed, mut src) = tcp_pair();
        let (mut dst, _sink) = tcp_pair();
        src.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t = Instant::now();
        let e = greenrt::io::copy(&mut src, &mut dst).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(50));
    });
    assert_eq!(greenrt::io::stats().pipes_in_use(), 0);
}
