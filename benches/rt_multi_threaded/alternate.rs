//! The alternating pass: greenrt and tokio samples of one workload
//! interleaved (greenrt, tokio, greenrt, tokio, ...), and the table of
//! their per-pair ratios.
//!
//! Criterion runs all of greenrt's samples and then all of tokio's, so
//! the load of this shared machine drifting between the two (up to 2×)
//! goes straight into the comparison. Here each sample of one runtime is
//! next to a sample of the other, and the figure quoted is the median of
//! the per-pair ratios, which a drift slower than a pair cancels out of.
//! Strict alternation also puts every sample but the first right after
//! one of the other runtime (whose workers may still be winding down).
//!
//! A sample is a window of whole iterations at least [`WINDOW`] long:
//! one iteration of the shorter workloads (a few hundred µs to 10 ms) is
//! comparable to one scheduler slice of another process on this machine,
//! and a window of many absorbs such a slice. The iteration count is
//! calibrated from first timings of each runtime, and both runtimes run
//! the same count in every sample.

use std::time::{Duration, Instant};

use crate::common::median;
use crate::Workload;

/// Pairs of samples per workload (odd: the median is one of them).
const PAIRS: usize = 21;
/// Shortest sample.
const WINDOW: Duration = Duration::from_millis(100);
/// Shortest first timing from which the iteration count is calibrated.
const CALIBRATION: Duration = Duration::from_millis(20);

/// One workload's alternating samples.
pub struct Row {
    label: &'static str,
    iterations: u64,
    /// Median time per iteration (seconds): greenrt, tokio.
    medians: [f64; 2],
    /// greenrt / tokio time per iteration of each pair.
    ratios: Vec<f64>,
}

impl Row {
    /// Prints the row's figures, as a progress report, with every pair's
    /// ratio in the order run (a drift during the pass shows there).
    pub fn report(&self) {
        let ratios: Vec<_> = self.ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "[{}] alternating: {PAIRS} pairs × {} iterations: greenrt {}, tokio {} per \
             iteration; greenrt / tokio median {:.2} (min {:.2}, max {:.2}); pairs: {}",
            self.label,
            self.iterations,
            fmt_time(self.medians[0]),
            fmt_time(self.medians[1]),
            median(&self.ratios),
            min(&self.ratios),
            max(&self.ratios),
            ratios.join(" "),
        );
    }
}

/// Seconds `iterations` runs of `f` take.
fn time(iterations: u64, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64()
}

/// Seconds per iteration of `f`, from doubling runs until one lasts
/// [`CALIBRATION`].
fn per_iteration(f: &mut dyn FnMut()) -> f64 {
    let mut iterations = 1;
    loop {
        let t = time(iterations, f);
        if t >= CALIBRATION.as_secs_f64() {
            return t / iterations as f64;
        }
        iterations *= 2;
    }
}

/// Runs `w`'s alternating pass on runtimes `g` and `t` (already warm).
pub fn alternate(w: &Workload, g: &greenrt::Runtime, t: &tokio::runtime::Runtime) -> Row {
    let mut run_g = || (w.greenrt)(g);
    let mut run_t = || (w.tokio)(t);
    // Both windows at least WINDOW long: sized by the faster runtime, from
    // the fastest of two timings each (a timing slowed by other processes
    // would make windows short).
    let fastest = [per_iteration(&mut run_g), per_iteration(&mut run_t)]
        .into_iter()
        .chain([per_iteration(&mut run_g), per_iteration(&mut run_t)])
        .fold(f64::INFINITY, f64::min);
    let iterations = (WINDOW.as_secs_f64() / fastest).ceil().max(1.0) as u64;
    let (mut gs, mut ts) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    for _ in 0..PAIRS {
        gs.push(time(iterations, &mut run_g) / iterations as f64);
        ts.push(time(iterations, &mut run_t) / iterations as f64);
    }
    Row {
        label: w.label,
        iterations,
        medians: [median(&gs), median(&ts)],
        ratios: gs.iter().zip(&ts).map(|(g, t)| g / t).collect(),
    }
}

/// Prints the rows as a markdown table.
pub fn print_table(rows: &[Row], workers: usize, load_before: &str, load_after: &str) {
    println!(
        "\ngreenrt vs tokio, {workers} workers each, {PAIRS} alternating pairs of samples \
         (each at least {} ms) per workload; load average {load_before} before, \
         {load_after} after. Ratio = greenrt / tokio time per iteration \
         (lower: greenrt faster):",
        WINDOW.as_millis()
    );
    println!(
        "| workload | iterations per sample | greenrt (median) | tokio (median) | \
         greenrt / tokio (median of pairs) | min | max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            r.label,
            r.iterations,
            fmt_time(r.medians[0]),
            fmt_time(r.medians[1]),
            median(&r.ratios),
            min(&r.ratios),
            max(&r.ratios),
        );
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Three significant digits in µs or ms.
fn fmt_time(secs: f64) -> String {
    let (value, unit) = if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else {
        (secs * 1e3, "ms")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}
