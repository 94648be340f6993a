//! Checks shared by the trace tests: the Chrome JSON's shape and the
//! decoded model's invariants.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use greenrt::trace::{EventKind, Trace};
use serde_json::Value;

/// Spins until it has run for `d` in our own code (preemptible). Time
/// off the CPU — preempted, or its worker descheduled on a loaded
/// machine — does not count: a hog timed by the wall clock could end
/// after a few slices when the machine gives the test little CPU, and
/// then the tests that count its preemptions fail for want of load, not
/// of preemption. Chunks of work take about a microsecond (tens in a
/// debug build); a chunk that took longer than [`INTERRUPTED`] was
/// interrupted and is not counted.
pub fn hog(d: Duration) {
    let mut ran = Duration::ZERO;
    let mut x = 1u64;
    while ran < d {
        let chunk = Instant::now();
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let took = chunk.elapsed();
        if took < INTERRUPTED {
            ran += took;
        }
    }
    std::hint::black_box(x);
}

/// A chunk of `hog`'s work that took this long was interrupted.
const INTERRUPTED: Duration = Duration::from_micros(200);

/// The trace as parsed JSON, checked for its shape: `traceEvents`, one
/// `thread_name` per lane named as the lane, complete events with the
/// required fields, and no two complete events of one lane overlapping.
pub fn json_checked(trace: &Trace) -> Value {
    let mut out = Vec::new();
    trace.write_json(&mut out).expect("write_json");
    let v: Value = serde_json::from_slice(&out).expect("the JSON parses");
    let events = v["traceEvents"]
        .as_array()
        .expect("traceEvents is an array");
    let pid = u64::from(std::process::id());
    let mut names: HashMap<u64, String> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
    {
        let tid = e["tid"].as_u64().expect("tid");
        let name = e["args"]["name"].as_str().expect("name").to_owned();
        assert!(
            names.insert(tid, name).is_none(),
            "two thread_name events for tid {tid}"
        );
    }
    assert_eq!(names.len(), trace.lanes().len(), "one named lane per P");
    for (i, lane) in trace.lanes().iter().enumerate() {
        assert_eq!(names[&(i as u64)], lane.name);
    }
    let mut by_lane: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert_eq!(e["pid"].as_u64(), Some(pid));
        let tid = e["tid"].as_u64().expect("tid");
        assert!(names.contains_key(&tid), "a slice on an unnamed lane {tid}");
        let ts = e["ts"].as_f64().expect("ts");
        let dur = e["dur"].as_f64().expect("dur");
        assert!(ts >= 0.0 && dur >= 0.0);
        assert!(e["name"].is_string());
        assert!(e["args"]["g"].is_u64());
        assert!(e["args"]["m"].is_u64());
        let end = e["args"]["end"].as_str().expect("end");
        if end == "blocked" {
            assert!(
                e["args"]["block"].is_string(),
                "a blocked slice says on what"
            );
        }
        by_lane.entry(tid).or_default().push((ts, ts + dur));
    }
    for (tid, mut slices) in by_lane {
        slices.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for w in slices.windows(2) {
            // The JSON rounds to ns: allow that much.
            assert!(
                w[1].0 + 0.001 >= w[0].1,
                "lane {tid}: slices overlap: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
    v
}

/// The decoded model's invariants: slices sorted by lane then start,
/// `start <= end <= duration`, no overlap in a lane; events sorted by
/// time within the duration, lanes in range.
pub fn model_checked(trace: &Trace) {
    let lanes = trace.lanes().len();
    for w in trace.slices().windows(2) {
        assert!(
            (w[0].lane, w[0].start) <= (w[1].lane, w[1].start),
            "slices out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
        if w[0].lane == w[1].lane {
            assert!(
                w[0].end <= w[1].start,
                "overlap: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
    for s in trace.slices() {
        assert!(s.lane < lanes);
        assert!(s.start <= s.end, "{s:?}");
        assert!(
            s.end <= trace.duration(),
            "{s:?} past {:?}",
            trace.duration()
        );
    }
    for w in trace.events().windows(2) {
        assert!(w[0].at <= w[1].at, "events out of order");
    }
    for e in trace.events() {
        assert!(e.at <= trace.duration());
        assert!(e.lane.is_none_or(|l| l < lanes));
    }
}

/// How many slices of green thread `name` ended for each reason.
pub fn ends_of(trace: &Trace, name: &str) -> HashMap<&'static str, usize> {
    let mut out = HashMap::new();
    for s in trace.slices().iter().filter(|s| trace.label(s.g) == name) {
        *out.entry(s.reason.as_str()).or_default() += 1;
    }
    out
}

/// Longest a check may take.
pub const LONG: Duration = Duration::from_secs(60);

/// A runtime of `workers` preempting at `quantum`, or None (with the
/// reason printed) where preemption is unavailable.
pub fn preemptive_runtime(workers: usize, quantum: Duration) -> Option<greenrt::Runtime> {
    let rt = greenrt::Builder::new()
        .workers(workers)
        .preemption(true)
        .preempt_quantum(quantum)
        .build()
        .unwrap();
    if rt.preempt_quantum().is_none() {
        eprintln!("preemption unavailable here: skipped");
        return None;
    }
    Some(rt)
}

/// The Ms the trace's retake events name, in order.
pub fn retaken_ms(trace: &Trace) -> Vec<usize> {
    trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Retake { m } => Some(m),
            _ => None,
        })
        .collect()
}
