//! The application's controls over preemption: the Builder's quantum
//! (validated) and switch, the GREENRT_PREEMPT environment variable, and
//! `preempt::disable` sections that defer preemption.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time, including the
//! children they start), bounds have generous margins, and every body runs
//! under a timeout so that a hang fails instead of blocking the run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::preemption::{
    child_ok, exclusive, preemptive, since, spin_tsc, tsc, tsc_ticks, tsc_to_ms,
};
use common::{child_tag, serial, spin_for};
use greenrt::preempt::{self, Stats};

// ---------------------------------------------------------------------
// Builder validation.
// ---------------------------------------------------------------------

#[test]
fn builder_validates_quantum_and_honours_greenrt_preempt() {
    const NAME: &str = "builder_validates_quantum_and_honours_greenrt_preempt";
    match child_tag().as_deref() {
        Some("env_off") => {
            assert_eq!(std::env::var("GREENRT_PREEMPT").as_deref(), Ok("off"));
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert_eq!(rt.preempt_quantum(), None, "GREENRT_PREEMPT=off ignored");
            // Functionally off: two hogs on one worker run one after the
            // other, and nothing is signalled.
            let before = preempt::stats();
            let (a, b) = rt.block_on(|| {
                let h = |_| {
                    greenrt::spawn(|| {
                        let t0 = tsc();
                        spin_tsc(Duration::from_millis(30));
                        (t0, tsc())
                    })
                };
                let (x, y) = (h(0), h(1));
                (x.join().unwrap(), y.join().unwrap())
            });
            assert!(a.1 <= b.0 || b.1 <= a.0, "hogs interleaved: {a:?} {b:?}");
            assert_eq!(since(before), Stats::default());
            // An explicit setting wins over the variable.
            let rt = greenrt::Builder::new()
                .workers(1)
                .preemption(true)
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
            println!("CHILD_OK env_off");
        }
        Some("env_default") => {
            assert!(std::env::var("GREENRT_PREEMPT").is_err());
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
            assert_eq!(preempt::DEFAULT_QUANTUM, Duration::from_millis(10));
            let rt = greenrt::Builder::new()
                .workers(1)
                .preempt_quantum(Duration::from_millis(3))
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), Some(Duration::from_millis(3)));
            println!("CHILD_OK env_default");
        }
        Some(other) => panic!("unknown child tag {other}"),
        None => {
            let _serial = serial();
            assert_eq!(preempt::MIN_QUANTUM, Duration::from_micros(100));
            for q in [0, 1, 50, 99] {
                let err = greenrt::Builder::new()
                    .workers(1)
                    .preempt_quantum(Duration::from_micros(q))
                    .build()
                    .expect_err("a quantum below 100 µs must be refused");
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::InvalidInput,
                    "{q} µs: {err}"
                );
            }
            let rt = preemptive(1, Duration::from_micros(100));
            assert_eq!(rt.block_on(|| 7), 7);
            drop(rt);
            let rt = greenrt::Builder::new()
                .workers(1)
                .preemption(false)
                .preempt_quantum(Duration::from_millis(1))
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), None);
            drop(rt);
            drop(_serial);
            child_ok(NAME, "env_off", &[("GREENRT_PREEMPT", Some("off"))]);
            child_ok(NAME, "env_default", &[("GREENRT_PREEMPT", None)]);
        }
    }
}

// ---------------------------------------------------------------------
// preempt::disable.
// ---------------------------------------------------------------------

/// On one worker with a 1 ms quantum: a recorder green thread runs (pure
/// main-executable code, timing itself with the TSC) while another spins
/// for 50 ms, under `preempt::disable()` if `guard`. Returns the
/// recorder's running time inside that window (TSC ticks), before it and
/// after it, and the window's length.
fn recorder_inside_window(guard: bool) -> (u64, u64, u64, u64) {
    let rt = preemptive(1, Duration::from_millis(1));
    let gap = tsc_ticks(Duration::from_micros(20));
    let cap = tsc_ticks(Duration::from_secs(10));
    rt.block_on(move || {
        let started = Arc::new(AtomicBool::new(false));
        let window_done = Arc::new(AtomicBool::new(false));
        let recorder = {
            let (started, window_done) = (started.clone(), window_done.clone());
            greenrt::spawn(move || {
                // Running segments: a gap of more than 20 µs between two
                // readings means the recorder was not running.
                let mut segments = Vec::with_capacity(100_000);
                let t0 = tsc();
                let (mut seg_start, mut last) = (t0, t0);
                let mut after = None;
                started.store(true, SeqCst);
                loop {
                    // The flag before the time: a preemption between the
                    // two must not make a stale time count as "after".
                    let done = window_done.load(SeqCst);
                    let t = tsc();
                    if t.saturating_sub(last) > gap && segments.len() < 100_000 {
                        segments.push((seg_start, last));
                        seg_start = t;
                    }
                    last = t;
                    if after.is_none() && done {
                        after = Some(t);
                    }
                    if after.is_some_and(|a| t.saturating_sub(a) > gap * 500)
                        || t.saturating_sub(t0) > cap
                    {
                        break;
                    }
                }
                segments.push((seg_start, last));
                segments
            })
        };
        while !started.load(SeqCst) {
            greenrt::yield_now();
        }
        let spinner = greenrt::spawn(move || {
            let outer = guard.then(preempt::disable);
            let t0 = tsc();
            spin_for(Duration::from_millis(25));
            // Nested guards: dropping the inner one keeps the outer one.
            let inner = guard.then(preempt::disable);
            spin_for(Duration::from_millis(5));
            drop(inner);
            spin_for(Duration::from_millis(20));
            let t1 = tsc();
            drop(outer);
            window_done.store(true, SeqCst);
            (t0, t1)
        });
        let (t0, t1) = spinner.join().unwrap();
        let segments = recorder.join().unwrap();
        let (mut inside, mut before, mut after) = (0, 0, 0);
        for (s, e) in segments {
            inside += e.min(t1).saturating_sub(s.max(t0));
            before += e.min(t0).saturating_sub(s);
            after += e.saturating_sub(s.max(t1));
        }
        (inside, before, after, t1 - t0)
    })
}

#[test]
fn preempt_disable_defers_preemption() {
    exclusive(|| {
        // Outside green threads the guard does nothing (and must not crash).
        drop(preempt::disable());
        let (inside, before, after, window) = recorder_inside_window(true);
        let (c_inside, _, _, c_window) = recorder_inside_window(false);
        println!(
            "disable: window {:.1} ms, recorder ran {:.3} ms inside it ({:.1} ms before, {:.1} \
             ms after); without the guard it ran {:.1} ms of {:.1} ms",
            tsc_to_ms(window),
            tsc_to_ms(inside),
            tsc_to_ms(before),
            tsc_to_ms(after),
            tsc_to_ms(c_inside),
            tsc_to_ms(c_window)
        );
        assert!(tsc_to_ms(window) >= 50.0);
        assert_eq!(
            inside,
            0,
            "another green thread of the (single) worker ran {:.3} ms inside a 50 ms \
             preempt::disable() section",
            tsc_to_ms(inside)
        );
        assert!(
            before > 0 && after > 0,
            "the recorder should run before and after the window"
        );
        // Any clear share proves the control; how much depends on load (a
        // debug build on a busy machine saw 4.4 ms of 50).
        assert!(
            tsc_to_ms(c_inside) > 1.0,
            "control: without the guard the recorder should run inside the window (1 ms \
             quantum), it ran {:.3} ms",
            tsc_to_ms(c_inside)
        );
    });
}
