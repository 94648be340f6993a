//! `UdpSocket::send_segments{,_to}`, `set_gro`, `recv_segments` and
//! `max_gso_segments` on loopback: datagram boundaries kept with and
//! without GRO, the sendmmsg(2) fallback (`GREENRT_UDP_GSO=off`, in a
//! child process), the resend without GSO when the kernel refuses it
//! (EINVAL under SO_NO_CHECK; EIO cannot be provoked on loopback and is
//! unit-tested in `src/net/udp_offload/tests.rs`), bad segment sizes, and
//! parking on a full send buffer (a tbf qdisc in a network namespace of
//! a child process; skipped without the privilege or `tc`).
//!
//! Each test holds `SERIAL` and checks that it closed every fd it opened.
//! UDP on loopback drops what the receiver has no room for, so every test
//! sends at most ~100 KB before reading it back, into a receive buffer
//! raised to ~400 KB.

mod common;
mod net_util;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenrt::net::UdpSocket;
use net_util::{localhost, on_runtime, pattern};

const MAX_PAYLOAD: usize = 65_507;

fn set_int_opt(sock: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live c_int whose size is passed; the fd is open
    // while `sock` is borrowed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A receiver on loopback with room for a few hundred KB of datagrams.
fn receiver() -> UdpSocket {
    let b = UdpSocket::bind(localhost()).unwrap();
    set_int_opt(&b, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20).unwrap();
    b
}

/// Receives `count` datagrams (each read alone: no GRO) with a 10 s cap.
fn recv_datagrams(b: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65_536];
    (0..count)
        .map(|i| {
            let n = b
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {count}: {e}"));
            buf[..n].to_vec()
        })
        .collect()
}

fn split(buf: &[u8], segment_size: usize) -> Vec<Vec<u8>> {
    buf.chunks(segment_size).map(<[u8]>::to_vec).collect()
}

/// Sends `buf` in datagrams of `segment_size` from `a` to `b` (connected
/// or not) and checks that `b` gets exactly that split.
fn round_trip(a: &UdpSocket, b: &UdpSocket, connected: bool, buf: &[u8], segment_size: usize) {
    let sent = if connected {
        a.send_segments(buf, segment_size).unwrap()
    } else {
        a.send_segments_to(buf, segment_size, b.local_addr().unwrap())
            .unwrap()
    };
    assert_eq!(sent, buf.len(), "segment size {segment_size}");
    let expected = split(buf, segment_size);
    let got = recv_datagrams(b, expected.len());
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            g == e,
            "datagram {i} (segment size {segment_size}): {} bytes, expected {}",
            g.len(),
            e.len()
        );
    }
}

/// The (segment size, bytes) cases: full and short last datagrams, one
/// byte, jumbo, 64 datagrams exactly, more than one GSO send's worth.
const CASES: [(usize, usize); 7] = [
    (1200, 40 * 1200),
    (1200, 40 * 1200 + 17),
    (1, 100),
    (9000, 7 * 9000 + 1),
    (MAX_PAYLOAD, MAX_PAYLOAD + 10),
    (100, 64 * 100),
    (500, 200 * 500 + 3),
];

fn all_cases(a: &UdpSocket, b: &UdpSocket, connected: bool) {
    for (k, (segment_size, len)) in CASES.into_iter().enumerate() {
        round_trip(a, b, connected, &pattern(len, k), segment_size);
    }
}

#[test]
fn segments_keep_their_boundaries_unconnected_and_connected() {
    on_runtime(2, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = receiver();
        assert!(a.max_gso_segments() >= 1);
        if a.max_gso_segments() == 1 {
            eprintln!("note: no UDP GSO in this kernel; testing the sendmmsg path");
        }
        all_cases(&a, &b, false);
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        all_cases(&a, &b, true);
        // `send` and `recv` still carry one datagram each.
        assert_eq!(a.send(b"one").unwrap(), 3);
        assert_eq!(recv_datagrams(&b, 1), vec![b"one".to_vec()]);
        assert_eq!(a.send_segments(&[], 100).unwrap(), 0);
    });
}

#[test]
fn send_segments_without_a_peer_fails() {
    on_runtime(1, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let e = a.send_segments(&[1; 3000], 1000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EDESTADDRREQ), "{e}");
        let none: &[SocketAddr] = &[];
        let e = a.send_segments_to(&[1; 10], 5, none).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn bad_segment_sizes_are_invalid_input() {
    on_runtime(1, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let to = a.local_addr().unwrap();
        a.connect(to).unwrap();
        for bad in [0, MAX_PAYLOAD + 1, usize::MAX] {
            for buf in [&[][..], &[7u8; 100][..]] {
                let e = a.send_segments(buf, bad).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
                let e = a.send_segments_to(buf, bad, to).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
            }
        }
        // Nothing was sent.
        a.set_nonblocking(true).unwrap();
        let e = a.recv(&mut [0; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    });
}

#[test]
fn gro_reports_the_segment_size_of_coalesced_datagrams() {
    on_runtime(2, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = receiver();
        b.set_gro(true).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut coalesced = 0;
        for (k, (segment_size, len)) in [(1200, 40 * 1200 + 500), (1000, 64 * 1000), (333, 10)]
            .into_iter()
            .enumerate()
        {
            let sent = pattern(len, k);
            a.send_segments_to(&sent, segment_size, b.local_addr().unwrap())
                .unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_535];
            while got.len() < len {
                let (n, seg) = b.recv_segments(&mut buf).unwrap();
                assert!(n > 0 && seg > 0);
                if n > seg {
                    coalesced += 1;
                    // Several datagrams: all but the last of `seg` bytes.
                    assert_eq!(seg, segment_size, "GRO segment size");
                } else {
                    // One datagram: its own length.
                    assert_eq!(n, seg);
                    assert!(n <= segment_size);
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == sent, "bytes differ (segment size {segment_size})");
        }
        if a.max_gso_segments() > 1 {
            // Loopback hands a GSO send to a GRO socket whole.
            assert!(coalesced >= 2, "only {coalesced} coalesced receives");
        }
        // GRO off: one datagram each again.
        b.set_gro(false).unwrap();
        a.send_segments_to(&[9; 3000], 1000, b.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..3 {
            assert_eq!(b.recv_segments(&mut buf).unwrap(), (1000, 1000));
        }
    });
}

/// SO_NO_CHECK makes the kernel refuse every GSO send with EINVAL: each
/// batch must go out datagram by datagram instead, and GSO stay on.
#[test]
fn refused_gso_sends_are_resent_one_datagram_each() {
    on_runtime(2, || {
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = receiver();
        set_int_opt(&a, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let before = a.max_gso_segments();
        all_cases(&a, &b, false);
        assert_eq!(a.max_gso_segments(), before);
    });
}

const FALLBACK: &str = "segments_fall_back_to_sendmmsg_with_gso_off";

#[test]
fn segments_fall_back_to_sendmmsg_with_gso_off() {
    if common::child_tag().as_deref() == Some("gso_off") {
        on_runtime(2, || {
            let a = UdpSocket::bind(localhost()).unwrap();
            let b = receiver();
            assert_eq!(a.max_gso_segments(), 1);
            all_cases(&a, &b, false);
            a.connect(b.local_addr().unwrap()).unwrap();
            all_cases(&a, &b, true);
        });
        return;
    }
    // Under SERIAL: the child's pipes would blur the fd counts of the
    // other tests.
    let _serial = common::serial();
    let out = common::run_child(
        FALLBACK,
        "gso_off",
        &[("GREENRT_UDP_GSO", Some("off"))],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_gso_knob_fails_the_runtime_build() {
    if common::child_tag().as_deref() == Some("bad_knob") {
        let Err(e) = greenrt::Builder::new().build() else {
            panic!("GREENRT_UDP_GSO=maybe: the build must fail");
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("GREENRT_UDP_GSO"), "{e}");
        return;
    }
    // Under SERIAL: the child's pipes would blur the fd counts of the
    // other tests.
    let _serial = common::serial();
    let out = common::run_child(
        "a_bad_gso_knob_fails_the_runtime_build",
        "bad_knob",
        &[("GREENRT_UDP_GSO", Some("maybe"))],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "child failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PARKING: &str = "sends_park_on_a_full_send_buffer";

/// Runs `cmd` in this thread's network namespace; Err(reason) if it fails.
fn run(cmd: &[&str]) -> Result<(), String> {
    match std::process::Command::new(cmd[0]).args(&cmd[1..]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", cmd[0])),
    }
}

/// In a fresh network namespace, loopback drains through a 20 Mbit/s tbf
/// qdisc, whose queue holds the sender's buffer: a 64 KB send buffer
/// fills, and the sender parks (other green threads run) until it
/// drains. Every datagram arrives.
#[test]
fn sends_park_on_a_full_send_buffer() {
    if common::child_tag().as_deref() == Some("tbf") {
        // SAFETY: unshare(2) takes a flag and touches no memory of ours;
        // it moves only this thread (and threads it starts) to the new
        // namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            println!(
                "SKIP: unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            );
            return;
        }
        let setup = run(&["ip", "link", "set", "lo", "up"]).and_then(|()| {
            run(&[
                "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "20mbit", "burst",
                "20kb", "limit", "16mb",
            ])
        });
        if let Err(reason) = setup {
            println!("SKIP: {reason}");
            return;
        }
        parking_body();
        println!("PASSED");
        return;
    }
    // Under SERIAL: the child's pipes would blur the fd counts of the
    // other tests.
    let _serial = common::serial();
    let out = common::run_child(PARKING, "tbf", &[], Duration::from_secs(40));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(reason) = stdout.lines().find_map(|l| l.strip_prefix("SKIP: ")) {
        eprintln!("skipped: {reason}");
    } else {
        assert!(stdout.contains("PASSED"), "child output:\n{stdout}");
    }
}

fn parking_body() {
    // One worker: the ticker runs only while the sender is parked.
    common::runtime(1).block_on(|| {
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = UdpSocket::bind(localhost()).unwrap();
        set_int_opt(&a, libc::SOL_SOCKET, libc::SO_SNDBUF, 64 << 10).unwrap();
        // Root (we made a namespace): room for everything in flight.
        set_int_opt(&b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20).unwrap();
        let to = b.local_addr().unwrap();
        let data = pattern(1 << 20, 3);

        // Non-blocking: the buffer fills and the call stops short.
        a.set_nonblocking(true).unwrap();
        let first = a.send_segments_to(&data, 1200, to).unwrap();
        assert!(first < data.len() && first % 1200 == 0, "sent {first}");
        a.set_nonblocking(false).unwrap();

        // Blocking: parks until the qdisc drains; the ticker runs meanwhile.
        let ticks = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let (ticks, done) = (ticks.clone(), done.clone());
            greenrt::spawn(move || {
                while done.load(Ordering::Relaxed) == 0 {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    greenrt::sleep(Duration::from_millis(2));
                }
            })
        };
        let started = Instant::now();
        let rest = a.send_segments_to(&data[first..], 1200, to).unwrap();
        let took = started.elapsed();
        done.store(1, Ordering::Relaxed);
        ticker.join().unwrap();
        assert_eq!(first + rest, data.len());
        let ticks = ticks.load(Ordering::Relaxed);
        assert!(ticks >= 5, "{ticks} ticks while the sender waited {took:?}");

        // The write timeout bounds one call: it stops short, or says
        // WouldBlock when nothing could go.
        a.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let big = pattern(8 << 20, 4);
        let started = Instant::now();
        let timed = match a.send_segments_to(&big, 1200, to) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        };
        assert!(
            timed < big.len(),
            "all 8 MB went in {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        // Every datagram arrives, in order.
        let expected = data.len().div_ceil(1200) + timed / 1200;
        b.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = vec![0u8; 2048];
        for i in 0..expected {
            let n = b
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {expected}: {e}"));
            let want = if i < data.len().div_ceil(1200) {
                &data[i * 1200..((i + 1) * 1200).min(data.len())]
            } else {
                let j = i - data.len().div_ceil(1200);
                &big[j * 1200..(j + 1) * 1200]
            };
            assert!(&buf[..n] == want, "datagram {i}");
        }
    });
}

/// A reader slower than the sender (it naps between batches) loses
/// nothing when the sender is paced by its credits (UDP on loopback has
/// no flow control of its own): every datagram arrives whole and in
/// order, GSO batches or not.
#[test]
fn a_paced_sender_loses_nothing_to_a_slow_reader() {
    on_runtime(2, || {
        const BATCH: usize = 32;
        const BATCHES: usize = 60;
        const SEGMENT: usize = 1200;
        let a = UdpSocket::bind(localhost()).unwrap();
        let b = receiver();
        let to = b.local_addr().unwrap();
        // At most 2 batches (~77 KB) in flight.
        let (credit_tx, credit_rx) = greenrt::sync::mpsc::sync_channel::<()>(2);
        for _ in 0..2 {
            credit_tx.send(()).unwrap();
        }
        let reader = greenrt::spawn(move || {
            let mut buf = vec![0u8; 2048];
            b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            for k in 0..BATCHES {
                let expected = pattern(BATCH * SEGMENT, k);
                for (i, want) in expected.chunks(SEGMENT).enumerate() {
                    let n = b
                        .recv(&mut buf)
                        .unwrap_or_else(|e| panic!("batch {k}, datagram {i}: {e}"));
                    assert!(&buf[..n] == want, "batch {k}, datagram {i}");
                }
                greenrt::sleep(Duration::from_millis(1));
                let _ = credit_tx.send(());
            }
        });
        for k in 0..BATCHES {
            credit_rx.recv().unwrap();
            let data = pattern(BATCH * SEGMENT, k);
            assert_eq!(a.send_segments_to(&data, SEGMENT, to).unwrap(), data.len());
        }
        reader.join().unwrap();
    });
}
