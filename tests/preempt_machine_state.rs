//! What a preempted green thread finds when it resumes
//! (`asm/x86_64/preempt.S`): its general registers, flags and red zone,
//! its SSE/AVX2/AVX-512 and opmask registers and its MXCSR (the kernels
//! in `preempt_machine_state/kernels.rs` compute under preemption and
//! must match a run on a plain OS thread), and a stack that a backtrace
//! walks whole.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time), bounds have
//! generous margins, and every body runs under a timeout so that a hang
//! fails instead of blocking the run.

mod common;
#[path = "preempt_machine_state/kernels.rs"]
mod kernels;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::preemption::{add_twos, calibrate, exclusive, ms, preemptive, since, tsc, tsc_ticks};
use greenrt::preempt;
use kernels::{kernels, Kernel, MXCSR_DEFAULT, MXCSR_TOWARD_ZERO};

// ---------------------------------------------------------------------
// Interrupted state survives.
// ---------------------------------------------------------------------

#[test]
fn interrupted_register_and_fpu_state_survives_preemption() {
    exclusive(|| {
        let jobs: Vec<(Kernel, u64, u64)> = kernels()
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let n = calibrate(Duration::from_millis(200), |n| {
                    black_box(k.run(n, 1, false));
                });
                // Both MXCSR jobs use one seed: their results must differ.
                let seed = match k {
                    Kernel::Mxcsr(_) => 99,
                    _ => 1000 + i as u64,
                };
                (k, n, seed)
            })
            .collect();
        // Reference: a plain OS thread, no runtime.
        let reference: Vec<(Vec<u64>, Duration)> = jobs
            .iter()
            .map(|&(k, n, seed)| {
                let t = Instant::now();
                let r = k.run(n, seed, false);
                (r, t.elapsed())
            })
            .collect();
        let rz = jobs
            .iter()
            .position(|j| j.0 == Kernel::Mxcsr(MXCSR_TOWARD_ZERO))
            .unwrap();
        let rn = jobs
            .iter()
            .position(|j| j.0 == Kernel::Mxcsr(MXCSR_DEFAULT))
            .unwrap();
        assert_ne!(
            reference[rz].0[..reference[rz].0.len() - 1],
            reference[rn].0[..reference[rn].0.len() - 1],
            "the rounding mode made no difference: the MXCSR check would prove nothing"
        );
        // The control bits read back (the low 6 bits are sticky exception
        // flags, set by the computation; they are compared too, below).
        assert_eq!(
            reference[rz].0.last().map(|m| m & !0x3F),
            Some(MXCSR_TOWARD_ZERO as u64)
        );

        // All of them interleaved on one worker, 100 µs quantum.
        let rt = preemptive(1, Duration::from_micros(100));
        let before = preempt::stats();
        let jobs2 = jobs.clone();
        let green: Vec<(Vec<u64>, u64, Duration)> = rt.block_on(move || {
            let hs: Vec<_> = jobs2
                .into_iter()
                .map(|(k, n, seed)| {
                    greenrt::spawn(move || {
                        let p0 = preempt::stats().preemptions;
                        let t = Instant::now();
                        let r = k.run(n, seed, true);
                        let el = t.elapsed();
                        (r, preempt::stats().preemptions - p0, el)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        drop(rt);
        for (i, ((k, n, _), (want, alone))) in jobs.iter().zip(&reference).enumerate() {
            let (got, preempted, took) = &green[i];
            println!(
                "state: {k:?} x{n}: alone {:.0} ms, interleaved {:.0} ms, {preempted} \
                 preemptions while it ran",
                ms(*alone),
                ms(*took)
            );
            assert!(
                *preempted > 0,
                "{k:?}: no green thread was preempted while it ran ({took:?}): the check \
                 proves nothing"
            );
            if got != want {
                let diff: Vec<_> = got
                    .iter()
                    .zip(want)
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(j, (a, b))| format!("word {j}: {a:#018x} != {b:#018x}"))
                    .collect();
                panic!(
                    "{k:?}: the result computed under preemption differs from the reference \
                     ({} of {} words): {diff:?}",
                    diff.len(),
                    want.len()
                );
            }
        }
        println!("state: {st:?}");
        assert!(st.preemptions >= jobs.len() as u64, "{st:?}");
    });
}

// ---------------------------------------------------------------------
// Backtraces after preemption.
// ---------------------------------------------------------------------

/// Recurses `depth` frames, then spins until this green thread has been
/// off its worker at least `times` times (the TSC jumps), stops the
/// competing hog (`stop`) and captures a backtrace.
#[inline(never)]
fn deep_preempted_backtrace(depth: u32, times: u32, stop: &AtomicBool) -> (String, u32) {
    if depth > 0 {
        let (bt, n) = deep_preempted_backtrace(depth - 1, times, stop);
        return (black_box(bt), black_box(n));
    }
    let gap = tsc_ticks(Duration::from_micros(300));
    let end = tsc() + tsc_ticks(Duration::from_secs(5));
    let (mut last, mut gaps) = (tsc(), 0);
    while gaps < times && last < end {
        let t = tsc();
        if t.saturating_sub(last) > gap {
            gaps += 1;
        }
        last = t;
    }
    // Symbolizing takes a while: without competition.
    stop.store(true, SeqCst);
    (std::backtrace::Backtrace::force_capture().to_string(), gaps)
}

#[test]
fn backtrace_of_a_preempted_green_thread_is_whole() {
    exclusive(|| {
        let rt = preemptive(1, Duration::from_millis(1));
        let before = preempt::stats();
        let (bt, gaps) = rt.block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let stop = stop.clone();
                greenrt::spawn(move || {
                    let end = tsc() + tsc_ticks(Duration::from_secs(10));
                    while !stop.load(SeqCst) && tsc() < end {
                        black_box(add_twos(black_box(1000)));
                    }
                })
            };
            let r = greenrt::spawn(move || deep_preempted_backtrace(12, 3, &stop))
                .join()
                .unwrap();
            other.join().unwrap();
            r
        });
        let st = since(before);
        let frames = bt.matches("deep_preempted_backtrace").count();
        println!("backtrace: {frames} recursion frames after {gaps} preemption gaps; {st:?}");
        assert!(
            gaps >= 3 && st.preemptions >= 3,
            "not preempted: {gaps} gaps, {st:?}"
        );
        assert!(
            frames >= 13,
            "recursion frames missing ({frames} of 13):\n{bt}"
        );
        let own = "backtrace_of_a_preempted_green_thread_is_whole";
        let at = bt
            .find(own)
            .unwrap_or_else(|| panic!("the backtrace misses the test's own frame:\n{bt}"));
        assert!(
            bt[at..]
                .lines()
                .any(|l| l.contains("greenrt::scheduler") && !l.contains("g_entry")),
            "the backtrace stops before the scheduler's frames:\n{bt}"
        );
    });
}
