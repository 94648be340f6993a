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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use greenrt::preempt::{Stats, DEFAULT_QUANTUM, MIN_QUANTUM};

mod common;
use common::{benchmarking, load_average, mean, timed, Rounds};

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

/// Rounds that take a second or so: one per sample, one warm-up round
/// (criterion's warm-up stops after the first call that exceeds 1 ms).
fn long_rounds(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, round: Duration) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(round.mul_f64(10.0));
}

// ---------------------------------------------------------------------------
// hog_latency
// ---------------------------------------------------------------------------

/// Receives the probe's measured sleeps and hands them to criterion.
struct ProbeFeed {
    rx: mpsc::Receiver<Duration>,
    started: Instant,
    lateness: Vec<Duration>,
    /// When the probe was found starved (no wake-up for [`PROBE_STARVED`]).
    starved: Option<Instant>,
}

impl ProbeFeed {
    fn new(rx: mpsc::Receiver<Duration>) -> ProbeFeed {
        ProbeFeed {
            rx,
            started: Instant::now(),
            lateness: Vec::new(),
            starved: None,
        }
    }

    /// Total duration of the probe's next `iters` sleeps, for `iter_custom`
    /// ([`PROBE_STARVED`] each, without waiting, once it is starved).
    fn take(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if self.starved.is_none() {
                match self.rx.recv_timeout(PROBE_STARVED) {
                    Ok(slept) => {
                        self.lateness.push(slept.saturating_sub(PROBE_SLEEP));
                        total += slept;
                        continue;
                    }
                    Err(_) => self.starved = Some(Instant::now() - PROBE_STARVED),
                }
            }
            total += PROBE_STARVED;
        }
        total
    }

    /// "lateness over N sleeps: p50 …, p99 …, max …" (plus starvation),
    /// and whether the p99 is within `bound`.
    fn summary(&self, bound: Option<Duration>) -> (String, bool) {
        let mut v = self.lateness.clone();
        v.sort_unstable();
        let mut s = match v.last() {
            None => "no sleep completed".to_string(),
            Some(&max) => format!(
                "lateness over {} sleeps of {}: p50 {}, p99 {}, max {}",
                v.len(),
                fmt_dur(PROBE_SLEEP),
                fmt_dur(quantile(&v, 0.5)),
                fmt_dur(quantile(&v, 0.99)),
                fmt_dur(max),
            ),
        };
        if let Some(at) = self.starved {
            s += &format!(
                "\n  STARVED: no wake-up for {:?} from {:.2} s into the run on \
                 (criterion's figure counts {:?} a sleep from then on)",
                PROBE_STARVED,
                (at - self.started).as_secs_f64(),
                PROBE_STARVED
            );
        }
        let met = self.starved.is_none()
            && !v.is_empty()
            && bound.is_none_or(|b| quantile(&v, 0.99) <= b);
        (s, met)
    }
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

/// greenrt: hogs and a probe green thread on a [`WORKERS`]-worker runtime.
struct GreenrtScene {
    /// First, so the hogs stop before the runtime is dropped.
    stop: StopOnDrop,
    rt: greenrt::Runtime,
    probe: greenrt::JoinHandle<()>,
    hogs: Vec<greenrt::JoinHandle<u64>>,
    feed: ProbeFeed,
    before: Stats,
}

impl GreenrtScene {
    fn start(quantum: Option<Duration>, hogs: usize) -> GreenrtScene {
        let rt = greenrt_rt(WORKERS, quantum);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let before = greenrt::preempt::stats();
        // Spawned from a green thread, so they go to that worker's queue:
        // a green thread spawned from outside (`Runtime::spawn`) waits in
        // the global queue, which is not served while preempted green
        // threads wait (see the report).
        let s = stop.clone();
        let (probe, hogs) = rt.block_on(move || {
            let stop = s.clone();
            let probe = greenrt::spawn(move || {
                while !stop.load(Relaxed) {
                    let t = Instant::now();
                    greenrt::sleep(PROBE_SLEEP);
                    if tx.send(t.elapsed()).is_err() {
                        break;
                    }
                }
            });
            let hogs = (0..hogs)
                .map(|_| {
                    let stop = s.clone();
                    greenrt::spawn(move || hog(&stop))
                })
                .collect::<Vec<_>>();
            (probe, hogs)
        });
        GreenrtScene {
            stop: StopOnDrop(stop),
            rt,
            probe,
            hogs,
            feed: ProbeFeed::new(rx),
            before,
        }
    }

    /// Stops everything and prints the figures.
    fn finish(self, name: &str) {
        self.stop.0.store(true, Relaxed);
        let iters: Vec<u64> = self.hogs.into_iter().map(|h| h.join().unwrap()).collect();
        self.probe.join().unwrap();
        let stats = stats_since(self.before);
        let bound = self.rt.preempt_quantum().map(|q| 2 * q);
        let (summary, met) = self.feed.summary(bound.filter(|_| !iters.is_empty()));
        println!("hog_latency/{name}: {summary}");
        if !iters.is_empty() {
            println!(
                "  target p99 ≤ 2 × quantum ({}): {}",
                fmt_dur(bound.expect("preemptive")),
                if met { "met" } else { "NOT MET" }
            );
            println!(
                "  hog iterations {iters:?}{}",
                if iters.contains(&0) {
                    " (SOME HOG NEVER RAN)"
                } else {
                    ""
                }
            );
        }
        println!("  {}", fmt_stats(stats));
    }
}

/// The tokio probe: sleeps [`PROBE_SLEEP`] in a loop until `stop`,
/// sending each measured sleep.
async fn tokio_probe(stop: Arc<AtomicBool>, tx: mpsc::Sender<Duration>) {
    while !stop.load(Relaxed) {
        let t = Instant::now();
        tokio::time::sleep(PROBE_SLEEP).await;
        if tx.send(t.elapsed()).is_err() {
            break;
        }
    }
}

/// tokio without hogs: the baseline of its timer.
struct TokioIdle {
    stop: StopOnDrop,
    rt: tokio::runtime::Runtime,
    feed: ProbeFeed,
}

impl TokioIdle {
    fn start() -> TokioIdle {
        let rt = tokio_rt(WORKERS);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        rt.spawn(tokio_probe(stop.clone(), tx));
        TokioIdle {
            stop: StopOnDrop(stop),
            rt,
            feed: ProbeFeed::new(rx),
        }
    }

    fn finish(self) {
        self.stop.0.store(true, Relaxed);
        self.rt.shutdown_timeout(Duration::from_secs(1));
        println!("hog_latency/tokio_idle: {}", self.feed.summary(None).0);
    }
}

/// tokio with [`HOGS`] spinning tasks on [`WORKERS`] workers: counts the
/// probe's sleeps completed within [`TOKIO_WINDOW`], then stops the hogs.
fn tokio_hogged() {
    let rt = tokio_rt(WORKERS);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let before_spawn = Instant::now();
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| {
            let stop = stop.clone();
            rt.spawn(async move { hog(&stop) })
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let (first_tx, first_rx) = mpsc::channel();
    let probe_stop = stop.clone();
    let probe = rt.spawn(async move {
        let _ = first_tx.send(Instant::now());
        tokio_probe(probe_stop, tx).await;
    });
    let window_end = before_spawn + TOKIO_WINDOW;
    let mut lateness = Vec::new();
    while let Some(left) = window_end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(slept) => lateness.push(slept.saturating_sub(PROBE_SLEEP)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    stop.store(true, Relaxed);
    let stopped = Instant::now();
    let first_poll = first_rx.recv_timeout(PROBE_STARVED).ok();
    let iters = rt.block_on(async {
        let mut iters = Vec::new();
        for h in hogs {
            iters.push(h.await.unwrap());
        }
        tokio::time::timeout(PROBE_STARVED, probe)
            .await
            .expect("tokio's probe did not stop")
            .unwrap();
        iters
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    println!(
        "hog_latency/tokio_{HOGS}hogs: the probe completed {} sleeps in {:?} \
         (while the hogs ran)",
        lateness.len(),
        TOKIO_WINDOW
    );
    match first_poll {
        Some(t) if t >= stopped => println!(
            "  it was first polled {} after the hogs were told to stop",
            fmt_dur(t - stopped)
        ),
        Some(t) => println!(
            "  it was first polled {} after spawning",
            fmt_dur(t.saturating_duration_since(before_spawn))
        ),
        None => println!("  it was never polled"),
    }
    if !lateness.is_empty() {
        lateness.sort_unstable();
        println!(
            "  lateness p50 {}, p99 {}, max {}",
            fmt_dur(quantile(&lateness, 0.5)),
            fmt_dur(quantile(&lateness, 0.99)),
            fmt_dur(*lateness.last().unwrap())
        );
    }
    println!("  hog iterations {iters:?}");
}

fn hog_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("hog_latency");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    let mut ran = false;
    for (quantum, hogs) in [
        (DEFAULT_QUANTUM, HOGS),
        (Duration::from_millis(1), HOGS),
        (DEFAULT_QUANTUM, 0),
    ] {
        let name = if hogs > 0 {
            format!("greenrt_{}_{hogs}hogs", label(Some(quantum)))
        } else {
            "greenrt_idle".to_string()
        };
        let mut scene = None;
        group.bench_function(&name, |b| {
            let scene = scene.get_or_insert_with(|| {
                print_load("hog_latency");
                GreenrtScene::start(Some(quantum), hogs)
            });
            b.iter_custom(|iters| scene.feed.take(iters))
        });
        if let Some(scene) = scene {
            scene.finish(&name);
            ran = true;
        }
    }
    let mut idle = None;
    group.bench_function("tokio_idle", |b| {
        let idle = idle.get_or_insert_with(TokioIdle::start);
        b.iter_custom(|iters| idle.feed.take(iters))
    });
    if let Some(idle) = idle {
        idle.finish();
        ran = true;
    }
    group.finish();
    if ran && benchmarking() {
        tokio_hogged();
    }
}

// ---------------------------------------------------------------------------
// fairness
// ---------------------------------------------------------------------------

/// One round of the `cpu_bound` workload: (first, last) finish times.
fn fairness_round(rt: &greenrt::Runtime, iters: u64) -> (Duration, Duration) {
    let start = Instant::now();
    let finish = rt.block_on(move || {
        let handles: Vec<_> = (0..FAIRNESS_THREADS)
            .map(|_| {
                greenrt::spawn(move || {
                    assert_eq!(work(iters), 2 * iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (*finish.iter().min().unwrap(), *finish.iter().max().unwrap())
}

fn fairness(c: &mut Criterion) {
    let mut group = c.benchmark_group("fairness");
    long_rounds(&mut group, FAIRNESS_ROUND);
    for quantum in [Duration::from_millis(1), DEFAULT_QUANTUM] {
        let iters = FAIRNESS_ITERS;
        let mut state = None;
        group.bench_function(label(Some(quantum)), |b| {
            let (rt, rounds, finishes, _) = state.get_or_insert_with(|| {
                print_load("fairness");
                (
                    greenrt_rt(1, Some(quantum)),
                    Rounds::default(),
                    Vec::new(),
                    greenrt::preempt::stats(),
                )
            });
            b.iter_custom(|n| rounds.run(n, || finishes.push(fairness_round(rt, iters))))
        });
        let Some((_rt, _rounds, finishes, before)) = state else {
            continue;
        };
        let stats = stats_since(before);
        let last_mean = mean(
            &finishes
                .iter()
                .map(|f| f.1.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let ratios: Vec<f64> = finishes
            .iter()
            .map(|(first, last)| first.as_secs_f64() / last.as_secs_f64())
            .collect();
        let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "fairness/{}: {FAIRNESS_THREADS} threads × {iters} additions on 1 worker, {} rounds \
             (last finish {:.3} s on average): first/last median {:.3}, min {worst:.3}; \
             target ≥ 0.9 {}",
            label(Some(quantum)),
            finishes.len(),
            last_mean,
            lower_median(&ratios),
            if worst >= 0.9 {
                "met in every round"
            } else {
                "NOT met in every round"
            },
        );
        println!(
            "  per round, first/last finish (ms) and ratio: {}",
            finishes
                .iter()
                .zip(&ratios)
                .map(|((first, last), r)| format!(
                    "{:.0}/{:.0} {r:.2}",
                    first.as_secs_f64() * 1e3,
                    last.as_secs_f64() * 1e3
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let n = finishes.len() as u64;
        let slice = last_mean * n as f64 / stats.preemptions.max(1) as f64;
        println!(
            "  a round (mean): {}; mean slice {}, so strict round-robin would give \
             first/last ≈ {:.3}",
            fmt_stats(Stats {
                preemptions: stats.preemptions / n,
                retakes: stats.retakes / n,
                signals: stats.signals / n,
                direct_handoffs: stats.direct_handoffs / n,
            }),
            fmt_dur(Duration::from_secs_f64(slice)),
            1.0 - (FAIRNESS_THREADS - 1) as f64 * slice / last_mean
        );
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// cost
// ---------------------------------------------------------------------------

/// `threads` green threads doing `iters` of work each, joined.
fn work_round(rt: &greenrt::Runtime, threads: u64, iters: u64) {
    rt.block_on(move || {
        let handles: Vec<_> = (0..threads)
            .map(|_| greenrt::spawn(move || work(iters)))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 2 * iters);
        }
    });
}

/// A runtime for a fixed-work benchmark and its measured rounds.
struct WorkBench {
    rt: greenrt::Runtime,
    rounds: Rounds,
    preemptions: Vec<u64>,
}

impl WorkBench {
    fn new(workers: usize, quantum: Option<Duration>) -> WorkBench {
        WorkBench {
            rt: greenrt_rt(workers, quantum),
            rounds: Rounds::default(),
            preemptions: Vec::new(),
        }
    }

    /// `iters_custom` body: `n` rounds of `threads` × `iters` work.
    fn run(&mut self, n: u64, threads: u64, iters: u64) -> Duration {
        let (rt, preemptions) = (&self.rt, &mut self.preemptions);
        self.rounds.run(n, || {
            let before = greenrt::preempt::stats();
            work_round(rt, threads, iters);
            preemptions.push(stats_since(before).preemptions);
        })
    }

    /// Mean preemptions per measured round (the first is the warm-up).
    fn mean_preemptions(&self) -> f64 {
        let measured = &self.preemptions[self.preemptions.len().min(1)..];
        measured.iter().sum::<u64>() as f64 / measured.len().max(1) as f64
    }
}

/// Runs the same fixed-work rounds with preemption at `quantum` and off,
/// as criterion functions `label(quantum)` and "off".
fn on_off(
    c: &mut Criterion,
    group_name: &str,
    workers: usize,
    quantum: Duration,
    threads: u64,
    round_cpu: Duration,
) -> Option<(WorkBench, WorkBench, u64)> {
    let mut group = c.benchmark_group(group_name);
    long_rounds(&mut group, round_cpu);
    // `round_cpu` of work on each worker.
    let iters = iters_for(round_cpu) * workers as u64 / threads;
    let mut benches: [Option<WorkBench>; 2] = [None, None];
    for (slot, q) in benches.iter_mut().zip([Some(quantum), None]) {
        group.bench_function(label(q), |b| {
            let bench = slot.get_or_insert_with(|| {
                print_load(group_name);
                WorkBench::new(workers, q)
            });
            b.iter_custom(|n| bench.run(n, threads, iters))
        });
    }
    group.finish();
    let [Some(on), Some(off)] = benches else {
        return None;
    };
    Some((on, off, iters))
}

fn cost(c: &mut Criterion) {
    /// Alternating rounds, a quarter of criterion's each.
    const PAIRS: usize = 20;
    let Some((on, off, iters)) = on_off(
        c,
        "cost",
        WORKERS,
        DEFAULT_QUANTUM,
        COST_THREADS,
        COST_ROUND,
    ) else {
        return;
    };
    if !benchmarking() {
        return;
    }
    let ratio = on.rounds.mean() / off.rounds.mean();
    let cpu_ratio = on.rounds.mean_cpu() / off.rounds.mean_cpu();
    println!(
        "cost: {WORKERS} workers, {COST_THREADS} threads × {iters} additions: mean round \
         {:.4} s preemptive ({}, {:.0} preemptions a round) vs {:.4} s cooperative: \
         ratio {ratio:.4} ({:+.2}%; target within 1%)",
        on.rounds.mean(),
        label(Some(DEFAULT_QUANTUM)),
        on.mean_preemptions(),
        off.rounds.mean(),
        (ratio - 1.0) * 100.0
    );
    println!(
        "  process CPU time a round: {:.4} s vs {:.4} s: ratio {cpu_ratio:.4} ({:+.2}%)",
        on.rounds.mean_cpu(),
        off.rounds.mean_cpu(),
        (cpu_ratio - 1.0) * 100.0
    );
    // Alternating rounds cancel slow drifts in the machine's load.
    let (wall, cpu): (Vec<f64>, Vec<f64>) = (0..PAIRS)
        .map(|_| {
            let on = timed(|| work_round(&on.rt, COST_THREADS, iters / 4));
            let off = timed(|| work_round(&off.rt, COST_THREADS, iters / 4));
            (on.0 / off.0, on.1 / off.1)
        })
        .unzip();
    let spread = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        format!(
            "median {:.4} ({:+.2}%), quartiles {:.3}–{:.3}",
            quantile(&v, 0.5),
            (quantile(&v, 0.5) - 1.0) * 100.0,
            quantile(&v, 0.25),
            quantile(&v, 0.75)
        )
    };
    println!(
        "  alternating on/off, {PAIRS} pairs of quarter rounds: wall ratio {}; CPU ratio {}",
        spread(&wall),
        spread(&cpu)
    );
    cost_by_accounting();
}

// ---------------------------------------------------------------------------
// switch_cost
// ---------------------------------------------------------------------------

/// Reads the time-stamp counter (inlined: stays in the executable's text,
/// where the green thread can be preempted, unlike a vDSO clock call).
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Nanoseconds per TSC tick, measured against `Instant` over 50 ms.
fn tsc_ns_per_tick() -> f64 {
    let (t0, c0) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(50));
    let (t1, c1) = (Instant::now(), tsc());
    (t1 - t0).as_nanos() as f64 / (c1 - c0) as f64
}

/// What a recording hog saw: its first and last TSC reading and every gap
/// between consecutive readings longer than a threshold.
struct Trace {
    first: u64,
    last: u64,
    gaps: Vec<(u64, u64)>,
}

/// Spins until `stop`, recording gaps longer than `threshold` ticks.
fn recording_hog(stop: &AtomicBool, threshold: u64) -> Trace {
    let mut gaps = Vec::with_capacity(GAP_CAPACITY);
    let first = tsc();
    let mut last = first;
    while !stop.load(Relaxed) {
        let now = tsc();
        if now - last > threshold && gaps.len() < gaps.capacity() {
            gaps.push((last, now));
        }
        last = now;
    }
    Trace { first, last, gaps }
}

/// `p50 …, p90 …, mean …, max …` of sorted nanoseconds, in µs.
fn fmt_ns_summary(sorted: &[f64]) -> String {
    format!(
        "p50 {:.1} µs, p90 {:.1} µs, mean {:.1} µs, max {:.1} µs",
        quantile(sorted, 0.5) / 1e3,
        quantile(sorted, 0.9) / 1e3,
        mean(sorted) / 1e3,
        sorted[sorted.len() - 1] / 1e3
    )
}

/// `threads` recording hogs on `workers` workers (preemptive at `quantum`,
/// or cooperative), stopped after `window`: their traces, the preemption
/// stats of the run, the TSC reading just before the stop, and ns per tick.
fn record_hogs(
    workers: usize,
    threads: usize,
    quantum: Option<Duration>,
    window: Duration,
) -> (Vec<Trace>, Stats, u64, f64) {
    let ns_per_tick = tsc_ns_per_tick();
    let threshold = (500.0 / ns_per_tick) as u64; // 0.5 µs
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let rt = greenrt_rt(workers, quantum);
    let before = greenrt::preempt::stats();
    let s = stop.clone();
    let hogs = rt.block_on(move || {
        (0..threads)
            .map(|_| {
                let stop = s.clone();
                greenrt::spawn(move || recording_hog(&stop, threshold))
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(window);
    let stopped = tsc();
    stop.store(true, Relaxed);
    let traces = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    (traces, stats_since(before), stopped, ns_per_tick)
}

/// Each trace's running segments `(start, end, thread)`, in time order.
fn running_segments(traces: &[Trace]) -> Vec<(u64, u64, usize)> {
    let mut segments = Vec::new();
    for (id, t) in traces.iter().enumerate() {
        let mut start = t.first;
        for &(paused, resumed) in &t.gaps {
            segments.push((start, paused, id));
            start = resumed;
        }
        segments.push((start, t.last, id));
    }
    segments.sort_unstable();
    segments
}

/// Time accounting at one setting: `threads` recording hogs on [`WORKERS`]
/// workers for [`ACCOUNTING_WINDOW`]. Returns the share of the workers'
/// time in which no hog ran (from when the last hog first ran to the
/// stop) and the run's stats. Unlike a round's duration this does not
/// depend on how fast the (virtual) CPU happens to be running: it counts
/// time taken from the hogs, by preemption or by anything else.
fn lost_share(threads: usize, quantum: Option<Duration>) -> (f64, Stats) {
    let (traces, stats, stopped, _) = record_hogs(WORKERS, threads, quantum, ACCOUNTING_WINDOW);
    let from = traces.iter().map(|t| t.first).max().unwrap_or(stopped);
    let running: u64 = running_segments(&traces)
        .iter()
        .map(|&(start, end, _)| end.min(stopped).saturating_sub(start.max(from)))
        .sum();
    let available = stopped.saturating_sub(from) * WORKERS as u64;
    (1.0 - running as f64 / available.max(1) as f64, stats)
}

/// The cost by time accounting, in [`ACCOUNTING_PAIRS`] alternating pairs:
/// 4 recording hogs at the default quantum (each worker switching between
/// two) against one hog per worker with preemption off. The difference in
/// lost share is the time preemption takes from the work: signals,
/// trampoline, hand-offs, sysmon. Not included: a slower start after a
/// switch because the resumed thread's data left the cache (negligible
/// for these hogs, which keep their state in registers).
fn cost_by_accounting() {
    let mut pairs = Vec::new();
    let mut preemptions = 0;
    for _ in 0..ACCOUNTING_PAIRS {
        let (on, stats) = lost_share(COST_THREADS as usize, Some(DEFAULT_QUANTUM));
        let (off, _) = lost_share(WORKERS, None);
        preemptions += stats.preemptions;
        pairs.push((on, off));
    }
    let seconds = ACCOUNTING_WINDOW.as_secs_f64() * ACCOUNTING_PAIRS as f64;
    let per_second = preemptions as f64 / seconds / WORKERS as f64;
    let fmt = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(on, off)| {
                format!(
                    "{:.2}%−{:.2}%={:+.2}%",
                    on * 100.0,
                    off * 100.0,
                    (on - off) * 100.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut diffs: Vec<f64> = pairs.iter().map(|(on, off)| on - off).collect();
    diffs.sort_by(f64::total_cmp);
    let diff = lower_median(&diffs);
    println!(
        "  time accounting, {ACCOUNTING_PAIRS} × {ACCOUNTING_WINDOW:?} of TSC-recording hogs: \
         share of worker time lost, {COST_THREADS} hogs at {} minus {WORKERS} hogs off: {}",
        label(Some(DEFAULT_QUANTUM)),
        fmt(&pairs)
    );
    println!(
        "  median {:+.2}% (target within 1%); {per_second:.0} preemptions/s per worker, \
         so {:.1} µs of worker time per preemption",
        diff * 100.0,
        diff / per_second * 1e6
    );
}

/// Direct estimate: two recording hogs on one worker at the minimum
/// quantum. Where neither runs, the worker is switching: a pause between
/// one hog's last reading and the other's next is a switch (signal,
/// trampoline, hand-offs, resume); a pause of one hog alone is a
/// preemption that resumed the same hog, or an interrupt.
///
/// Without `quantum` (preemption off), one thread records alone: its
/// pauses are the machine's own noise (interrupts, other processes).
fn switch_gaps(quantum: Option<Duration>) {
    let threads = if quantum.is_some() { 2 } else { 1 };
    let (traces, stats, _, ns_per_tick) = record_hogs(1, threads, quantum, GAP_WINDOW);
    let segments = running_segments(&traces);
    let (mut switches, mut same, mut overlaps) = (Vec::new(), Vec::new(), 0);
    for w in segments.windows(2) {
        let ((_, end, a), (start, _, b)) = (w[0], w[1]);
        if start < end {
            overlaps += 1;
        } else if a != b {
            switches.push((start - end) as f64 * ns_per_tick);
        } else {
            same.push((start - end) as f64 * ns_per_tick);
        }
    }
    let mut runs: Vec<f64> = segments
        .iter()
        .map(|&(s, e, _)| (e - s) as f64 * ns_per_tick)
        .collect();
    runs.sort_by(f64::total_cmp);
    switches.sort_by(f64::total_cmp);
    same.sort_by(f64::total_cmp);
    // One pause per preemption: the longest ones, of either kind.
    let mut pauses: Vec<f64> = switches.iter().chain(&same).copied().collect();
    pauses.sort_by(|a, b| b.total_cmp(a));
    pauses.truncate(stats.preemptions as usize);
    pauses.reverse();
    println!(
        "switch_cost/direct_{}: {:?} of {threads} TSC-recording thread(s) on 1 worker: {}",
        label(quantum),
        GAP_WINDOW,
        fmt_stats(stats)
    );
    let window = traces.iter().map(|t| t.last).max().unwrap_or(0)
        - traces.iter().map(|t| t.first).min().unwrap_or(0);
    let share = |v: &[f64]| v.iter().sum::<f64>() / (window as f64 * ns_per_tick) * 100.0;
    if !switches.is_empty() {
        println!(
            "  {} switches from one thread to the other ({:.1}% of the time), from the \
             last instruction of one to the first of the other: {}",
            switches.len(),
            share(&switches),
            fmt_ns_summary(&switches)
        );
    }
    if !same.is_empty() {
        println!(
            "  {} pauses ≥ 0.5 µs of one thread with no switch ({:.1}% of the time): {}",
            same.len(),
            share(&same),
            fmt_ns_summary(&same)
        );
    }
    if !pauses.is_empty() {
        println!(
            "  the {} longest pauses (one per preemption): {}",
            pauses.len(),
            fmt_ns_summary(&pauses)
        );
    }
    println!(
        "  run segments p50 {:.1} µs; {overlaps} overlapping segments; {} gaps recorded",
        quantile(&runs, 0.5) / 1e3,
        traces.iter().map(|t| t.gaps.len()).sum::<usize>()
    );
}

fn switch_cost(c: &mut Criterion) {
    let Some((on, off, iters)) = on_off(c, "switch_cost", 1, MIN_QUANTUM, 2, SWITCH_ROUND) else {
        return;
    };
    if !benchmarking() {
        return;
    }
    let preemptions = on.mean_preemptions();
    println!(
        "switch_cost: 1 worker, 2 threads × {iters} additions: mean round {:.4} s at {} \
         ({preemptions:.0} preemptions a round) vs {:.4} s off: {:.2} µs per preemption",
        on.rounds.mean(),
        label(Some(MIN_QUANTUM)),
        off.rounds.mean(),
        (on.rounds.mean() - off.rounds.mean()) / preemptions * 1e6
    );
    println!(
        "  process CPU time a round: {:.4} s vs {:.4} s: {:.2} µs of CPU per preemption \
         (all threads: signal, trampoline, hand-offs, sysmon)",
        on.rounds.mean_cpu(),
        off.rounds.mean_cpu(),
        (on.rounds.mean_cpu() - off.rounds.mean_cpu()) / preemptions * 1e6
    );
    switch_gaps(Some(MIN_QUANTUM));
    switch_gaps(None);
}

criterion_group!(benches, hog_latency, fairness, cost, switch_cost);
criterion_main!(benches);
