//! `trace::start` off any green thread records every runtime of the
//! process, those built later included, and those dropped before `stop`.
//! Alone in its binary: it would record other tests' runtimes too.

mod trace_util;

use greenrt::trace;
use trace_util::{json_checked, model_checked};

fn named_work(rt: &greenrt::Runtime, name: &'static str) {
    rt.block_on(move || {
        greenrt::task::Builder::new()
            .name(name)
            .spawn(|| {
                for _ in 0..10 {
                    greenrt::yield_now();
                }
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

#[test]
fn process_wide_recording_covers_every_runtime() {
    let before = greenrt::Builder::new().workers(1).build().unwrap();
    trace::start();
    let after = greenrt::Builder::new().workers(2).build().unwrap();
    named_work(&before, "in-before");
    named_work(&after, "in-after");
    let dropped = greenrt::Builder::new().workers(1).build().unwrap();
    named_work(&dropped, "in-dropped");
    drop(dropped);
    let t = trace::stop();
    model_checked(&t);
    json_checked(&t);
    let lanes: Vec<&str> = t.lanes().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(lanes, ["rt0 P0", "rt1 P0", "rt1 P1", "rt2 P0"]);
    for name in ["in-before", "in-after", "in-dropped"] {
        let ends: Vec<_> = t
            .slices()
            .iter()
            .filter(|s| t.label(s.g) == name && t.lanes()[s.lane].runtime < 3)
            .map(|s| s.reason.as_str())
            .collect();
        assert!(
            ends.iter().filter(|e| **e == "yield").count() >= 10,
            "{name}: {ends:?}"
        );
    }
    // Stopped: nothing more is recorded, and a second stop is empty.
    named_work(&after, "late");
    assert!(trace::stop().slices().is_empty());
}
