//! `Runtime::metrics`, `greenrt::metrics()` and `GREENRT_SCHEDTRACE`.
//!
//! The counters must add up (busy time within wall time, every run
//! counted, live green threads back to zero, parks, steals and
//! preemptions counted where the workload forces them), and the schedtrace
//! line must come out in its documented format.

mod common;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child, serial, spin_for};
use greenrt::{Runtime, RuntimeMetrics};

/// Calls `f` with fresh metrics until it holds, failing after 10 s: a
/// worker publishes its counters when its P goes idle, which follows the
/// end of a workload by a moment.
fn eventually(rt: &Runtime, what: &str, f: impl Fn(&RuntimeMetrics) -> bool) -> RuntimeMetrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = rt.metrics();
        if f(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never {what}: {m:#?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn total(m: &RuntimeMetrics, f: impl Fn(&RuntimeMetrics, usize) -> u64) -> u64 {
    (0..m.num_workers()).map(|w| f(m, w)).sum()
}

#[test]
fn busy_time_stays_within_wall_time_and_every_run_is_counted() {
    let _s = serial();
    common::guarded(|| {
        let wall = Instant::now();
        let rt = common::cooperative_runtime(2);
        const THREADS: u64 = 100;
        const YIELDS: u64 = 100;
        rt.block_on(|| {
            common::yield_in_threads(THREADS as usize, YIELDS as usize);
        });
        // Both Ps idle: both published everything.
        let m = eventually(&rt, "both workers idle", |m| m.num_idle_workers() == 2);
        let wall = wall.elapsed();
        assert_eq!(m.num_workers(), 2);
        assert!(m.elapsed() <= wall, "{:?} > {wall:?}", m.elapsed());
        for w in 0..2 {
            let busy = m.worker_total_busy_duration(w);
            assert!(
                busy <= m.elapsed(),
                "worker {w} busy {busy:?} > {:?}",
                m.elapsed()
            );
        }
        let busy: Duration = (0..2).map(|w| m.worker_total_busy_duration(w)).sum();
        assert!(busy > Duration::ZERO, "no busy time: {m:#?}");
        assert!(busy <= wall * 2, "busy {busy:?} > 2 x {wall:?}");
        // Each green thread runs once per yield and once more to finish;
        // the root runs at least once.
        let polls = total(&m, RuntimeMetrics::worker_poll_count);
        assert!(
            polls > THREADS * (YIELDS + 1),
            "{polls} runs counted: {m:#?}"
        );
        assert_eq!(m.global_queue_depth(), 0);
        assert_eq!(
            m.worker_local_queue_depth(0) + m.worker_local_queue_depth(1),
            0
        );
    });
}

/// A snapshot that shows both workers idle shows every run of theirs:
/// a worker publishes its counters before its P goes on the idle list,
/// so the idle count must be read first (it was read last, and a
/// snapshot could pair a stale run count with a fresh idle count).
#[test]
fn a_snapshot_showing_all_workers_idle_counts_every_run() {
    let _s = serial();
    common::guarded(|| {
        const THREADS: u64 = 4;
        const YIELDS: u64 = 20;
        let rt = common::cooperative_runtime(2);
        for round in 1..=300u64 {
            rt.block_on(|| {
                common::yield_in_threads(THREADS as usize, YIELDS as usize);
            });
            // Poll without sleeping, to catch the moment the last P goes
            // idle.
            let m = loop {
                let m = rt.metrics();
                if m.num_idle_workers() == 2 {
                    break m;
                }
                std::hint::spin_loop();
            };
            let polls = total(&m, RuntimeMetrics::worker_poll_count);
            let at_least = round * THREADS * (YIELDS + 1);
            assert!(
                polls >= at_least,
                "round {round}: {polls} runs counted with both workers idle, \
                 at least {at_least} ran: {m:#?}"
            );
        }
    });
}

#[test]
fn live_green_threads_come_back_to_zero() {
    let _s = serial();
    common::guarded(|| {
        let rt = common::cooperative_runtime(2);
        rt.block_on(|| {
            let go = Arc::new(AtomicBool::new(false));
            let hs: Vec<_> = (0..50)
                .map(|_| {
                    let go = go.clone();
                    greenrt::spawn(move || {
                        while !go.load(Ordering::Acquire) {
                            greenrt::yield_now();
                        }
                    })
                })
                .collect();
            // None can finish before `go`: the 50 and this root.
            assert_eq!(greenrt::metrics().num_alive_tasks(), 51);
            go.store(true, Ordering::Release);
            for h in hs {
                h.join().unwrap();
            }
            // A joined green thread leaves once its worker has switched
            // away from it, a moment after the join.
            let deadline = Instant::now() + Duration::from_secs(10);
            while greenrt::metrics().num_alive_tasks() != 1 {
                assert!(Instant::now() < deadline, "{:#?}", greenrt::metrics());
                greenrt::sleep(Duration::from_millis(1));
            }
        });
        eventually(&rt, "no live green thread", |m| m.num_alive_tasks() == 0);
    });
}

#[test]
fn park_counts_grow_while_workers_idle() {
    let _s = serial();
    common::guarded(|| {
        let rt = common::runtime(2);
        let before = rt.block_on(|| {
            let before = total(&greenrt::metrics(), RuntimeMetrics::worker_park_count);
            // Nothing else to run: this worker's P goes idle (and
            // publishes) at every sleep.
            for _ in 0..5 {
                greenrt::sleep(Duration::from_millis(5));
            }
            let after = total(&greenrt::metrics(), RuntimeMetrics::worker_park_count);
            assert!(after >= before + 5, "parks {before} -> {after}");
            before
        });
        let m = eventually(&rt, "both workers idle", |m| m.num_idle_workers() == 2);
        assert!(total(&m, RuntimeMetrics::worker_park_count) >= before + 6);
        assert!(m.num_threads() >= 1);
        assert!(m.num_idle_threads() <= m.num_threads(), "{m:#?}");
        assert_eq!(m.num_spinning_threads(), 0);
    });
}

#[test]
fn an_idle_worker_steals_from_a_busy_one() {
    let _s = serial();
    common::guarded(|| {
        // Cooperative: each green thread computes 5 ms, so the queue the
        // root fills stays long while the other worker's M (woken by the
        // first spawn) steals from it. Nothing goes to the global queue
        // (64 < the local queue's 256), so the second worker has no work
        // but what it steals. Retried: its M needs a CPU within ~300 ms.
        for attempt in 1..=3 {
            let rt = common::cooperative_runtime(2);
            let queued = rt.block_on(|| {
                let hs: Vec<_> = (0..64)
                    .map(|_| greenrt::spawn(|| spin_for(Duration::from_millis(5))))
                    .collect();
                let m = greenrt::metrics();
                let queued = m.worker_local_queue_depth(0) + m.worker_local_queue_depth(1);
                for h in hs {
                    h.join().unwrap();
                }
                queued
            });
            // 63 behind the one in the "next" slot, less the few the
            // other worker took and ran meanwhile (each runs 5 ms).
            assert!(queued >= 16, "only {queued} queued locally");
            let m = eventually(&rt, "both workers idle", |m| m.num_idle_workers() == 2);
            let steals = total(&m, RuntimeMetrics::worker_steal_count);
            let ops = total(&m, RuntimeMetrics::worker_steal_operations);
            assert!(steals >= ops, "{m:#?}");
            if ops > 0 {
                return;
            }
            eprintln!("attempt {attempt}: no steal (the idle worker's M got no CPU?)");
        }
        panic!("no steal in 3 attempts");
    });
}

#[test]
fn preemptions_of_cpu_hogs_are_counted() {
    let _s = serial();
    common::guarded(|| {
        let rt = greenrt::Builder::new()
            .workers(1)
            .preempt_quantum(Duration::from_millis(1))
            .build()
            .unwrap();
        if rt.preempt_quantum().is_none() {
            eprintln!("preemption unavailable here (GREENRT_PREEMPT=off?): skipped");
            return;
        }
        let process_before = greenrt::preempt::stats();
        rt.block_on(|| {
            let hs: Vec<_> = (0..2)
                .map(|_| greenrt::spawn(|| spin_for(Duration::from_millis(50))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        let m = rt.metrics();
        let process = greenrt::preempt::stats().since(&process_before);
        assert!(m.preemptions() > 0, "{m:#?}");
        // The only runtime of this (serialised) test: the process-wide
        // count moved as much.
        assert_eq!(m.preemptions(), process.preemptions, "{m:#?}");
        assert_eq!(m.retakes(), process.retakes);
        assert_eq!(m.preempted_queue_depth(), 0, "{m:#?}");
    });
}

#[test]
fn file_operations_in_flight_come_back_to_zero() {
    let _s = serial();
    common::guarded(|| {
        let dir = std::env::temp_dir().join(format!("greenrt-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; 1 << 20])
            .unwrap();
        let rt = common::runtime(2);
        let p = path.clone();
        rt.block_on(move || {
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    let p = p.clone();
                    greenrt::spawn(move || {
                        let f = greenrt::fs::File::open(&p).unwrap();
                        let mut buf = vec![0u8; 4096];
                        for k in 0..32u64 {
                            let off = ((i * 32 + k) * 4096) % (1 << 20);
                            let n = f.read_at(&mut buf, off).unwrap();
                            assert_eq!(n, 4096);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let m = greenrt::metrics();
            assert_eq!(m.file_ops_in_flight(), 0, "{m:#?}");
            assert_eq!(m.netpoll_waiters(), 0, "{m:#?}");
        });
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn metrics_outside_a_green_thread_panics_clearly() {
    let msg = common::expect_panic("greenrt::metrics()", greenrt::metrics);
    assert!(msg.contains("outside a green thread"), "{msg}");
    assert!(msg.contains("Runtime::metrics"), "{msg}");
}

/// One parsed `SCHED` line.
#[derive(Debug)]
struct Sched {
    ms: u64,
    workers: usize,
    idle: usize,
    threads: usize,
    idle_threads: usize,
    local: Vec<usize>,
}

/// Parses `SCHED <ms>ms: workers=.. idle=.. threads=.. spinning=..
/// idlethreads=.. runqueue=.. [a b ..] preemptions=.. retakes=..
/// preempted=..`, or None
/// if `line` is not in exactly that format.
fn parse_sched(line: &str) -> Option<Sched> {
    let rest = line.strip_prefix("SCHED ")?;
    let (ms, rest) = rest.split_once("ms: ")?;
    let (head, rest) = rest.split_once(" [")?;
    let (local, tail) = rest.split_once("] ")?;
    let field = |part: &str, name: &str| -> Option<u64> {
        part.strip_prefix(name)?.strip_prefix('=')?.parse().ok()
    };
    let head: Vec<&str> = head.split(' ').collect();
    let names = [
        "workers",
        "idle",
        "threads",
        "spinning",
        "idlethreads",
        "runqueue",
    ];
    if head.len() != names.len() {
        return None;
    }
    let mut v = [0u64; 6];
    for (i, name) in names.iter().enumerate() {
        v[i] = field(head[i], name)?;
    }
    let tail: Vec<&str> = tail.split(' ').collect();
    if tail.len() != 3 {
        return None;
    }
    field(tail[0], "preemptions")?;
    field(tail[1], "retakes")?;
    field(tail[2], "preempted")?;
    let local = local
        .split(' ')
        .map(|n| n.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some(Sched {
        ms: ms.parse().ok()?,
        workers: v[0] as usize,
        idle: v[1] as usize,
        threads: v[2] as usize,
        idle_threads: v[4] as usize,
        local,
    })
}

#[test]
fn schedtrace_prints_go_style_lines() {
    const NAME: &str = "schedtrace_prints_go_style_lines";
    match child_tag().as_deref() {
        Some("trace") | Some("bad") => {
            let rt = common::runtime(2);
            rt.block_on(|| {
                let hs: Vec<_> = (0..8)
                    .map(|_| greenrt::spawn(|| spin_for(Duration::from_millis(40))))
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                greenrt::sleep(Duration::from_millis(100));
            });
            println!("CHILD_OK");
        }
        Some(other) => panic!("unknown child tag {other}"),
        None => {
            let out = run_child(
                NAME,
                "trace",
                &[("GREENRT_SCHEDTRACE", Some("20"))],
                Duration::from_secs(60),
            );
            assert!(out.status.success(), "{}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("SCHED")).collect();
            // About 260 ms of work at 20 ms: at least a few lines even on
            // a loaded machine.
            assert!(lines.len() >= 3, "{}", describe(&out));
            let mut last = 0;
            for l in &lines {
                let s = parse_sched(l).unwrap_or_else(|| panic!("bad line {l:?}"));
                assert_eq!(s.workers, 2, "{l}");
                assert_eq!(s.local.len(), 2, "{l}");
                assert!(s.idle <= 2 && s.idle_threads <= s.threads, "{l}");
                assert!(s.ms >= last, "time went back: {l}");
                last = s.ms;
            }
            // An invalid value: a clear message, no trace, the program runs.
            let out = run_child(
                NAME,
                "bad",
                &[("GREENRT_SCHEDTRACE", Some("1s"))],
                Duration::from_secs(60),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}", describe(&out));
            assert!(
                stderr.contains("GREENRT_SCHEDTRACE must be an interval in milliseconds"),
                "{}",
                describe(&out)
            );
            assert!(
                !stderr.lines().any(|l| l.starts_with("SCHED")),
                "{}",
                describe(&out)
            );
        }
    }
}
