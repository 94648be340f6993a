//! `greenrt::io::copy` from a `Take` of a greenrt stream socket (owned,
//! `&`, `&mut`; TCP and Unix): at most the limit is moved and counted as
//! spliced, the rest stays readable in the source, the limit shrinks by
//! what was taken (also when the copy fails), and `Take`s of other types
//! get the buffered copy. Also: borrowed sockets (`&TcpStream`,
//! `&mut TcpStream`) are recognised and spliced.
//!
//! Every test holds `SERIAL`: they compare process-wide copy counters.

mod common;

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use greenrt::io::{CopyMode, CopyOptions};
use greenrt::net::{TcpListener, TcpStream};
use greenrt::os::unix::net::UnixStream;

use common::serial;

/// The test stream: byte i is `i % 251` (a period no buffer size shares).
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A connected pair of greenrt TCP streams (call on a green thread).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (c, l.accept().unwrap().0)
}

/// Writes `bytes` to `feed` on a green thread, then closes it.
fn feed(mut feed: impl Write + Send + 'static, bytes: Vec<u8>) -> greenrt::JoinHandle<()> {
    greenrt::spawn(move || {
        feed.write_all(&bytes).unwrap();
    })
}

/// Reads exactly `len` bytes from `r`.
fn read_exact(r: &mut impl Read, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    r.read_exact(&mut v).unwrap();
    v
}

/// The core case for one socket kind: a 1 MiB limit out of a longer
/// stream is spliced exactly, the limit ends at 0, and the bytes after it
/// are read from the source afterwards. `pair` makes (feed, src) and
/// (dst, sink) pairs; `borrow` picks the Take's form.
fn limit_respected<S>(pair: fn() -> (S, S), borrow: u8)
where
    S: Read + Write + Send + 'static,
    for<'a> &'a S: Read + Write,
{
    const LIMIT: usize = 1 << 20;
    const AFTER: usize = 5000;
    let all = data(LIMIT + AFTER);
    let (feed_end, mut src) = pair();
    let (mut dst, mut sink) = pair();
    let writer = feed(feed_end, all.clone());
    let expect = all[..LIMIT].to_vec();
    let reader = greenrt::spawn(move || read_exact(&mut sink, LIMIT) == expect);
    let before = greenrt::io::stats();
    let (n, left) = match borrow {
        0 => {
            let mut t = src.take(LIMIT as u64);
            let n = greenrt::io::copy(&mut t, &mut dst).unwrap();
            let left = t.limit();
            src = t.into_inner();
            (n, left)
        }
        1 => {
            let mut t = (&mut src).take(LIMIT as u64);
            (greenrt::io::copy(&mut t, &mut dst).unwrap(), t.limit())
        }
        _ => {
            let mut t = (&src).take(LIMIT as u64);
            (greenrt::io::copy(&mut t, &mut &dst).unwrap(), t.limit())
        }
    };
    let stats = greenrt::io::stats().since(&before);
    assert_eq!((n, left), (LIMIT as u64, 0));
    assert!(
        reader.join().unwrap(),
        "the sink got other bytes than the limit's"
    );
    assert!(
        stats.spliced_bytes >= LIMIT as u64 && stats.copied_bytes == 0,
        "a Take larger than the buffer should be spliced all the way: {stats:?}"
    );
    // The bytes after the limit are still in the source, in order.
    assert_eq!(read_exact(&mut src, AFTER), all[LIMIT..]);
    writer.join().unwrap();
}

fn tcp_pairs() -> (TcpStream, TcpStream) {
    tcp_pair()
}

fn unix_pairs() -> (UnixStream, UnixStream) {
    UnixStream::pair().unwrap()
}

#[test]
fn take_of_tcp_stream_splices_exactly_its_limit() {
    let _s = serial();
    common::block_on(2, || {
        for borrow in 0..3 {
            limit_respected(tcp_pairs, borrow);
        }
    });
}

#[test]
fn take_of_unix_stream_splices_exactly_its_limit() {
    let _s = serial();
    common::block_on(2, || {
        for borrow in 0..3 {
            limit_respected(unix_pairs, borrow);
        }
    });
}

/// Limit 0 moves nothing and reads nothing; a limit smaller than the
/// buffer is copied (and still exact); a limit beyond the end of stream
/// stops at end of stream with the limit shrunk by what came.
#[test]
fn zero_small_and_past_the_end_limits() {
    let _s = serial();
    common::block_on(2, || {
        let (feed_end, mut src) = tcp_pair();
        let (mut dst, mut sink) = tcp_pair();
        let all = data(10_000);
        let writer = feed(feed_end, all.clone());

        let mut t = (&mut src).take(0);
        assert_eq!(greenrt::io::copy(&mut t, &mut dst).unwrap(), 0);
        assert_eq!(t.limit(), 0);

        // 100 bytes, under the 8 KiB buffer: copied, exactly.
        let before = greenrt::io::stats();
        let mut t = (&mut src).take(100);
        assert_eq!(greenrt::io::copy(&mut t, &mut dst).unwrap(), 100);
        assert_eq!(t.limit(), 0);
        assert_eq!(greenrt::io::stats().since(&before).spliced_bytes, 0);
        assert_eq!(read_exact(&mut sink, 100), all[..100]);

        // The writer closes after 10 000 bytes: a 1 MiB limit ends there.
        writer.join().unwrap();
        let mut t = (&mut src).take(1 << 20);
        let n = greenrt::io::copy(&mut t, &mut dst).unwrap();
        assert_eq!(n, 9_900);
        assert_eq!(t.limit(), (1 << 20) - 9_900);
        assert_eq!(read_exact(&mut sink, 9_900), all[100..]);
    });
}

/// A copy that fails part-way (the source's read timeout expires) takes
/// exactly the bytes it moved off the limit; the rest is copied by a
/// second call.
#[test]
fn failed_copy_takes_what_it_moved_off_the_limit() {
    let _s = serial();
    common::block_on(2, || {
        const LIMIT: usize = 2 << 20;
        const FIRST: usize = 1 << 20;
        let (mut feed_end, mut src) = tcp_pair();
        let (mut dst, mut sink) = tcp_pair();
        let all = data(LIMIT);
        let expect = all.clone();
        let reader = greenrt::spawn(move || read_exact(&mut sink, LIMIT) == expect);
        feed_end.write_all(&all[..FIRST]).unwrap();
        src.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut t = (&mut src).take(LIMIT as u64);
        let e = greenrt::io::copy(&mut t, &mut dst).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert_eq!(t.limit(), (LIMIT - FIRST) as u64);
        feed_end.write_all(&all[FIRST..]).unwrap();
        let n = greenrt::io::copy(&mut t, &mut dst).unwrap();
        assert_eq!((n, t.limit()), ((LIMIT - FIRST) as u64, 0));
        assert!(reader.join().unwrap());
    });
}

/// `Take`s of types that cannot be spliced, and buffered mode, get the
/// buffered copy with the same limit semantics.
#[test]
fn take_with_buffered_types_and_mode() {
    let _s = serial();
    common::block_on(2, || {
        let all = data(100_000);
        // Take<Cursor> into a socket.
        let (mut dst, mut sink) = tcp_pair();
        let mut t = Cursor::new(all.clone()).take(60_000);
        let before = greenrt::io::stats();
        assert_eq!(greenrt::io::copy(&mut t, &mut dst).unwrap(), 60_000);
        let s = greenrt::io::stats().since(&before);
        assert_eq!((t.limit(), s.spliced_bytes), (0, 0));
        assert_eq!(read_exact(&mut sink, 60_000), all[..60_000]);

        // Take<TcpStream> into a Vec.
        let (feed_end, src) = tcp_pair();
        let writer = feed(feed_end, all.clone());
        let mut t = src.take(70_000);
        let mut out = Vec::new();
        assert_eq!(greenrt::io::copy(&mut t, &mut out).unwrap(), 70_000);
        assert_eq!(out, all[..70_000]);

        // Buffered mode between sockets: copied, exact, rest left.
        let mut src = t.into_inner();
        let mut t = (&mut src).take(20_000);
        let before = greenrt::io::stats();
        let opts = CopyOptions::new().mode(CopyMode::Buffered);
        assert_eq!(
            greenrt::io::copy_with(&mut t, &mut dst, opts).unwrap(),
            20_000
        );
        let s = greenrt::io::stats().since(&before);
        assert_eq!((t.limit(), s.spliced_bytes), (0, 0));
        assert!(s.copied_bytes >= 20_000);
        assert_eq!(read_exact(&mut sink, 20_000), all[70_000..90_000]);
        assert_eq!(read_exact(&mut src, 10_000), all[90_000..]);
        writer.join().unwrap();
    });
}

/// Borrowed sockets are recognised: `copy(&mut &a, &mut &mut b)` splices
/// like owned ones, and `copy_bidirectional` takes `&mut TcpStream`s.
#[test]
fn borrowed_sockets_are_spliced() {
    let _s = serial();
    common::block_on(2, || {
        const LEN: usize = 4 << 20;
        let (feed_end, src) = tcp_pair();
        let (mut dst, mut sink) = tcp_pair();
        let all = data(LEN);
        let expect = all.clone();
        let writer = feed(feed_end, all);
        let reader = greenrt::spawn(move || read_exact(&mut sink, LEN) == expect);
        let before = greenrt::io::stats();
        let n = greenrt::io::copy(&mut &src, &mut &mut dst).unwrap();
        let s = greenrt::io::stats().since(&before);
        assert_eq!(n, LEN as u64);
        assert!(reader.join().unwrap());
        writer.join().unwrap();
        assert!(
            s.spliced_bytes > 0,
            "borrowed sockets were not spliced: {s:?}"
        );

        let (mut a, mut a_peer) = tcp_pair();
        let (mut b, mut b_peer) = tcp_pair();
        let relay = greenrt::spawn(move || {
            let (a, b) = (&mut a, &mut b);
            greenrt::io::copy_bidirectional(&mut &mut *a, &mut &*b).unwrap()
        });
        a_peer.write_all(b"ping").unwrap();
        a_peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_exact(&mut b_peer, 4), b"ping");
        b_peer.write_all(b"pong!").unwrap();
        b_peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_exact(&mut a_peer, 5), b"pong!");
        assert_eq!(relay.join().unwrap(), (4, 5));
    });
}
