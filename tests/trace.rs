//! Scheduler tracing (`greenrt::trace`): what a recording holds, as the
//! decoded model and as Chrome Trace Event JSON.
//!
//! The preemption tests hold `SERIAL` (they need the CPUs to themselves
//! to see quanta expire) and their bounds are generous.

mod common;
mod trace_util;

use std::sync::Mutex;
use std::time::Duration;

use greenrt::trace::{self, BlockReason, EventKind, StopReason};
use trace_util::{ends_of, hog, json_checked, model_checked, preemptive_runtime};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Named green threads that yield, pass messages and sleep: every one of
/// them shows in the trace, under its name, on named P lanes, and the
/// slices end for the reasons they had.
#[test]
fn every_green_thread_appears_on_named_lanes() {
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        let (tx, rx) = greenrt::sync::mpsc::channel::<u32>();
        let mut hs = Vec::new();
        for i in 0..8u32 {
            let tx = tx.clone();
            hs.push(
                greenrt::task::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || {
                        for _ in 0..20 {
                            greenrt::yield_now();
                        }
                        greenrt::sleep(Duration::from_millis(2));
                        tx.send(i).unwrap();
                    })
                    .unwrap(),
            );
        }
        drop(tx);
        let receiver = greenrt::task::Builder::new()
            .name("receiver")
            .spawn(move || rx.iter().count())
            .unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(receiver.join().unwrap(), 8);
        trace::stop()
    });
    model_checked(&trace);
    let json = json_checked(&trace);
    let names: Vec<&str> = trace.lanes().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["P0", "P1"]);
    let slices: Vec<&str> = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for i in 0..8 {
        let name = format!("worker-{i}");
        assert!(slices.contains(&name.as_str()), "{name} missing");
        let ends = ends_of(&trace, &name);
        assert!(
            ends.get("yield").copied().unwrap_or(0) >= 20,
            "{name}: {ends:?}"
        );
        assert_eq!(ends.get("exit"), Some(&1), "{name}: {ends:?}");
    }
    assert!(slices.contains(&"receiver"));
    let blocked = |r| {
        trace
            .slices()
            .iter()
            .any(|s| s.reason == StopReason::Blocked(r))
    };
    assert!(blocked(BlockReason::Timer), "the sleeps");
    assert!(blocked(BlockReason::Channel), "the receiver");
    assert!(blocked(BlockReason::Join), "the joins");
    let created = |name: &str| {
        trace.events().iter().any(|e| {
            matches!(e.kind, EventKind::Created { g, parent: Some(_) } if trace.label(g) == name)
        })
    };
    assert!(created("worker-3") && created("receiver"));
    assert!(trace
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::Runnable { .. })));
    assert_eq!(trace.dropped(), 0);
}

/// With preemption on and a short quantum, CPU hogs run in many slices
/// that end "preempted"; sysmon's signals are recorded.
#[test]
fn preempted_hogs_end_many_slices_preempted() {
    let _serial = serial();
    let Some(rt) = preemptive_runtime(2, Duration::from_millis(2)) else {
        return;
    };
    let trace = rt.block_on(|| {
        trace::start();
        let hs: Vec<_> = (0..4)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("hog-{i}"))
                    .spawn(|| hog(Duration::from_millis(150)))
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    for i in 0..4 {
        let name = format!("hog-{i}");
        let ends = ends_of(&trace, &name);
        // 150 ms in 2 ms quanta, 4 hogs on 2 Ps: dozens of preemptions
        // on an idle machine; 5 leaves room for a very busy one.
        assert!(
            ends.get("preempted").copied().unwrap_or(0) >= 5,
            "{name}: {ends:?}"
        );
        assert_eq!(ends.get("exit"), Some(&1), "{name}: {ends:?}");
    }
    assert!(trace
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::SigUrg { .. })));
}

/// With preemption off each hog runs to its end in one slice.
#[test]
fn unpreempted_hogs_run_in_one_slice() {
    let _serial = serial();
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        let hs: Vec<_> = (0..3)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("hog-{i}"))
                    .spawn(|| hog(Duration::from_millis(100)))
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    for i in 0..3 {
        let name = format!("hog-{i}");
        let runs: Vec<_> = trace
            .slices()
            .iter()
            .filter(|s| trace.label(s.g) == name)
            .collect();
        assert_eq!(runs.len(), 1, "{name}: {runs:?}");
        assert_eq!(runs[0].reason, StopReason::Exit);
        assert!(
            runs[0].end - runs[0].start >= Duration::from_millis(90),
            "{runs:?}"
        );
    }
}

/// A flight recorder keeps only its window: the trace is no longer than
/// the window, and everything in it lies inside.
#[test]
fn flight_recorder_keeps_its_window() {
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    let window = Duration::from_millis(30);
    let trace = rt.block_on(move || {
        trace::start_flight_recorder(window);
        let hs: Vec<_> = (0..4)
            .map(|_| {
                greenrt::spawn(|| {
                    for _ in 0..100 {
                        greenrt::sleep(Duration::from_millis(2));
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    assert!(trace.duration() <= window, "{:?}", trace.duration());
    // Its window is full: the recording ran for about 200 ms.
    assert!(trace.duration() >= window / 2, "{:?}", trace.duration());
    assert!(!trace.slices().is_empty());
}

/// A flight recorder's memory stays bounded however much is recorded:
/// with a window far longer than the run, what it keeps is bounded by
/// its rings (one of 65 536 records per writer: each M, sysmon, and the
/// shared one), not by the 4 million yields recorded. (Resident memory
/// is checked in tests/trace_flight_memory.rs.)
#[test]
fn flight_recorder_keeps_at_most_its_rings() {
    const THREADS: usize = 200;
    const YIELDS: usize = 20_000;
    const RING: usize = 65_536;
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(|| {
        trace::start_flight_recorder(Duration::from_secs(3600));
        common::yield_in_threads(THREADS, YIELDS);
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    let writers = rt.metrics().num_threads() + 2;
    let kept = trace.slices().len() + trace.events().len();
    assert!(
        kept <= writers * RING + trace.lanes().len(),
        "{kept} slices and events kept by {writers} rings of {RING}"
    );
    // The rings were full, and kept the end of the run: the last yields.
    assert!(
        trace.slices().len() >= RING / 2,
        "{} slices",
        trace.slices().len()
    );
    assert!(trace.slices().iter().any(|s| s.reason == StopReason::Exit));
    assert_eq!(trace.dropped(), 0, "a flight recorder does not drop");
}

/// `stop` without a recording gives an empty trace; starting twice keeps
/// one recording, which one `stop` ends.
#[test]
fn stop_without_start_and_start_twice() {
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        let empty = trace::stop();
        assert!(empty.slices().is_empty() && empty.lanes().is_empty());
        trace::start();
        greenrt::yield_now();
        trace::start();
        greenrt::yield_now();
        let t = trace::stop();
        assert_eq!(t.lanes().len(), 1);
        assert!(
            t.slices()
                .iter()
                .filter(|s| s.reason == StopReason::Yield)
                .count()
                >= 2
        );
        assert!(trace::stop().slices().is_empty());
    });
}

/// A long recording outgrows many buffers without losing records, and
/// its slices stay consistent.
#[test]
fn long_recording_hands_buffers_off() {
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        let hs: Vec<_> = (0..20)
            .map(|_| {
                greenrt::spawn(|| {
                    for _ in 0..10_000 {
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    assert_eq!(trace.dropped(), 0);
    let yields = trace
        .slices()
        .iter()
        .filter(|s| s.reason == StopReason::Yield)
        .count();
    // 200 000 records on 2 Ms: several 65 536-record buffers each.
    assert_eq!(yields, 20 * 10_000);
}

/// A yield's stop is written before the green thread is queued again:
/// another M may take it off the queue at once (a steal), so a stop
/// written later (with the next start on the yielding M) would end its
/// slice after the thread had already started on the other P, or never
/// be written if the recording stopped first. Nappers (short sleeps)
/// keep the Ms hunting for work, so yielded threads are stolen often.
#[test]
fn a_yielded_thread_is_never_on_two_lanes_at_once() {
    const THREADS: usize = 2;
    const YIELDS: usize = 50_000;
    // Each round showed it about two times in three before the fix.
    for _ in 0..4 {
        yielded_threads_round(THREADS, YIELDS);
    }
}

fn yielded_threads_round(threads: usize, yields: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(move || {
        trace::start();
        let done = Arc::new(AtomicBool::new(false));
        let nappers: Vec<_> = (0..2)
            .map(|_| {
                let done = done.clone();
                greenrt::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        greenrt::sleep(Duration::from_micros(20));
                    }
                })
            })
            .collect();
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("y{i}"))
                    .spawn(move || {
                        for _ in 0..yields {
                            greenrt::yield_now();
                        }
                    })
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for h in nappers {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    assert_eq!(trace.dropped(), 0);
    for i in 0..threads {
        let name = format!("y{i}");
        let mut mine: Vec<_> = trace
            .slices()
            .iter()
            .filter(|s| trace.label(s.g) == name)
            .collect();
        mine.sort_by_key(|s| s.start);
        let overlaps: Vec<_> = mine
            .windows(2)
            .filter(|w| w[0].end > w[1].start)
            .map(|w| (w[0].clone(), w[1].clone()))
            .collect();
        assert!(
            overlaps.is_empty(),
            "{name} on two lanes at once {} times, first: {:?}",
            overlaps.len(),
            overlaps.first()
        );
        assert_eq!(ends_of(&trace, &name).get("yield"), Some(&yields), "{name}");
    }
}
