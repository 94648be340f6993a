//! The stack pool at scale: a wave of green threads that exits leaves
//! its stacks pooled (no fixed cap, no unmapping on exit), the next wave
//! reuses them instead of mapping new ones, and an idle pool is trimmed
//! back and unmapped over time (`RuntimeMetrics::stacks_*`).
//!
//! Runs in a child process: `stacks_mapped` counts the whole process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child};
use greenrt::sync::WaitGroup;

const CHILD_LIMIT: Duration = Duration::from_secs(180);
/// More than the old fixed caps (16 384 in the runtime's pool, 64 per P).
const N: usize = 20_000;
/// Stacks the pool keeps warm however idle it is (`stack::pool`).
const MIN_WARM: usize = 1024;
/// Per-worker caches (64 each) and the root green thread's stack.
const SLACK: usize = 2 * 64 + 16;

/// Spawns `N` green threads that all stay alive until each has started,
/// then lets them finish and joins them. Returns the metrics taken while
/// all were alive.
fn wave() -> greenrt::RuntimeMetrics {
    let gate = WaitGroup::new();
    gate.add(1);
    let started = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (gate, started) = (gate.clone(), started.clone());
            greenrt::spawn(move || {
                started.fetch_add(1, Ordering::SeqCst);
                gate.wait();
            })
        })
        .collect();
    let t0 = Instant::now();
    while started.load(Ordering::SeqCst) < N {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "green threads did not start"
        );
        greenrt::sleep(Duration::from_millis(2));
    }
    let m = greenrt::metrics();
    gate.done();
    for h in handles {
        h.join().unwrap();
    }
    m
}

#[test]
fn exited_stacks_are_pooled_reused_and_trimmed_when_idle() {
    const NAME: &str = "exited_stacks_are_pooled_reused_and_trimmed_when_idle";
    if child_tag().as_deref() == Some("pool") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            let live = wave();
            assert!(live.stacks_mapped() >= N, "{live:?}");
            let after = greenrt::metrics();
            // Every exited stack was kept: none unmapped on exit (a
            // green thread whose join returned may still be finishing).
            assert!(after.stacks_pooled() >= N - 16, "{after:?}");
            assert!(after.stacks_mapped() >= live.stacks_mapped(), "{after:?}");
            let again = wave();
            // The second wave ran on the first one's stacks.
            assert!(
                again.stacks_mapped() <= live.stacks_mapped() + SLACK,
                "second wave mapped new stacks: {} then {}",
                live.stacks_mapped(),
                again.stacks_mapped()
            );
            // Idle, the pool is cooled and unmapped down to its floor
            // (about 3 s; a generous bound).
            let t0 = Instant::now();
            loop {
                let m = greenrt::metrics();
                if m.stacks_pooled() <= MIN_WARM + SLACK && m.stacks_mapped() <= MIN_WARM + SLACK {
                    println!("trimmed in {:?}: {m:?}", t0.elapsed());
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "the idle pool was not trimmed: {m:?}"
                );
                greenrt::sleep(Duration::from_millis(50));
            }
        });
        println!("CHILD_OK pool");
        return;
    }
    let out = run_child(NAME, "pool", &[], CHILD_LIMIT);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK pool"),
        "{}",
        describe(&out)
    );
}
