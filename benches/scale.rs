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
use common::load_average;

/// Worker threads of both runtimes.
const WORKERS: usize = 2;
/// How long each `sleep` green thread sleeps.
const SLEEP: Duration = Duration::from_secs(1);
const CELL_ENV: &str = "GREENRT_SCALE_CELL";

/// One cell's figures, as the child prints them.
struct Cell {
    spawn: f64,
    total: f64,
    rss_per: f64,
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
    }
}

/// In the child: runs the cell named by `spec` and prints its figures.
fn run_cell(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let [runtime, workload, n] = parts[..] else {
        panic!("{CELL_ENV}={spec}: want <runtime>,<workload>,<count>");
    };
    let n: usize = n.parse().expect("count");
    let cell = match runtime {
        "greenrt" => greenrt_cell(workload, n),
        "tokio" => tokio_cell(workload, n),
        _ => panic!("unknown runtime {runtime}"),
    };
    println!("CELL {} {} {}", cell.spawn, cell.total, cell.rss_per);
}

/// In the parent: runs one cell in a fresh child process.
fn child(runtime: &str, workload: &str, n: usize) -> Cell {
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
    Cell {
        spawn: v[0],
        total: v[1],
        rss_per: v[2],
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
    println!(
        "| workload | count | greenrt spawn | greenrt total | tokio spawn | tokio total | \
         total greenrt/tokio | greenrt RSS/G | tokio RSS/task |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for workload in &workloads {
        for n in &sizes {
            let n: usize = n.parse().expect("GREENRT_SCALE_SIZES: counts");
            let g = child("greenrt", workload, n);
            let t = child("tokio", workload, n);
            println!(
                "| {workload} | {n} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.2} | {:.2} KiB | {:.2} KiB |",
                g.spawn,
                g.total,
                t.spawn,
                t.total,
                g.total / t.total,
                g.rss_per / 1024.0,
                t.rss_per / 1024.0,
            );
        }
    }
}
