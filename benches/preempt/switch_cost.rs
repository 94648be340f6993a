//! `switch_cost`: the cost of one preemption, from round times at the
//! minimum quantum and from TSC gaps between two spinning green threads;
//! see the bench's module docs.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use greenrt::preempt::{Stats, DEFAULT_QUANTUM, MIN_QUANTUM};

use crate::common::{benchmarking, mean};
use crate::cost::on_off;
use crate::{
    fmt_stats, greenrt_rt, label, lower_median, quantile, stats_since, StopOnDrop,
    ACCOUNTING_PAIRS, ACCOUNTING_WINDOW, COST_THREADS, GAP_CAPACITY, GAP_WINDOW, SWITCH_ROUND,
    WORKERS,
};

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
pub(crate) fn cost_by_accounting() {
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

pub(crate) fn switch_cost(c: &mut Criterion) {
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
