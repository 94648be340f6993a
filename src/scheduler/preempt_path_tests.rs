//! The shutdown race of `park_preempted` that no stress test reaches: a
//! stop step (shutdown's drain of the preempted queue) that falls between
//! the path's shutdown check and its push. The whole drain, which kicks
//! every queued green thread's M, must fit in that window of a few
//! instructions (and the G must be queued after shutdown's final drain
//! too), so the test widens it: runtimes named `WIDENED` spin in it
//! (`in_window`, compiled into unit tests only).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::shared::Shared;
use crate::sys::clock;

/// Thread name of the runtimes whose preemption path is slowed down.
const WIDENED: &str = "pp-window";
/// How long they spin between the shutdown check and the push...
const WIDTH_NS: u64 = 1_000_000;
/// ...or, once they see the runtime shut down meanwhile, how much longer:
/// past the whole of shutdown (its stop step and its final drain).
const AFTER_SHUTDOWN_NS: u64 = 20_000_000;

/// Called by `park_preempted` between its shutdown check and the push.
/// Allocation-free and lock-free, as the path.
pub(super) fn in_window(rt: &Shared) {
    if rt.cfg.thread_name != WIDENED {
        return;
    }
    let start = clock::now();
    let mut shut_at = None;
    loop {
        let now = clock::now();
        if shut_at.is_none() && rt.is_shutdown() {
            shut_at = Some(now);
        }
        match shut_at {
            None if now - start >= WIDTH_NS => return,
            Some(t) if now - t >= AFTER_SHUTDOWN_NS => return,
            _ => std::hint::spin_loop(),
        }
    }
}

/// Computes (in this executable, where signals preempt) for about `d`.
fn compute_for(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..256u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    black_box(x);
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
            if comm.starts_with(prefix) {
                out.push(format!(
                    "{} {}",
                    task.file_name().to_string_lossy(),
                    comm.trim()
                ));
            }
        }
    }
    out
}

/// Runtimes dropped (shutdown timeout zero) while their CPU-bound green
/// threads are preempted through the widened window: a green thread
/// queued after the stop step's drain must still run on, detached, and
/// unwind at its next yield, and its thread exit.
#[test]
fn shutdown_between_the_check_and_the_push_still_releases_the_green_thread() {
    const ROUNDS: usize = 20;
    const GREEN: usize = 6;
    for _ in 0..ROUNDS {
        let rt = crate::Builder::new()
            .workers(2)
            .preempt_quantum(crate::preempt::MIN_QUANTUM)
            .thread_name(WIDENED)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        for _ in 0..GREEN {
            let running = running.clone();
            rt.spawn(move || {
                running.fetch_add(1, SeqCst);
                loop {
                    compute_for(Duration::from_micros(300));
                    crate::yield_now();
                }
            });
        }
        let t0 = Instant::now();
        while running.load(SeqCst) < GREEN && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(1));
        rt.shutdown_timeout(Duration::ZERO);
    }
    let t0 = Instant::now();
    let mut left = threads_named(WIDENED);
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        left = threads_named(WIDENED);
    }
    assert!(
        left.is_empty(),
        "{} thread(s) of {ROUNDS} dropped runtimes still alive 5 s after the last drop \
         (their green threads were queued as preempted after the stop step): {left:?}",
        left.len()
    );
}
