//! `greenrt::net` reads after a short read (the socket is known to be
//! drained): no data or end of stream is lost, and timeouts, vectored
//! reads and clones see the same state.
//!
//! Every test holds `SERIAL` (the tests of this file run one at a time)
//! and checks that it leaves as many fds open as it found: the fd table is
//! shared by the whole process, so overlapping tests would blur the count.
//! Bounds on time are lower bounds (a timeout must not fire early) or
//! generous caps.

mod common;
mod net_util;

use std::io::{self, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use greenrt::net::{TcpListener, TcpStream};
use net_util::{localhost, on_runtime, pattern, tcp_pair};

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

/// A read into an empty buffer returns Ok(0) at once, as readv(2) on a
/// socket does, whatever the reads before it: after a read that filled
/// its buffer (which switches TCP_INQ on) it went through recvmsg(2) and
/// waited for data, failing with `WouldBlock` at the read timeout.
#[test]
fn an_empty_read_returns_at_once_before_and_after_a_full_read() {
    on_runtime(1, || {
        let (mut a, mut b) = tcp_pair();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let empty_read_at_once = |b: &mut TcpStream| {
            let t = Instant::now();
            assert_eq!(b.read(&mut []).unwrap(), 0);
            assert_eq!(b.read_vectored(&mut [IoSliceMut::new(&mut [])]).unwrap(), 0);
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        };
        empty_read_at_once(&mut b);
        a.write_all(b"1234").unwrap();
        b.read_exact(&mut [0u8; 4]).unwrap();
        empty_read_at_once(&mut b);
        // And the data after it is all there.
        a.write_all(b"5678").unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"5678");
    });
}

/// A vectored read of more slices than one readv(2) takes (IOV_MAX,
/// 1024) fills only the first 1024: that is a full read of those, not a
/// short one. It was taken for short (the length of every slice was
/// compared), the socket marked drained, and the next read waited for an
/// edge that never came, with the rest of the data queued.
#[test]
fn a_vectored_read_of_more_than_iov_max_slices_leaves_no_data_behind() {
    use greenrt::os::unix::net::UnixStream;
    const LEN: usize = 2000;
    fn read_all_one_byte_slices(s: &mut impl Read) -> Vec<usize> {
        let mut bytes = vec![0u8; LEN];
        let (mut total, mut reads) = (0, Vec::new());
        while total < LEN {
            let mut slices: Vec<IoSliceMut> =
                bytes[total..].chunks_mut(1).map(IoSliceMut::new).collect();
            match s.read_vectored(&mut slices) {
                Ok(n) => {
                    assert!(n > 0, "end of stream after {total} bytes");
                    reads.push(n);
                    total += n;
                }
                Err(e) => panic!("{e} after {total} of {LEN} bytes, the rest queued"),
            }
        }
        assert_eq!(bytes, pattern(LEN, 3));
        reads
    }
    on_runtime(1, || {
        // The reader parks first; the data then comes in one write.
        fn write_later<W: Write + Send + 'static>(mut w: W) -> greenrt::JoinHandle<W> {
            greenrt::spawn(move || {
                greenrt::sleep(Duration::from_millis(30));
                w.write_all(&pattern(LEN, 3)).unwrap();
                w // kept open: no end of stream
            })
        }
        let (a, mut b) = tcp_pair();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let writer = write_later(a);
        assert_eq!(read_all_one_byte_slices(&mut b), [1024, LEN - 1024]);
        drop(writer.join().unwrap());

        let (a, mut b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let writer = write_later(a);
        assert_eq!(read_all_one_byte_slices(&mut b), [1024, LEN - 1024]);
        drop(writer.join().unwrap());
    });
}
