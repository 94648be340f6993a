//! Signal-based preemption shares the CPU (`src/preempt/`): CPU-bound
//! green threads on one worker finish close together (the `cpu_bound`
//! example's property), a sleeping green thread keeps running among
//! CPU-bound hogs, and a green thread in the global queue is not starved
//! by preempted hogs.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time), bounds have
//! generous margins, and every body runs under a timeout so that a hang
//! fails instead of blocking the run.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::preemption::{add_twos, calibrate, exclusive, ms, preemptive, since, tsc, tsc_ticks};
use common::spin_for;
use greenrt::preempt::{self, Stats};

// ---------------------------------------------------------------------
// Fairness: the cpu_bound example's property.
// ---------------------------------------------------------------------

/// `threads` green threads on one worker each run `add_twos(iterations)`;
/// returns each one's finish time since the start, and the counters.
fn finish_times(preemption: bool, threads: usize, iterations: u64) -> (Vec<Duration>, Stats) {
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(preemption)
        .preempt_quantum(Duration::from_millis(1))
        .build()
        .expect("build the runtime");
    assert_eq!(rt.preempt_quantum().is_some(), preemption);
    let before = preempt::stats();
    let times = rt.block_on(move || {
        let start = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                greenrt::spawn(move || {
                    assert_eq!(add_twos(iterations), 2 * iterations);
                    start.elapsed()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (times, since(before))
}

#[test]
fn cpu_bound_green_threads_share_one_worker_fairly() {
    exclusive(|| {
        const THREADS: usize = 10;
        let iterations = calibrate(Duration::from_millis(70), |n| {
            black_box(add_twos(n));
        });
        let ratio = |t: &[Duration]| {
            let first = t.iter().min().unwrap().as_secs_f64();
            let last = t.iter().max().unwrap().as_secs_f64();
            first / last
        };
        let (on, on_stats) = finish_times(true, THREADS, iterations);
        let (off, off_stats) = finish_times(false, THREADS, iterations);
        let (r_on, r_off) = (ratio(&on), ratio(&off));
        println!(
            "fairness: {iterations} iterations each; preemption on: first/last = {r_on:.2} \
             (last {:.0} ms), {on_stats:?}; off: first/last = {r_off:.2} (last {:.0} ms), \
             {off_stats:?}",
            ms(*on.iter().max().unwrap()),
            ms(*off.iter().max().unwrap()),
        );
        assert!(
            r_on > 0.4,
            "with preemption (1 ms quantum) the first of {THREADS} equal CPU-bound green \
             threads finished at {r_on:.2} of the last one's time (expected them to finish \
             close together); finish times: {on:?}"
        );
        assert!(
            r_off < 0.3,
            "without preemption the first green thread should finish after ~1/{THREADS} of \
             the total, got {r_off:.2}: {off:?}"
        );
        assert!(
            on_stats.preemptions >= 50,
            "~{:.0} ms of CPU-bound work at a 1 ms quantum, but only {} preemptions",
            ms(*on.iter().max().unwrap()),
            on_stats.preemptions
        );
        // Once every thread has started, the next to run is always a
        // preempted one: its M should get the P straight from the preempted
        // one's, with no spare M in between.
        assert!(
            2 * on_stats.direct_handoffs >= on_stats.preemptions,
            "only {} of {} preemptions handed the P directly to the next preempted green \
             thread",
            on_stats.direct_handoffs,
            on_stats.preemptions
        );
        assert_eq!(
            (off_stats.preemptions, off_stats.signals),
            (0, 0),
            "a runtime with preemption(false) preempted or signalled"
        );
    });
}

// ---------------------------------------------------------------------
// Latency: a sleeper keeps running among hogs.
// ---------------------------------------------------------------------

#[test]
fn sleeping_green_thread_keeps_running_among_cpu_hogs() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(2)
            .preemption(true)
            .build()
            .unwrap();
        assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
        let before = preempt::stats();
        let cap = tsc_ticks(Duration::from_secs(10));
        let (iterations, worst, first_run, hogs_alive) = rt.block_on(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let finished = Arc::new(AtomicUsize::new(0));
            // Two hogs in pure main-executable code (preempted), two that
            // spin on the clock (mostly in the vDSO: retaken).
            let hogs: Vec<_> = (0..4)
                .map(|i| {
                    let (stop, finished) = (stop.clone(), finished.clone());
                    greenrt::spawn(move || {
                        let end = tsc() + cap;
                        while !stop.load(SeqCst) && tsc() < end {
                            if i % 2 == 0 {
                                black_box(add_twos(black_box(1000)));
                            } else {
                                spin_for(Duration::from_micros(10));
                            }
                        }
                        finished.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            let spawned = Instant::now();
            let probe = {
                let (stop, finished) = (stop.clone(), finished.clone());
                greenrt::spawn(move || {
                    let start = Instant::now();
                    let first_run = start - spawned;
                    let (mut n, mut worst) = (0u32, Duration::ZERO);
                    while start.elapsed() < Duration::from_secs(1) {
                        let t = Instant::now();
                        greenrt::sleep(Duration::from_millis(1));
                        let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                        worst = worst.max(late);
                        n += 1;
                    }
                    let alive = finished.load(SeqCst) == 0;
                    stop.store(true, SeqCst);
                    (n, worst, first_run, alive)
                })
            };
            let r = probe.join().unwrap();
            for h in hogs {
                h.join().unwrap();
            }
            r
        });
        let st = since(before);
        println!(
            "latency among 4 hogs on 2 workers (10 ms quantum): {iterations} sleeps of 1 ms in \
             1 s, worst lateness {:.1} ms, first run after {:.1} ms; {st:?}",
            ms(worst),
            ms(first_run)
        );
        assert!(
            iterations >= 10,
            "the sleeping green thread completed only {iterations} 1 ms sleeps in 1 s among \
             CPU-bound hogs (worst lateness {worst:?})"
        );
        assert!(
            worst < Duration::from_millis(200) && first_run < Duration::from_millis(200),
            "a 1 ms sleep among hogs was {worst:?} late (first run after {first_run:?}); \
             expected a few 10 ms quanta at most"
        );
        assert!(
            hogs_alive,
            "the hogs stopped before the probe's window ended"
        );
        assert!(
            st.preemptions + st.retakes > 0,
            "hogs ran for 1 s on every worker without a preemption or retake: {st:?}"
        );
    });
}

// ---------------------------------------------------------------------
// The global queue among preempted hogs.
// ---------------------------------------------------------------------

#[test]
fn global_queue_is_not_starved_by_preempted_hogs() {
    // A green thread spawned from outside the runtime goes to the global
    // queue; it must run within a few quanta even while every worker runs
    // a CPU-bound green thread that keeps being preempted.
    exclusive(|| {
        for workers in [1, 2] {
            let rt = preemptive(workers, Duration::from_millis(1));
            let stop = Arc::new(AtomicBool::new(false));
            let hogs: Vec<_> = (0..workers)
                .map(|_| {
                    let stop = stop.clone();
                    rt.spawn(move || {
                        let end = tsc() + tsc_ticks(Duration::from_secs(2));
                        while !stop.load(SeqCst) && tsc() < end {
                            black_box(add_twos(black_box(1000)));
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let before = preempt::stats();
            let t = Instant::now();
            let stop2 = stop.clone();
            rt.spawn(move || stop2.store(true, SeqCst)).join().unwrap();
            let took = t.elapsed();
            let st = since(before);
            for h in hogs {
                h.join().unwrap();
            }
            println!(
                "global queue, {workers} worker(s) with hogs: a green thread spawned from outside \
                 ran after {:.1} ms; {st:?}",
                ms(took)
            );
            assert!(
                took < Duration::from_millis(500),
                "{workers} worker(s): a green thread spawned from outside the runtime waited \
                 {took:?} while preempted hogs ran ({st:?}): preempted green threads are always \
                 resumed before the global queue is looked at"
            );
        }
    });
}
