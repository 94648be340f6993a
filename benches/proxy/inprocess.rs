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
//! Each round sets a runtime up (sink, proxy, connections), runs the
//! clients once and closes it; only the clients' run is timed. Rounds of
//! greenrt, greenrt without preemption (no sysmon) and tokio alternate in
//! a rotating order. The table gives medians per runtime: throughput
//! (bytes the clients wrote plus bytes they read, over wall time) and its
//! ratio to tokio's; busy cores, process CPU time
//! (`CLOCK_PROCESS_CPUTIME_ID`, every thread, user + system) over wall
//! time; cores' worth of the process's threads waiting for a CPU
//! (schedstat); the ksoftirqd threads' cores (loopback softirq work the
//! kernel deferred to them: done for this process, charged to none); the
//! machine's idle cores (/proc/stat: on a quiet machine, the runtime's
//! own idle time); voluntary context switches (getrusage `ru_nvcsw`).
//! On a quiet machine busy + ksoftirqd + idle is about the 2 cores.
//!
//! `GREENRT_PROXY_ONLY=greenrt` (or `greenrt_nopreempt`, `tokio`) runs
//! that runtime's rounds alone on one setup and prints each, for
//! profiling one runtime with perf or strace.

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
    pub softirqd: f64,
    pub idle: f64,
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

    /// The ksoftirqd threads' cores: network softirq work the kernel
    /// deferred to them (loopback delivery), which no process is charged.
    pub fn softirqd_cores(&self) -> f64 {
        self.softirqd / self.wall
    }

    /// The whole machine's idle cores: on a quiet machine, the runtime's
    /// own idle time; other load only lowers it.
    pub fn idle_cores(&self) -> f64 {
        self.idle / self.wall
    }
}

/// Seconds all CPUs of the machine have been idle (idle + iowait in
/// /proc/stat, in USER_HZ ticks of 10 ms).
fn machine_idle() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(4)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// CPU seconds (user + system, 10 ms ticks) the ksoftirqd kernel threads
/// have used so far; 0 where they are not visible (another pid namespace).
fn softirqd_cpu() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let ticks: u64 = procs
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| s.contains("(ksoftirqd/"))
        .filter_map(|s| {
            // Fields after the ")" that ends the name: state is the 3rd
            // field, utime and stime the 14th and 15th.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / 100.0
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
    let (t, cpu, sw, rq, softirqd, idle) = (
        Instant::now(),
        process_cpu(),
        voluntary_switches(),
        runqueue_wait(),
        softirqd_cpu(),
        machine_idle(),
    );
    round();
    Sample {
        wall: t.elapsed().as_secs_f64(),
        cpu: (process_cpu() - cpu).as_secs_f64(),
        runq: runqueue_wait() - rq,
        softirqd: softirqd_cpu() - softirqd,
        idle: machine_idle() - idle,
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
    pub fn open(preemption: bool) -> Greenrt {
        let rt = greenrt::Builder::new()
            .workers(WORKERS)
            .preemption(preemption)
            .build()
            .unwrap();
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

/// A runtime set up for rounds.
trait Setup {
    fn round(&self) -> Sample;
    fn close(self: Box<Self>);
}

impl Setup for Greenrt {
    fn round(&self) -> Sample {
        Greenrt::round(self)
    }
    fn close(self: Box<Self>) {
        Greenrt::close(*self)
    }
}

impl Setup for Tokio {
    fn round(&self) -> Sample {
        Tokio::round(self)
    }
    fn close(self: Box<Self>) {
        Tokio::close(*self)
    }
}

/// The runtimes compared: greenrt, greenrt without preemption (no
/// sysmon, whose wake-ups are most of greenrt's voluntary context
/// switches here), tokio. `GREENRT_PROXY_ONLY` picks one by name.
const NAMES: [&str; 3] = ["greenrt", "greenrt_nopreempt", "tokio"];

fn open(name: &str) -> Box<dyn Setup> {
    match name {
        "greenrt" => Box::new(Greenrt::open(true)),
        "greenrt_nopreempt" => Box::new(Greenrt::open(false)),
        "tokio" => Box::new(Tokio::open()),
        other => panic!("GREENRT_PROXY_ONLY must be one of {NAMES:?}, not {other:?}"),
    }
}

fn print_sample(name: &str, s: &Sample) {
    println!(
        "{name}: {:.0} MB/s, {:.2} busy cores, {:.2} waiting for a CPU, {:.2} ksoftirqd, \
         {:.2} idle (machine), {:.0} voluntary switches",
        s.mb_per_s(),
        s.busy_cores(),
        s.waiting_cores(),
        s.softirqd_cores(),
        s.idle_cores(),
        s.nvcsw
    );
}

/// Runs `rounds` rounds of each runtime, the three in a rotating order,
/// after one unmeasured round of each; prints the table.
pub fn run(rounds: usize) {
    // For profiling one runtime alone (perf, strace): rounds of it only.
    if let Ok(only) = std::env::var("GREENRT_PROXY_ONLY") {
        let setup = open(&only);
        for _ in 0..rounds {
            print_sample(&only, &setup.round());
        }
        setup.close();
        return;
    }
    // Each round sets its runtime up afresh and closes it after: greenrt's
    // netpoller is process-wide, so the runtimes do not overlap.
    let once = |name: &str| {
        let setup = open(name);
        let s = setup.round();
        setup.close();
        s
    };
    for name in NAMES {
        once(name);
    }
    let mut samples: Vec<Vec<Sample>> = NAMES.iter().map(|_| Vec::new()).collect();
    for i in 0..rounds {
        for k in 0..NAMES.len() {
            let j = (i + k) % NAMES.len();
            samples[j].push(once(NAMES[j]));
        }
    }
    let stat = |v: &[Sample], f: fn(&Sample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let tput: Vec<f64> = samples.iter().map(|v| stat(v, Sample::mb_per_s)).collect();
    let tokio = tput[NAMES.len() - 1];
    println!(
        "\ninprocess: {CONNS} connections x {} MiB echoed, clients, proxy and sink in one \
         {WORKERS}-worker runtime; medians of {rounds} rounds each:",
        BYTES >> 20
    );
    println!(
        "| runtime | MB/s | / tokio | busy cores | waiting for a CPU | ksoftirqd | idle \
         (machine) | voluntary switches per round |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((name, v), m) in NAMES.iter().zip(&samples).zip(&tput) {
        println!(
            "| {name} | {m:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            m / tokio,
            stat(v, Sample::busy_cores),
            stat(v, Sample::waiting_cores),
            stat(v, Sample::softirqd_cores),
            stat(v, Sample::idle_cores),
            stat(v, |s| s.nvcsw)
        );
    }
    let per_round: Vec<String> = samples[0]
        .iter()
        .zip(&samples[NAMES.len() - 1])
        .map(|(g, t)| format!("{:.2}", g.mb_per_s() / t.mb_per_s()))
        .collect();
    println!("greenrt / tokio per round: {}", per_round.join(" "));
}
