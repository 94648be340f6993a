//! Asynchronous preemption: latency, fairness and cost, with tokio for
//! comparison where it makes sense.
//!
//! Criterion times one thing per function; the figures a benchmark is
//! about (percentiles, ratios, µs per preemption) are computed here and
//! printed with `println!` after criterion's own lines. Groups:
//!
//! - `hog_latency`: 2 workers, 4 green threads spinning on a stop flag and
//!   one probe green thread sleeping 1 ms in a loop. Criterion times the
//!   probe's 1 ms sleep (so its estimate is 1 ms + mean lateness); printed:
//!   p50/p99/max lateness (wake-up time minus intended wake-up time) at the
//!   default quantum (10 ms, target p99 ≤ 2 × quantum) and at 1 ms, and
//!   the same probe without hogs on greenrt and tokio as a baseline. A
//!   probe that does not wake for 2 s is reported as starved (criterion's
//!   figure then counts 2 s a sleep, without waiting). Then tokio with the
//!   same 4 hogs (async blocks spinning without `.await`): they hold both
//!   workers, so its probe is expected to complete no sleep at all in the
//!   1.5 s window; the hogs are then stopped through the flag, so the
//!   benchmark terminates.
//! - `fairness`: the `cpu_bound` example's workload (30 green threads on 1
//!   worker, each adding 2 to a counter 10^8 times, never yielding), at a
//!   1 ms and the default quantum. Criterion
//!   times a round; printed: first-finish / last-finish per round (target
//!   ≥ 0.9 at 1 ms), and what strict round-robin would give with the
//!   slices actually observed.
//! - `cost`: 2 workers, 4 green threads each doing a fixed amount of the
//!   same work (about 0.4 s a round), preemption on at the default quantum
//!   vs off. Printed: the ratio of the mean round times (target within 1%)
//!   and of the process CPU time, and the median ratios over 20 pairs of
//!   quarter-size rounds run alternately on both runtimes (less exposed to
//!   drifts in the machine's load).
//! - `switch_cost`: 1 worker, 2 green threads doing fixed work (about
//!   0.3 s a round) at the minimum quantum (100 µs) vs preemption off.
//!   Printed: (mean on − mean off) / preemptions a round, in wall time and
//!   in process CPU time. Then a direct measurement: for 1 s two spinning
//!   green threads record the TSC each iteration; where one stops and the
//!   other starts is one switch, signal to resume. The same recording by
//!   one thread with preemption off shows the machine's own noise.
//!
//! Run with `cargo bench --bench preempt` (about 1.5 minutes on 2 cores),
//! or one group with e.g. `cargo bench --bench preempt -- fairness`. Rounds
//! of `fairness`, `cost` and `switch_cost` take long enough that criterion
//! runs one per sample and warns that it cannot complete 10 samples in the
//! target time: that is expected. The load average is printed with each
//! group: other processes competing for the CPUs skew every figure here
//! (quanta are wall-clock time, and so are most measurements).

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, SamplingMode};
use greenrt::preempt::Stats;

mod common;
use common::load_average;

#[path = "preempt/cost.rs"]
mod cost;
#[path = "preempt/fairness.rs"]
mod fairness;
#[path = "preempt/latency.rs"]
mod latency;
#[path = "preempt/switch_cost.rs"]
mod switch_cost;
use cost::cost;
use fairness::fairness;
use latency::hog_latency;
use switch_cost::switch_cost;

/// Worker threads for `hog_latency` and `cost`, on both runtimes.
const WORKERS: usize = 2;
/// Spinning green threads (or tokio tasks) in `hog_latency`.
const HOGS: usize = 4;
/// What the latency probe sleeps each time.
const PROBE_SLEEP: Duration = Duration::from_millis(1);
/// A probe silent this long is starved: it is reported as such, and
/// counted as sleeping this long from then on, so the benchmark ends.
const PROBE_STARVED: Duration = Duration::from_secs(2);
/// How long tokio's starved probe gets.
const TOKIO_WINDOW: Duration = Duration::from_millis(1500);
/// Green threads in a fairness round.
const FAIRNESS_THREADS: u64 = 30;
/// CPU time of a fairness round (all threads together).
/// Additions per green thread in a `fairness` round: the example's 10^8.
const FAIRNESS_ITERS: u64 = 100_000_000;
/// About how long a `fairness` round takes (for criterion's schedule).
const FAIRNESS_ROUND: Duration = Duration::from_secs(3);
/// Green threads in a `cost` round, on [`WORKERS`] workers.
const COST_THREADS: u64 = 4;
/// CPU time of a `cost` round per worker.
const COST_ROUND: Duration = Duration::from_millis(400);
/// CPU time of a `switch_cost` round (both green threads together).
const SWITCH_ROUND: Duration = Duration::from_millis(300);
/// How long the direct switch measurement records.
const GAP_WINDOW: Duration = Duration::from_secs(1);
/// How long each side of a time-accounting pair in `cost` records.
const ACCOUNTING_WINDOW: Duration = Duration::from_millis(1500);
/// Time-accounting pairs in `cost`.
const ACCOUNTING_PAIRS: usize = 8;
/// TSC gaps recorded per green thread in the direct measurement.
const GAP_CAPACITY: usize = 1 << 17;

// ---------------------------------------------------------------------------
// Runtimes, work, and small helpers
// ---------------------------------------------------------------------------

/// A greenrt runtime with `workers` workers, preemptive with `quantum`, or
/// cooperative if it is None.
fn greenrt_rt(workers: usize, quantum: Option<Duration>) -> greenrt::Runtime {
    let builder = greenrt::Builder::new().workers(workers);
    let builder = match quantum {
        Some(q) => builder.preemption(true).preempt_quantum(q),
        None => builder.preemption(false),
    };
    let rt = builder.build().expect("build the greenrt runtime");
    assert_eq!(
        rt.preempt_quantum(),
        quantum,
        "preemption is not available on this machine"
    );
    rt
}

fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("build the tokio runtime")
}

/// "q10ms", "q1ms", "q100us" or "off".
fn label(quantum: Option<Duration>) -> String {
    match quantum {
        None => "off".into(),
        Some(q) if q.subsec_nanos() % 1_000_000 == 0 => format!("q{}ms", q.as_millis()),
        Some(q) => format!("q{}us", q.as_micros()),
    }
}

/// The unit of CPU work (as in the `cpu_bound` example): `iters`
/// additions the optimiser cannot fold. Never yields nor blocks.
fn work(iters: u64) -> u64 {
    let mut counter = 0u64;
    for _ in 0..iters {
        counter = black_box(counter + 2);
    }
    counter
}

/// Spins until `stop` is set; returns the iterations done.
fn hog(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n = black_box(n + 1);
    }
    n
}

/// Iterations of [`work`] per second on this machine (best of three
/// measurements on the bench thread, once per process).
fn work_rate() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        const N: u64 = 20_000_000;
        (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(work(black_box(N)));
                N as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    })
}

/// Iterations of [`work`] that take about `cpu` of CPU time.
fn iters_for(cpu: Duration) -> u64 {
    (work_rate() * cpu.as_secs_f64()) as u64
}

fn print_load(group: &str) {
    println!(
        "[{group}] load average {} on {} CPUs",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

/// Counters accumulated between two `greenrt::preempt::stats()` calls.
fn stats_since(before: Stats) -> Stats {
    greenrt::preempt::stats().since(&before)
}

fn fmt_stats(s: Stats) -> String {
    format!(
        "{} preemptions ({} handed directly to the next), {} retakes, {} signals",
        s.preemptions, s.direct_handoffs, s.retakes, s.signals
    )
}

/// A duration in µs below a millisecond, in ms above.
fn fmt_dur(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    }
}

/// The `p`-quantile (nearest rank) of sorted values.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The lower median: the nearest-rank 0.5-quantile, like this bench's
/// other medians (`common::median` is the upper one, for an even count).
fn lower_median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Sets the flag when dropped: spinning green threads stop even if the
/// benchmark panics (dropping a runtime waits for its running green
/// threads to reach a scheduling point).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// Rounds that take a second or so: one per sample, one warm-up round
/// (criterion's warm-up stops after the first call that exceeds 1 ms).
fn long_rounds(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, round: Duration) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(round.mul_f64(10.0));
}

criterion_group!(benches, hog_latency, fairness, cost, switch_cost);
criterion_main!(benches);
