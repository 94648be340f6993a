//! UDP throughput over loopback in 1 200-byte datagrams: greenrt with
//! segmentation offload (`send_segments_to`, one syscall per up to 54
//! datagrams, the receiver with GRO on and `recv_segments`), greenrt one
//! `send_to` / `recv_from` per datagram, and tokio one `send_to` /
//! `recv_from` per datagram, in one run.
//!
//! The GSO case moves `GREENRT_UDP_BENCH_BYTES` (default 1 GiB) from a
//! sender to a receiver in the same runtime (2 workers each); the
//! per-datagram cases, 10-20 times slower, move a quarter of that (some
//! seconds each: their rate is steady long before), so that the run stays
//! well under a minute. Each is timed from the first send to the last
//! byte received. The receiver
//! counts bytes; UDP on loopback drops what the receiver has no room for,
//! so the sender paces itself: it never gets more than a quarter of the
//! receiver's buffer ahead of what was received (a shared counter; it
//! yields while ahead). Datagrams lost anyway are reported. The cases run
//! `GREENRT_UDP_BENCH_RUNS` (default 3) rounds in rotating order; the
//! summary gives median MiB/s and ratios of medians.
//!
//! Run with `flock /tmp/bench.lock cargo bench --bench udp` (about 20 s
//! on 2 busy cores). `cargo test --benches` runs each case once on 8 MiB.

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{benchmarking, load_average, median};

const DATAGRAM: usize = 1200;
/// Bytes handed to one `send_segments_to` call (it makes several GSO
/// sends of at most 64 datagrams and 65 507 bytes each).
const GSO_CALL: usize = DATAGRAM * 512;
const WORKERS: usize = 2;
/// A receiver idle this long has got all it will get.
const IDLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    GreenrtGso,
    GreenrtPerDatagram,
    TokioPerDatagram,
}

const CASES: [Case; 3] = [
    Case::GreenrtGso,
    Case::GreenrtPerDatagram,
    Case::TokioPerDatagram,
];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::GreenrtGso => "greenrt GSO+GRO",
            Case::GreenrtPerDatagram => "greenrt per datagram",
            Case::TokioPerDatagram => "tokio per datagram",
        }
    }
}

/// What the receiver has counted, and whether it has stopped (all in, or
/// idle: the sender stops pacing on lost datagrams then).
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    /// Counts `n` bytes; true when all `total` are in.
    fn add(&self, n: usize, total: u64) -> bool {
        self.received.fetch_add(n as u64, Ordering::Relaxed) + n as u64 >= total
    }

    /// Whether a sender `sent` bytes in must wait for the receiver.
    fn ahead(&self, sent: u64, window: u64) -> bool {
        !self.done.load(Ordering::Relaxed)
            && sent.saturating_sub(self.received.load(Ordering::Relaxed)) > window
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// One run's outcome: bytes received, seconds.
struct Outcome {
    received: u64,
    secs: f64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// A receive buffer as large as the process may have (SO_RCVBUFFORCE
/// needs CAP_NET_ADMIN; SO_RCVBUF is capped at net.core.rmem_max), and
/// the pacing window it allows.
fn grow_receive_buffer(fd: i32) -> u64 {
    let want: libc::c_int = 32 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `want` is a live c_int of the given size; `fd` is open.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `got` and `len` are live out-parameters of the right sizes.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // The kernel charges about twice the payload of a 1 200-byte datagram.
    (got.max(4096) as u64) / 4
}

fn greenrt_case(rt: &greenrt::Runtime, total: u64, gso: bool) -> Outcome {
    rt.block_on(move || {
        use greenrt::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let window = grow_receive_buffer(rx.as_raw_fd());
        let to = rx.local_addr().unwrap();
        rx.set_gro(gso).unwrap();
        rx.set_read_timeout(Some(IDLE)).unwrap();
        let progress = Arc::new(Progress::default());
        let start = Instant::now();
        let receiver = {
            let progress = progress.clone();
            greenrt::spawn(move || {
                let mut buf = vec![0u8; 65_535];
                let mut last = start;
                loop {
                    let r = if gso {
                        rx.recv_segments(&mut buf).map(|(n, _)| n)
                    } else {
                        rx.recv_from(&mut buf).map(|(n, _)| n)
                    };
                    match r {
                        Ok(n) => {
                            last = Instant::now();
                            if progress.add(n, total) {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("receive: {e}"),
                    }
                }
                progress.done.store(true, Ordering::Relaxed);
                last
            })
        };
        let data = vec![0x5au8; GSO_CALL];
        let mut sent = 0u64;
        while sent < total && !progress.done.load(Ordering::Relaxed) {
            while progress.ahead(sent, window) {
                greenrt::yield_now();
            }
            let len = if gso { GSO_CALL } else { DATAGRAM }.min((total - sent) as usize);
            let n = if gso {
                tx.send_segments_to(&data[..len], DATAGRAM, to).unwrap()
            } else {
                tx.send_to(&data[..len], to).unwrap()
            };
            sent += n as u64;
        }
        let last = receiver.join().unwrap();
        Outcome {
            received: progress.received(),
            secs: (last - start).as_secs_f64(),
        }
    })
}

fn tokio_case(rt: &tokio::runtime::Runtime, total: u64) -> Outcome {
    rt.block_on(async move {
        use tokio::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let window = grow_receive_buffer(rx.as_raw_fd());
        let to = rx.local_addr().unwrap();
        let progress = Arc::new(Progress::default());
        let start = Instant::now();
        let receiver = {
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                let mut last = start;
                while let Ok(r) = tokio::time::timeout(IDLE, rx.recv_from(&mut buf)).await {
                    let (n, _) = r.expect("receive");
                    last = Instant::now();
                    if progress.add(n, total) {
                        break;
                    }
                }
                progress.done.store(true, Ordering::Relaxed);
                last
            })
        };
        let data = vec![0x5au8; DATAGRAM];
        let mut sent = 0u64;
        while sent < total && !progress.done.load(Ordering::Relaxed) {
            while progress.ahead(sent, window) {
                tokio::task::yield_now().await;
            }
            let len = DATAGRAM.min((total - sent) as usize);
            sent += tx.send_to(&data[..len], to).await.unwrap() as u64;
        }
        let last = receiver.await.unwrap();
        Outcome {
            received: progress.received(),
            secs: (last - start).as_secs_f64(),
        }
    })
}

fn mib_per_s(o: &Outcome) -> f64 {
    o.received as f64 / (1 << 20) as f64 / o.secs.max(1e-9)
}

fn main() {
    let measuring = benchmarking();
    let total = env_u64(
        "GREENRT_UDP_BENCH_BYTES",
        if measuring { 1 << 30 } else { 8 << 20 },
    );
    let runs = env_u64("GREENRT_UDP_BENCH_RUNS", if measuring { 3 } else { 1 }).max(1) as usize;
    let green = greenrt::Builder::new().workers(WORKERS).build().unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    let gso_segments = green
        .block_on(|| greenrt::net::UdpSocket::bind("127.0.0.1:0").map(|s| s.max_gso_segments()));
    println!(
        "udp: {} MiB (GSO), {} MiB (per datagram) in {DATAGRAM}-byte datagrams over \
         loopback, {runs} round(s), {WORKERS} workers, max_gso_segments {}, load average {}",
        total >> 20,
        total >> 22,
        gso_segments.unwrap(),
        load_average()
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    for round in 0..runs {
        for k in 0..CASES.len() {
            let i = (round + k) % CASES.len();
            let case = CASES[i];
            let bytes = match case {
                Case::GreenrtGso => total,
                _ => (total / 4).max(DATAGRAM as u64),
            };
            let o = match case {
                Case::GreenrtGso => greenrt_case(&green, bytes, true),
                Case::GreenrtPerDatagram => greenrt_case(&green, bytes, false),
                Case::TokioPerDatagram => tokio_case(&tokio, bytes),
            };
            let lost = bytes.saturating_sub(o.received);
            println!(
                "  round {round}: {:<22} {:>9.1} MiB/s  ({:.2} s{})",
                case.name(),
                mib_per_s(&o),
                o.secs,
                if lost > 0 {
                    format!(", {lost} bytes lost")
                } else {
                    String::new()
                }
            );
            rates[i].push(mib_per_s(&o));
        }
    }
    let med: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    println!("medians:");
    for (case, m) in CASES.iter().zip(&med) {
        println!("  {:<22} {:>9.1} MiB/s", case.name(), m);
    }
    println!(
        "ratios: GSO / greenrt per datagram {:.2}x, GSO / tokio per datagram {:.2}x, \
         greenrt / tokio per datagram {:.2}x",
        med[0] / med[1],
        med[0] / med[2],
        med[1] / med[2]
    );
}
