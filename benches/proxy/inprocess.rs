//! `inprocess`: bulk relay with everything in one runtime (issue 14 §2).
//!
//! Clients, proxy and echo sink are all green threads (tasks) of one
//! 2-worker runtime, greenrt or tokio, so the runtime's own idle and
//! wake-up behaviour shows, which the OS-thread clients of `bulk` hide:
//!
//! - sink: per connection, an echo by `greenrt::io::copy` from the socket
//!   to a clone of it (`tokio::io::copy` between its split halves);
//! - proxy: per connection, `greenrt::io::copy_bidirectional` (splice;
//!   two `greenrt::io::copy`s, one on a helper green thread), or
//!   `tokio::io::copy_bidirectional`;
//! - clients: [`CONNS`] connections, each with a writer sending
//!   [`BYTES`] in 1 MiB writes and a reader reading them back in 64 KiB
//!   reads, at the same time.
//!
//! Connections are made once per runtime and reused by every round. The
//! two runtimes alternate, round by round; the table gives the median
//! throughput (bytes written plus bytes read by the clients, over wall
//! time), the greenrt/tokio ratio of the medians, and each runtime's
//! median busy cores: process CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every
//! thread, user + system) over wall time. Voluntary context switches
//! (getrusage `ru_nvcsw`) per round are given too.
//!
//! `GREENRT_PROXY_ONLY=greenrt` (or `tokio`) runs that runtime's rounds
//! alone and prints each, for profiling one runtime with perf or strace.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{median, process_cpu};
use super::WORKERS;

pub const CONNS: usize = 8;
pub const BYTES: usize = 64 << 20;
const WRITE: usize = 1 << 20;
const READ: usize = 64 << 10;

/// One round: wall and CPU seconds, seconds the process's threads waited
/// for a CPU (runnable, not running), voluntary context switches.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub runq: f64,
    pub nvcsw: f64,
}

impl Sample {
    pub fn mb_per_s(&self) -> f64 {
        (CONNS * BYTES * 2) as f64 / self.wall / 1e6
    }

    pub fn busy_cores(&self) -> f64 {
        self.cpu / self.wall
    }

    /// Cores' worth of threads that were runnable but waited for a CPU
    /// (other processes on this shared machine, or more runnable threads
    /// than cores): busy + this is how busy the runtime wanted to be.
    pub fn waiting_cores(&self) -> f64 {
        self.runq / self.wall
    }
}

/// Seconds every thread of this process has waited on a run queue so far
/// (the second field of /proc/<pid>/task/<tid>/schedstat). Threads that
/// exit during a round drop out; the runtimes' threads live throughout.
fn runqueue_wait() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

fn voluntary_switches() -> i64 {
    // SAFETY: all-zero is a valid rusage (integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_nvcsw
}

/// Times `round`.
fn measure(round: impl FnOnce()) -> Sample {
    let (t, cpu, sw, rq) = (
        Instant::now(),
        process_cpu(),
        voluntary_switches(),
        runqueue_wait(),
    );
    round();
    Sample {
        wall: t.elapsed().as_secs_f64(),
        cpu: (process_cpu() - cpu).as_secs_f64(),
        runq: runqueue_wait() - rq,
        nvcsw: (voluntary_switches() - sw) as f64,
    }
}

/// The greenrt setup: runtime, sink and proxy running, client connections.
pub struct Greenrt {
    rt: greenrt::Runtime,
    conns: Vec<Arc<greenrt::net::TcpStream>>,
    servers: Vec<greenrt::JoinHandle<()>>,
}

impl Greenrt {
    pub fn open() -> Greenrt {
        let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
        let (conns, servers) = rt.block_on(|| {
            let sink = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let sink_addr = sink.local_addr().unwrap();
            let proxy = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let proxy_addr = proxy.local_addr().unwrap();
            let sink = greenrt::spawn(move || {
                let echoes: Vec<_> = (0..CONNS)
                    .map(|_| {
                        let (s, _) = sink.accept().unwrap();
                        s.set_nodelay(true).unwrap();
                        greenrt::spawn(move || {
                            let mut r = s.try_clone().unwrap();
                            let mut w = s;
                            greenrt::io::copy(&mut r, &mut w).unwrap();
                            let _ = w.shutdown(Shutdown::Write);
                        })
                    })
                    .collect();
                echoes.into_iter().for_each(|e| e.join().unwrap());
            });
            let proxy = greenrt::spawn(move || {
                let relays: Vec<_> = (0..CONNS)
                    .map(|_| {
                        let (mut c, _) = proxy.accept().unwrap();
                        greenrt::spawn(move || {
                            let mut u = greenrt::net::TcpStream::connect(sink_addr).unwrap();
                            c.set_nodelay(true).unwrap();
                            u.set_nodelay(true).unwrap();
                            greenrt::io::copy_bidirectional(&mut c, &mut u).unwrap();
                        })
                    })
                    .collect();
                relays.into_iter().for_each(|r| r.join().unwrap());
            });
            let conns = (0..CONNS)
                .map(|_| {
                    let s = greenrt::net::TcpStream::connect(proxy_addr).unwrap();
                    s.set_nodelay(true).unwrap();
                    Arc::new(s)
                })
                .collect();
            (conns, vec![sink, proxy])
        });
        Greenrt { rt, conns, servers }
    }

    pub fn round(&self) -> Sample {
        let conns = self.conns.clone();
        measure(|| {
            self.rt.block_on(move || {
                let mut clients = Vec::new();
                for s in conns {
                    let w = s.clone();
                    clients.push(greenrt::spawn(move || {
                        let data = vec![7u8; WRITE];
                        for _ in 0..BYTES / WRITE {
                            (&*w).write_all(&data).unwrap();
                        }
                    }));
                    clients.push(greenrt::spawn(move || {
                        let mut buf = vec![0u8; READ];
                        let mut left = BYTES;
                        while left > 0 {
                            let n = (&*s).read(&mut buf[..left.min(READ)]).unwrap();
                            assert!(n > 0, "the proxy closed the connection");
                            left -= n;
                        }
                    }));
                }
                clients.into_iter().for_each(|c| c.join().unwrap());
            })
        })
    }

    pub fn close(self) {
        drop(self.conns);
        let servers = self.servers;
        self.rt
            .block_on(move || servers.into_iter().for_each(|s| s.join().unwrap()));
    }
}

type TokioConn = (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
);

/// The tokio setup, the same shape.
pub struct Tokio {
    rt: tokio::runtime::Runtime,
    conns: std::sync::Mutex<Vec<TokioConn>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Tokio {
    pub fn open() -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_all()
            .build()
            .unwrap();
        let (conns, servers) = rt.block_on(async {
            let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let sink_addr = sink.local_addr().unwrap();
            let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let proxy_addr = proxy.local_addr().unwrap();
            let sink = tokio::spawn(async move {
                let mut echoes = Vec::new();
                for _ in 0..CONNS {
                    let (s, _) = sink.accept().await.unwrap();
                    s.set_nodelay(true).unwrap();
                    echoes.push(tokio::spawn(async move {
                        let (mut r, mut w) = s.into_split();
                        tokio::io::copy(&mut r, &mut w).await.unwrap();
                        let _ = w.shutdown().await;
                    }));
                }
                for e in echoes {
                    e.await.unwrap();
                }
            });
            let proxy = tokio::spawn(async move {
                let mut relays = Vec::new();
                for _ in 0..CONNS {
                    let (mut c, _) = proxy.accept().await.unwrap();
                    relays.push(tokio::spawn(async move {
                        let mut u = tokio::net::TcpStream::connect(sink_addr).await.unwrap();
                        c.set_nodelay(true).unwrap();
                        u.set_nodelay(true).unwrap();
                        tokio::io::copy_bidirectional(&mut c, &mut u).await.unwrap();
                    }));
                }
                for r in relays {
                    r.await.unwrap();
                }
            });
            let mut conns = Vec::new();
            for _ in 0..CONNS {
                let s = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                conns.push(s.into_split());
            }
            (conns, vec![sink, proxy])
        });
        Tokio {
            rt,
            conns: std::sync::Mutex::new(conns),
            servers,
        }
    }

    pub fn round(&self) -> Sample {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        let mut back = Vec::new();
        let sample = measure(|| {
            back = self.rt.block_on(async move {
                let clients: Vec<_> = conns
                    .into_iter()
                    .map(|(mut r, mut w)| {
                        let writer = tokio::spawn(async move {
                            let data = vec![7u8; WRITE];
                            for _ in 0..BYTES / WRITE {
                                w.write_all(&data).await.unwrap();
                            }
                            w
                        });
                        let reader = tokio::spawn(async move {
                            let mut buf = vec![0u8; READ];
                            let mut left = BYTES;
                            while left > 0 {
                                let n = r.read(&mut buf[..left.min(READ)]).await.unwrap();
                                assert!(n > 0, "the proxy closed the connection");
                                left -= n;
                            }
                            r
                        });
                        (reader, writer)
                    })
                    .collect();
                let mut back = Vec::new();
                for (r, w) in clients {
                    back.push((r.await.unwrap(), w.await.unwrap()));
                }
                back
            })
        });
        *self.conns.lock().unwrap() = back;
        sample
    }

    pub fn close(self) {
        drop(self.conns);
        for s in self.servers {
            self.rt.block_on(s).unwrap();
        }
    }
}

/// Runs `rounds` rounds of each runtime, alternating (greenrt first in
/// odd rounds, tokio in even ones), after one unmeasured round of each;
/// prints the table.
pub fn run(rounds: usize) {
    // For profiling one runtime alone (perf, strace): rounds of it only.
    if let Ok(only) = std::env::var("GREENRT_PROXY_ONLY") {
        let samples: Vec<Sample> = match only.as_str() {
            "greenrt" => {
                let g = Greenrt::open();
                let v = (0..rounds).map(|_| g.round()).collect();
                g.close();
                v
            }
            "tokio" => {
                let t = Tokio::open();
                let v = (0..rounds).map(|_| t.round()).collect();
                t.close();
                v
            }
            other => panic!("GREENRT_PROXY_ONLY must be greenrt or tokio, not {other:?}"),
        };
        for s in samples {
            println!(
                "{only}: {:.0} MB/s, {:.2} busy cores, {:.2} waiting for a CPU, {:.0} voluntary \
                 switches",
                s.mb_per_s(),
                s.busy_cores(),
                s.waiting_cores(),
                s.nvcsw
            );
        }
        return;
    }
    let (g, t) = (Greenrt::open(), Tokio::open());
    g.round();
    t.round();
    let (mut gs, mut ts) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        if i % 2 == 0 {
            gs.push(g.round());
            ts.push(t.round());
        } else {
            ts.push(t.round());
            gs.push(g.round());
        }
    }
    g.close();
    t.close();
    let stat = |v: &[Sample], f: fn(&Sample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let (gm, tm) = (stat(&gs, Sample::mb_per_s), stat(&ts, Sample::mb_per_s));
    println!(
        "\ninprocess: {CONNS} connections x {} MiB echoed, clients, proxy and sink in one \
         {WORKERS}-worker runtime; medians of {rounds} rounds each:",
        BYTES >> 20
    );
    println!(
        "| runtime | MB/s | busy cores | cores waiting for a CPU | voluntary switches per round |"
    );
    println!("|---|---|---|---|---|");
    for (name, v, m) in [("greenrt", &gs, gm), ("tokio", &ts, tm)] {
        println!(
            "| {name} | {m:.0} | {:.2} | {:.2} | {:.0} |",
            stat(v, Sample::busy_cores),
            stat(v, Sample::waiting_cores),
            stat(v, |s| s.nvcsw)
        );
    }
    println!("greenrt / tokio: {:.2}", gm / tm);
    let per_round: Vec<String> = gs
        .iter()
        .zip(&ts)
        .map(|(g, t)| format!("{:.2}", g.mb_per_s() / t.mb_per_s()))
        .collect();
    println!("per-round ratios: {}", per_round.join(" "));
}
