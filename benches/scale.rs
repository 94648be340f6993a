//! A million green threads (issue 18): greenrt and tokio side by side,
//! 2 workers each, at 10^4, 10^5 and 10^6 green threads (tasks).
//!
//! Workloads:
//!
//! - `sleep`: each green thread sleeps 1 s, then counts itself done; the
//!   last one signals the root.
//! - `park`: each green thread waits on a channel of its own (greenrt
//!   `sync_channel(1)`, tokio `oneshot`); once all are parked the root
//!   sends to each in turn and waits for the last to finish.
//!
//! For each cell the figures are: spawn time (the root spawning all of
//! them), total time (first spawn to last finish) and RSS per green
//! thread: for `park`, VmRSS with all of them parked minus VmRSS before
//! the first spawn; for `sleep`, VmHWM (the peak) minus that baseline
//! (some sleepers of a large cell wake before the last is spawned). Both
//! divided by the count.
//!
//! Every cell runs in a fresh child process (this executable, re-run with
//! `GREENRT_SCALE_CELL=<runtime>,<workload>,<count>`), so one runtime's
//! memory (freed but kept by the allocator, pooled stacks) never counts
//! against the other; greenrt and tokio cells alternate.
//!
//! Each row is the median of `GREENRT_SCALE_ROUNDS` (default 3) rounds,
//! a greenrt cell then a tokio cell per round, with the spread of the
//! per-round ratios. Beside the times it prints each cell's kernel CPU
//! and minor page faults per green thread (task), from the children's
//! rusage: a green thread's stack is at least one fresh page, and on a
//! virtual machine that hands freed memory back to its host (a balloon
//! with free-page reporting, as on this project's CI machines) each fresh
//! page costs a host fault too, so these columns explain most of the
//! run-to-run spread of the large cells (process start-up is included,
//! which shows only in the small counts).
//!
//! `GREENRT_SCALE_SIZES` picks the counts (default `10000,100000,1000000`),
//! `GREENRT_SCALE_WORKLOADS` the workloads (default `sleep,park`), e.g.
//! `GREENRT_SCALE_SIZES=10000 cargo bench --bench scale` for a quick run.
//! 10^6 needs `vm.max_map_count` above 10^6 only with mprotect guards.
//! Under `cargo test --benches` (`--test`) it runs one small cell of each.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{load_average, median};

/// Worker threads of both runtimes.
const WORKERS: usize = 2;
/// How long each `sleep` green thread sleeps.
const SLEEP: Duration = Duration::from_secs(1);
const CELL_ENV: &str = "GREENRT_SCALE_CELL";

/// One cell's figures: as the child prints them, and (`sys`, `faults`)
/// as the kernel accounted its process.
#[derive(Default)]
struct Cell {
    spawn: f64,
    total: f64,
    rss_per: f64,
    /// CPU seconds the child spent in the kernel.
    sys: f64,
    /// Minor page faults (fresh pages) of the child.
    faults: u64,
}

/// Kernel CPU seconds and minor faults of all waited-for children so far.
fn children_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we pass and reads nothing else.
    let u = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let sys = u.ru_stime.tv_sec as f64 + u.ru_stime.tv_usec as f64 / 1e6;
    (sys, u.ru_minflt as u64)
}

/// A status field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits (politely, on any thread) until `count` reaches `n`.
fn wait_for(count: &AtomicUsize, n: usize, mut pause: impl FnMut()) {
    while count.load(Ordering::Acquire) < n {
        pause();
    }
}

fn greenrt_cell(workload: &str, n: usize) -> Cell {
    let sleep = workload == "sleep";
    let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
    let base = status_kib("VmRSS");
    let (spawn, total, rss) = rt.block_on(move || {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = greenrt::sync::mpsc::sync_channel::<()>(1);
        let start = Instant::now();
        let mut senders = Vec::new();
        let parked = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let (done, tx) = (done.clone(), tx.clone());
            let wake = (!sleep).then(|| {
                let (wtx, wrx) = greenrt::sync::mpsc::sync_channel::<()>(1);
                senders.push(wtx);
                (wrx, parked.clone())
            });
            greenrt::spawn(move || {
                match wake {
                    None => greenrt::sleep(SLEEP),
                    Some((wrx, parked)) => {
                        parked.fetch_add(1, Ordering::Release);
                        wrx.recv().unwrap();
                    }
                }
                if done.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    tx.send(()).unwrap();
                }
            });
        }
        let spawn = start.elapsed();
        let rss = if sleep {
            rx.recv().unwrap();
            status_kib("VmHWM")
        } else {
            wait_for(&parked, n, || greenrt::sleep(Duration::from_millis(1)));
            let rss = status_kib("VmRSS");
            for s in senders {
                s.send(()).unwrap();
            }
            rx.recv().unwrap();
            rss
        };
        (spawn, start.elapsed(), rss)
    });
    Cell {
        spawn: spawn.as_secs_f64(),
        total: total.as_secs_f64(),
        rss_per: rss.saturating_sub(base) as f64 * 1024.0 / n as f64,
        ..Cell::default()
    }
}

fn tokio_cell(workload: &str, n: usize) -> Cell {
    let sleep = workload == "sleep";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .unwrap();
    let base = status_kib("VmRSS");
    let (spawn, total, rss) = rt.block_on(async move {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let start = Instant::now();
        let mut senders = Vec::new();
        let parked = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let (done, tx) = (done.clone(), tx.clone());
            let wake = (!sleep).then(|| {
                let (wtx, wrx) = tokio::sync::oneshot::channel::<()>();
                senders.push(wtx);
                (wrx, parked.clone())
            });
            tokio::spawn(async move {
                match wake {
                    None => tokio::time::sleep(SLEEP).await,
                    Some((wrx, parked)) => {
                        parked.fetch_add(1, Ordering::Release);
                        wrx.await.unwrap();
                    }
                }
                if done.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    tx.send(()).await.unwrap();
                }
            });
        }
        let spawn = start.elapsed();
        let rss = if sleep {
            rx.recv().await.unwrap();
            status_kib("VmHWM")
        } else {
            while parked.load(Ordering::Acquire) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let rss = status_kib("VmRSS");
            for s in senders {
                s.send(()).unwrap();
            }
            rx.recv().await.unwrap();
            rss
        };
        (spawn, start.elapsed(), rss)
    });
    Cell {
        spawn: spawn.as_secs_f64(),
        total: total.as_secs_f64(),
        rss_per: rss.saturating_sub(base) as f64 * 1024.0 / n as f64,
        ..Cell::default()
    }
}

/// In the child: runs the cell named by `spec` and prints its figures.
fn run_cell(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let [runtime, workload, n] = parts[..] else {
        panic!("{CELL_ENV}={spec}: want <runtime>,<workload>,<count>");
    };
    let n: usize = n.parse().expect("count");
    let cell: Cell = match runtime {
        "greenrt" => greenrt_cell(workload, n),
        "tokio" => tokio_cell(workload, n),
        _ => panic!("unknown runtime {runtime}"),
    };
    println!("CELL {} {} {}", cell.spawn, cell.total, cell.rss_per);
}

/// In the parent: runs one cell in a fresh child process.
fn child(runtime: &str, workload: &str, n: usize) -> Cell {
    let (sys0, faults0) = children_usage();
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CELL_ENV, format!("{runtime},{workload},{n}"))
        .output()
        .expect("running a cell");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("CELL ")) else {
        panic!(
            "cell {runtime},{workload},{n} failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    let (sys1, faults1) = children_usage();
    Cell {
        spawn: v[0],
        total: v[1],
        rss_per: v[2],
        sys: sys1 - sys0,
        faults: faults1 - faults0,
    }
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    if let Ok(spec) = std::env::var(CELL_ENV) {
        return run_cell(&spec);
    }
    let testing = std::env::args().any(|a| a == "--test");
    let (sizes, workloads) = if testing {
        (
            vec!["1000".to_string()],
            vec!["sleep".into(), "park".into()],
        )
    } else {
        (
            list("GREENRT_SCALE_SIZES", "10000,100000,1000000"),
            list("GREENRT_SCALE_WORKLOADS", "sleep,park"),
        )
    };
    println!(
        "scale: {WORKERS} workers each; load average {}",
        load_average()
    );
    let rounds: usize = if testing {
        1
    } else {
        std::env::var("GREENRT_SCALE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3)
            .max(1)
    };
    println!(
        "medians of {rounds} alternating rounds per row (`GREENRT_SCALE_ROUNDS`); \
         kernel CPU and fresh pages (minor faults) per green thread / task, \
         as the kernel accounted each cell's process"
    );
    println!(
        "| workload | count | greenrt spawn | greenrt total | tokio spawn | tokio total | \
         total greenrt/tokio (min–max) | greenrt RSS/G | tokio RSS/task | \
         greenrt kernel µs/G | tokio kernel µs/task | greenrt faults/G | tokio faults/task |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for workload in &workloads {
        for n in &sizes {
            let n: usize = n.parse().expect("GREENRT_SCALE_SIZES: counts");
            let (mut g, mut t) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                g.push(child("greenrt", workload, n));
                t.push(child("tokio", workload, n));
            }
            let med = |cells: &[Cell], f: fn(&Cell) -> f64| {
                median(&cells.iter().map(f).collect::<Vec<_>>())
            };
            let ratios: Vec<f64> = g.iter().zip(&t).map(|(g, t)| g.total / t.total).collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let per = |s: f64| s * 1e6 / n as f64;
            println!(
                "| {workload} | {n} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.2} ({lo:.2}–{hi:.2}) \
                 | {:.2} KiB | {:.2} KiB | {:.2} | {:.2} | {:.2} | {:.2} |",
                med(&g, |c| c.spawn),
                med(&g, |c| c.total),
                med(&t, |c| c.spawn),
                med(&t, |c| c.total),
                median(&ratios),
                med(&g, |c| c.rss_per) / 1024.0,
                med(&t, |c| c.rss_per) / 1024.0,
                per(med(&g, |c| c.sys)),
                per(med(&t, |c| c.sys)),
                med(&g, |c| c.faults as f64) / n as f64,
                med(&t, |c| c.faults as f64) / n as f64,
            );
        }
    }
}
