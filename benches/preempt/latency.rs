//! `hog_latency`: a sleeping probe's lateness among spinning green
//! threads (or tokio tasks); see the bench's module docs.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use greenrt::preempt::{Stats, DEFAULT_QUANTUM};

use crate::common::benchmarking;
use crate::{
    fmt_dur, fmt_stats, greenrt_rt, hog, label, print_load, quantile, stats_since, tokio_rt,
    StopOnDrop, HOGS, PROBE_SLEEP, PROBE_STARVED, TOKIO_WINDOW, WORKERS,
};

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

pub(crate) fn hog_latency(c: &mut Criterion) {
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
