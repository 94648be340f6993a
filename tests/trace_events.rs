//! Scheduler events other than runs in a recording: netpoll wake-ups, P
//! hand-offs between Ms (a blocking call's, a preemption's, sysmon's
//! retake), and Ms spinning and going idle.
//!
//! The preemption tests hold `SERIAL` (they need the CPUs to themselves
//! to see quanta expire) and their bounds are generous.

mod trace_util;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use greenrt::trace::{self, BlockReason, Event, EventKind, StopReason, Trace};
use trace_util::{hog, json_checked, model_checked, preemptive_runtime, retaken_ms};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The id of the green thread named `name` in `trace`.
fn id_of(trace: &Trace, name: &str) -> u64 {
    trace
        .slices()
        .iter()
        .find(|s| trace.label(s.g) == name)
        .unwrap_or_else(|| panic!("no run of {name}"))
        .g
}

fn handoffs(trace: &Trace) -> Vec<(Event, Option<usize>, usize)> {
    trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Handoff { from, to } => Some((*e, from, to)),
            _ => None,
        })
        .collect()
}

/// A green thread blocked reading a socket is woken by the netpoller
/// when another writes to it: its runs end blocked on the socket, a
/// netpoll wake-up of at least one green thread is recorded, and the
/// reader is made runnable by the scheduler (no green thread), at or
/// after such a wake-up.
#[test]
fn a_socket_read_is_woken_by_the_netpoller() {
    const ROUNDS: usize = 3;
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    let trace = rt.block_on(|| {
        let (mut a, mut b) = greenrt::os::unix::net::UnixStream::pair().unwrap();
        trace::start();
        let reader = greenrt::task::Builder::new()
            .name("reader")
            .spawn(move || {
                let mut buf = [0u8; 4];
                for i in 0..ROUNDS {
                    a.read_exact(&mut buf).unwrap();
                    assert_eq!(buf, [i as u8; 4]);
                }
            })
            .unwrap();
        let writer = greenrt::task::Builder::new()
            .name("writer")
            .spawn(move || {
                for i in 0..ROUNDS {
                    // Long enough for the reader to find nothing and park.
                    greenrt::sleep(Duration::from_millis(5));
                    b.write_all(&[i as u8; 4]).unwrap();
                }
            })
            .unwrap();
        reader.join().unwrap();
        writer.join().unwrap();
        trace::stop()
    });
    model_checked(&trace);
    let json = json_checked(&trace);
    let reader = id_of(&trace, "reader");
    let on_socket = trace
        .slices()
        .iter()
        .filter(|s| s.g == reader && s.reason == StopReason::Blocked(BlockReason::Socket))
        .count();
    assert!(on_socket >= 1, "the reader never blocked on its socket");
    let wakes: Vec<Event> = trace
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::NetpollWake { .. }))
        .copied()
        .collect();
    assert!(!wakes.is_empty(), "no netpoll wake-up recorded");
    for w in &wakes {
        assert!(
            matches!(w.kind, EventKind::NetpollWake { count } if count >= 1),
            "{w:?}"
        );
    }
    let first_wake = wakes[0].at;
    let woken = trace
        .events()
        .iter()
        .filter(|e| e.at >= first_wake)
        .filter(|e| matches!(e.kind, EventKind::Runnable { g, by: None } if g == reader))
        .count();
    assert!(
        woken >= 1,
        "the reader was never made runnable by the netpoller: {:?}",
        trace
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Runnable { g, .. } if g == reader))
            .collect::<Vec<_>>()
    );
    let in_json = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"] == "netpoll")
        .count();
    assert_eq!(in_json, wakes.len(), "every netpoll wake-up in the JSON");
}

/// A blocking call of greenrt (here `fs::File::metadata`, always a
/// system call on the worker's thread) hands the P on: the caller's run
/// ends "syscall", another M takes the P (a hand-off from the caller's
/// M to it, on the P's lane), and the caller runs on after it.
#[test]
fn a_blocking_call_hands_the_p_to_another_m() {
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    let trace = rt.block_on(|| {
        let file = greenrt::fs::File::open("Cargo.toml").unwrap();
        trace::start();
        greenrt::task::Builder::new()
            .name("blocker")
            .spawn(move || {
                file.metadata().unwrap();
                // Queued again (it ran on without a P): the M holding the
                // P now runs it, so the hand-off is recorded by the stop.
                for _ in 0..3 {
                    greenrt::yield_now();
                }
            })
            .unwrap()
            .join()
            .unwrap();
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    let blocker = id_of(&trace, "blocker");
    let syscall = trace
        .slices()
        .iter()
        .find(|s| s.g == blocker && s.reason == StopReason::Syscall)
        .unwrap_or_else(|| panic!("no run of the blocker ended in a syscall"))
        .clone();
    let hs = handoffs(&trace);
    let (event, _, to) = hs
        .iter()
        .find(|(e, from, to)| e.at >= syscall.end && *from == Some(syscall.m) && *to != syscall.m)
        .unwrap_or_else(|| {
            panic!(
                "no hand-off from M{} after the syscall at {:?}: {hs:?}",
                syscall.m, syscall.end
            )
        });
    assert_eq!(event.lane, Some(syscall.lane), "the hand-off is the P's");
    // Back from the call the blocker runs again, on whichever M holds
    // the P by then: after M{to} took it.
    assert!(
        trace
            .slices()
            .iter()
            .any(|s| s.g == blocker && s.start >= event.at),
        "the blocker did not run after M{to} took the P"
    );
}

/// With preemption on, a green thread blocked in a plain (non-greenrt)
/// system call is retaken by sysmon, its P handed to another M; CPU hogs
/// on one worker are preempted (SIGURG), their P going to a spare M.
#[test]
fn preemption_and_retake_hand_the_p_on() {
    let _serial = serial();
    let Some(rt) = preemptive_runtime(1, Duration::from_millis(2)) else {
        return;
    };
    let trace = rt.block_on(|| {
        trace::start();
        let sleeper = greenrt::task::Builder::new()
            .name("os-sleeper")
            .spawn(|| std::thread::sleep(Duration::from_millis(100)))
            .unwrap();
        let hogs: Vec<_> = (0..2)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("hog-{i}"))
                    .spawn(|| hog(Duration::from_millis(60)))
                    .unwrap()
            })
            .collect();
        sleeper.join().unwrap();
        for h in hogs {
            h.join().unwrap();
        }
        trace::stop()
    });
    model_checked(&trace);
    json_checked(&trace);
    let sleeper = id_of(&trace, "os-sleeper");
    let retaken = trace
        .slices()
        .iter()
        .find(|s| s.g == sleeper && s.reason == StopReason::Syscall)
        .unwrap_or_else(|| panic!("the sleeper's P was never retaken"))
        .clone();
    let retakes = retaken_ms(&trace);
    assert!(
        retakes.contains(&retaken.m),
        "no retake of M{} in {retakes:?}",
        retaken.m
    );
    let hs = handoffs(&trace);
    assert!(
        hs.iter()
            .any(|(_, from, to)| *from == Some(retaken.m) && *to != retaken.m),
        "the retaken P was not handed from M{} ({} records dropped): {hs:?}",
        retaken.m,
        trace.dropped()
    );
    let sigurgs: Vec<(usize, u64)> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::SigUrg { m, g } => Some((m, g)),
            _ => None,
        })
        .collect();
    for i in 0..2 {
        let name = format!("hog-{i}");
        let g = id_of(&trace, &name);
        assert!(
            sigurgs.iter().any(|&(_, sg)| sg == g),
            "{name} never signalled: {sigurgs:?}"
        );
        let preempted = trace
            .slices()
            .iter()
            .filter(|s| s.g == g && s.reason == StopReason::Preempted)
            .count();
        // 60 ms in 2 ms quanta: dozens on an idle machine.
        assert!(preempted >= 3, "{name}: {preempted} preemptions");
    }
    // A preempted hog keeps its OS thread: the P moves to another M.
    let ms: std::collections::HashSet<usize> = hs.iter().map(|&(_, _, to)| to).collect();
    assert!(
        ms.len() >= 2,
        "the P moved between fewer than two Ms: {hs:?}"
    );
    assert!(hs.len() >= 3, "{hs:?}");
}

/// Two workers, a green thread that sleeps and one that computes
/// throughout: each time the napper sleeps its M looks for work on the
/// other P (spinning, holding its own P) and, finding none, goes idle
/// (without one). The hog keeps the other P busy, so the napper's M is
/// never the second spinner, which would not spin.
#[test]
fn ms_spinning_and_going_idle_are_recorded() {
    const SLEEPS: usize = 5;
    let rt = greenrt::Builder::new()
        .workers(2)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        let hog = greenrt::task::Builder::new()
            .name("hog")
            .spawn(|| hog(Duration::from_millis(100)))
            .unwrap();
        greenrt::task::Builder::new()
            .name("napper")
            .spawn(|| {
                for _ in 0..SLEEPS {
                    greenrt::sleep(Duration::from_millis(2));
                }
            })
            .unwrap()
            .join()
            .unwrap();
        hog.join().unwrap();
        trace::stop()
    });
    model_checked(&trace);
    let json = json_checked(&trace);
    let threads = rt.metrics().num_threads();
    let (mut spinning, mut idle) = (Vec::new(), Vec::new());
    for e in trace.events() {
        match e.kind {
            EventKind::Spinning { m } => spinning.push((e.lane, m)),
            EventKind::Idle { m } => idle.push((e.lane, m)),
            _ => {}
        }
    }
    // Nearly once per sleep; a busy machine may delay the hog's start.
    assert!(spinning.len() >= 2, "{} Ms spun", spinning.len());
    assert!(
        idle.len() >= SLEEPS,
        "{} idle events for {SLEEPS} sleeps",
        idle.len()
    );
    // A spinning M holds a P (it steals into it): the event is on that
    // P's lane. An M goes idle after putting its P back: on none.
    for &(lane, m) in &spinning {
        assert!(lane.is_some_and(|l| l < 2), "M{m} spinning on {lane:?}");
        assert!(m < threads, "M{m} of {threads}");
    }
    for &(lane, m) in &idle {
        assert_eq!(lane, None, "M{m} idle on a P");
        assert!(m < threads, "M{m} of {threads}");
    }
    let napper = id_of(&trace, "napper");
    let timer_stops = trace
        .slices()
        .iter()
        .filter(|s| s.g == napper && s.reason == StopReason::Blocked(BlockReason::Timer))
        .count();
    assert_eq!(timer_stops, SLEEPS);
    let named = |n: &str| {
        json["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "i" && e["name"] == n)
            .count()
    };
    assert_eq!(named("spinning"), spinning.len());
    assert_eq!(named("idle"), idle.len());
}
