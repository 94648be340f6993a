//! Shutdown racing the preemption path. Shutdown's stop step takes the
//! preempted green threads out of their queue and kicks their Ms, which
//! run them on, detached, until they unwind; an M waiting in the
//! preemption path stops waiting only once its green thread's `locked_m`
//! record is cleared. `park_preempted` checked the `shutdown` flag once,
//! between taking the next preempted green thread off the queue (to hand
//! it its P directly) and queueing its own; a stop step in between left
//! a green thread out of the queue with its record set:
//!
//! - the successor it had taken was dropped at that check: neither
//!   resumed nor released (what this test catches on the old code);
//! - its own green thread, queued after the stop step's drain (a far
//!   narrower window: the whole drain must fit in it; see the unit test
//!   in `scheduler/preempt_path_tests.rs`, which widens it).
//!
//! Either way the green thread never resumed or unwound, and its thread
//! was left blocked on a futex for the life of the process.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::with_timeout;

/// Runtimes built and dropped.
const ROUNDS: usize = 1500;
/// CPU-bound green threads per runtime (on two workers, so most of them
/// are preempted at any moment).
const GREEN: usize = 8;
/// Thread-name prefix of this test's runtimes (Linux keeps 15 bytes).
const NAME: &str = "shutrace";

/// Computes in this executable's own code (where signals preempt) for
/// about `d`.
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

/// Threads of this process whose name starts with `prefix`: (tid, name,
/// the system call it is blocked in, from /proc/self/task/<tid>/syscall:
/// "running", or the call's number and arguments).
fn threads_named(prefix: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue; // exited meanwhile
        };
        let comm = comm.trim().to_string();
        if comm.starts_with(prefix) {
            let syscall = std::fs::read_to_string(path.join("syscall")).unwrap_or_default();
            out.push((
                task.file_name().to_string_lossy().into_owned(),
                comm,
                syscall
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    out
}

/// Builds and drops many runtimes (shutdown timeout zero: no waiting for
/// the green threads, straight to the stop step) while their CPU-bound
/// green threads are being preempted under the smallest quantum. Each
/// green thread computes in bursts longer than the quantum and yields in
/// between, so once detached it unwinds at its next yield and its thread
/// exits. Afterwards no thread of these runtimes may be left.
#[test]
fn dropping_runtimes_while_green_threads_are_preempted_leaves_no_thread_behind() {
    with_timeout(Duration::from_secs(180), || {
        let before = greenrt::preempt::stats();
        let start = Instant::now();
        for _ in 0..ROUNDS {
            let rt = greenrt::Builder::new()
                .workers(2)
                .preempt_quantum(greenrt::preempt::MIN_QUANTUM)
                .thread_name(NAME)
                .build()
                .unwrap();
            let running = Arc::new(AtomicUsize::new(0));
            for _ in 0..GREEN {
                let running = running.clone();
                rt.spawn(move || {
                    running.fetch_add(1, SeqCst);
                    loop {
                        compute_for(Duration::from_micros(300));
                        greenrt::yield_now();
                    }
                });
            }
            // Every green thread has run, and then a little longer: the
            // preempted queue is busy.
            let t0 = Instant::now();
            while running.load(SeqCst) < GREEN && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_micros(300));
            rt.shutdown_timeout(Duration::ZERO);
        }
        let stats = greenrt::preempt::stats().since(&before);
        let took = start.elapsed();
        // Detached green threads unwind within a burst; give their
        // threads (on a loaded machine) plenty of time to exit.
        let t0 = Instant::now();
        let mut left = threads_named(NAME);
        while !left.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
            left = threads_named(NAME);
        }
        eprintln!(
            "{ROUNDS} runtimes in {took:?}: {stats:?}; threads left: {}",
            left.len()
        );
        assert!(
            left.is_empty(),
            "{} thread(s) of dropped runtimes still alive 5 s after the last drop \
             (tid, name, syscall: 202 is futex): {left:?}",
            left.len()
        );
        assert!(
            stats.preemptions > ROUNDS as u64,
            "preemptions happened (else this proves nothing): {stats:?}"
        );
    });
}
