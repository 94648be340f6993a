//! `fairness`: the `cpu_bound` example's workload on one worker; see the
//! bench's module docs.

use std::time::{Duration, Instant};

use criterion::Criterion;
use greenrt::preempt::{Stats, DEFAULT_QUANTUM};

use crate::common::{mean, Rounds};
use crate::{
    fmt_dur, fmt_stats, greenrt_rt, label, long_rounds, lower_median, print_load, stats_since,
    work, FAIRNESS_ITERS, FAIRNESS_ROUND, FAIRNESS_THREADS,
};

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

pub(crate) fn fairness(c: &mut Criterion) {
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
