//! `cost`: fixed work with preemption at the default quantum vs off; see
//! the bench's module docs.

use std::time::Duration;

use criterion::Criterion;
use greenrt::preempt::DEFAULT_QUANTUM;

use crate::common::{benchmarking, timed, Rounds};
use crate::switch_cost::cost_by_accounting;
use crate::{
    greenrt_rt, iters_for, label, long_rounds, print_load, quantile, stats_since, work, COST_ROUND,
    COST_THREADS, WORKERS,
};

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
pub(crate) struct WorkBench {
    rt: greenrt::Runtime,
    pub(crate) rounds: Rounds,
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
    pub(crate) fn mean_preemptions(&self) -> f64 {
        let measured = &self.preemptions[self.preemptions.len().min(1)..];
        measured.iter().sum::<u64>() as f64 / measured.len().max(1) as f64
    }
}

/// Runs the same fixed-work rounds with preemption at `quantum` and off,
/// as criterion functions `label(quantum)` and "off".
pub(crate) fn on_off(
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

pub(crate) fn cost(c: &mut Criterion) {
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
