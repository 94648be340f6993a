//! Helpers for the tests of preemption: runs under the file's lock, child
//! runs, preemptive runtimes, preemption counters, the time-stamp counter
//! (a clock that keeps a loop in the main executable, where it can always
//! be preempted) and CPU-bound loops.

use std::arch::x86_64::_rdtsc;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use greenrt::preempt::{self, Stats};

use super::{describe, run_child, serial, spin_for, with_timeout};

/// Limit for one test body (in-process) or one child process.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` alone (under `SERIAL`) and under the timeout.
pub fn exclusive<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _serial = serial();
    // Measured here, not first inside a green thread (where the other
    // green threads would wait for it in a std lock).
    tsc_per_us();
    with_timeout(LIMIT, f)
}

/// Runs this test binary's `test` as a child with `tag` (under `SERIAL`,
/// so the parent's other tests do not disturb its timing) and checks it
/// succeeded and printed `CHILD_OK <tag>`. Returns its stdout.
pub fn child_ok(test: &str, tag: &str, envs: &[(&str, Option<&str>)]) -> String {
    let _serial = serial();
    let out = run_child(test, tag, envs, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD_OK {tag}")),
        "child {tag} failed:\n{}",
        describe(&out)
    );
    stdout
}

/// A runtime with `workers` workers and preemption on at `quantum`
/// (whatever GREENRT_PREEMPT says).
pub fn preemptive(workers: usize, quantum: Duration) -> greenrt::Runtime {
    tsc_per_us();
    let rt = greenrt::Builder::new()
        .workers(workers)
        .preemption(true)
        .preempt_quantum(quantum)
        .build()
        .expect("build a preemptive runtime");
    assert_eq!(
        rt.preempt_quantum(),
        Some(quantum),
        "preemption was requested but is off (no XSAVE on this machine?)"
    );
    rt
}

/// Counter increments since `before`.
pub fn since(before: Stats) -> Stats {
    preempt::stats().since(&before)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The time-stamp counter: a single instruction, so a loop reading it
/// stays in the main executable (always preemptible, never a retake),
/// unlike `Instant::now`, which runs in the vDSO.
pub fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// TSC ticks per microsecond (measured once).
pub fn tsc_per_us() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (t0, c0) = (Instant::now(), tsc());
        spin_for(Duration::from_millis(20));
        let (t1, c1) = (Instant::now(), tsc());
        (c1 - c0) as f64 / ((t1 - t0).as_nanos() as f64 / 1e3)
    })
}

pub fn tsc_ticks(d: Duration) -> u64 {
    (d.as_nanos() as f64 / 1e3 * tsc_per_us()) as u64
}

pub fn tsc_to_ms(ticks: u64) -> f64 {
    ticks as f64 / tsc_per_us() / 1e3
}

/// Busy-waits for `d` reading only the TSC: pure main-executable code.
pub fn spin_tsc(d: Duration) {
    let end = tsc() + tsc_ticks(d);
    while tsc() < end {
        std::hint::spin_loop();
    }
}

/// The classic CPU-bound loop of `examples/cpu_bound.rs`.
#[inline(never)]
pub fn add_twos(iterations: u64) -> u64 {
    let mut counter = 0u64;
    for _ in 0..iterations {
        counter = black_box(counter + 2);
    }
    counter
}

/// Iterations of `f` that take about `target` on this machine (alone).
pub fn calibrate(target: Duration, f: impl Fn(u64)) -> u64 {
    let mut n = 1u64 << 12;
    loop {
        let t = Instant::now();
        f(n);
        let el = t.elapsed();
        if el >= Duration::from_millis(25) {
            return ((n as f64) * target.as_secs_f64() / el.as_secs_f64()).max(1.0) as u64;
        }
        n *= 2;
    }
}
