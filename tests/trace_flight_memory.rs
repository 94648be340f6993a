//! A flight recorder's resident memory does not grow with how much it
//! records, where an ordinary recording's does (32 bytes a record until
//! `stop`). Measured as the process's resident set (`/proc/self/statm`)
//! just before `stop`, so this test is alone in its binary: another
//! test's allocations in the same process would blur it.

mod common;

use std::time::Duration;

use greenrt::trace::{self, StopReason};

const THREADS: usize = 200;
/// Yields per thread of the short run; the long run does five times as
/// many. A quarter of that in a debug build, where the 4.8 million yields
/// took 12 s of CI: the flight recorder's ring (65 000 records) still
/// wraps many times over, and the ordinary recording still grows by
/// tens of MiB against the recorder's hundred-odd KiB.
const YIELDS: usize = if cfg!(debug_assertions) { 1_000 } else { 4_000 };
const MIB: i64 = 1 << 20;

/// Resident bytes of this process.
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64
}

/// Records `THREADS` green threads yielding `yields` times each, as a
/// flight recorder or not; returns how much the resident set grew from
/// before `start` to just before `stop`, and the yields the trace kept.
fn recorded_growth(rt: &greenrt::Runtime, yields: usize, flight: bool) -> (i64, usize) {
    let (growth, trace) = rt.block_on(move || {
        let before = resident();
        if flight {
            trace::start_flight_recorder(Duration::from_secs(3600));
        } else {
            trace::start();
        }
        common::yield_in_threads(THREADS, yields);
        let growth = resident() - before;
        (growth, trace::stop())
    });
    let kept = trace
        .slices()
        .iter()
        .filter(|s| s.reason == StopReason::Yield)
        .count();
    (growth, kept)
}

#[test]
fn flight_recorder_memory_does_not_grow_with_the_recording() {
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    // Warm up: stacks, Ms and their buffers exist before measuring.
    recorded_growth(&rt, YIELDS, true);
    let (short, short_kept) = recorded_growth(&rt, YIELDS, true);
    let (long, long_kept) = recorded_growth(&rt, 5 * YIELDS, true);
    let (plain, plain_kept) = recorded_growth(&rt, 5 * YIELDS, false);
    eprintln!(
        "resident growth: flight {} yields {} KiB (kept {short_kept}), \
         flight {} yields {} KiB (kept {long_kept}), \
         ordinary {} yields {} KiB (kept {plain_kept})",
        THREADS * YIELDS,
        short / 1024,
        5 * THREADS * YIELDS,
        long / 1024,
        5 * THREADS * YIELDS,
        plain / 1024,
    );
    // The ordinary recording kept every yield, 32 bytes each at least:
    // the measure sees record memory.
    assert_eq!(plain_kept, 5 * THREADS * YIELDS);
    let plain_records = (32 * plain_kept) as i64;
    assert!(
        plain >= plain_records / 2,
        "an ordinary recording of {plain_kept} yields grew by {} KiB only",
        plain / 1024
    );
    // The flight recorder kept a bounded part, and five times the work
    // did not cost it more memory (16 MiB: eight buffers' worth, for
    // allocator and page-cache noise); the ordinary recording of as much
    // grew by about 128 MiB.
    assert!(long_kept < 5 * THREADS * YIELDS / 4, "kept {long_kept}");
    assert!(
        long <= short + 16 * MIB,
        "flight recorder: {} KiB for {} yields, {} KiB for five times as many",
        short / 1024,
        THREADS * YIELDS,
        long / 1024
    );
    assert!(
        long < plain / 4,
        "flight {} KiB vs ordinary {} KiB",
        long / 1024,
        plain / 1024
    );
}
