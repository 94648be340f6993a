//! A retake in a trace: sysmon asks a blocked M to give up its P, the
//! M's signal handler hands the P on (and writes nothing: it may not),
//! and the M that takes the P records the retake. One `Retake` event per
//! retake the runtime counted, naming the blocked M; none where nothing
//! was retaken (sysmon's requests alone are SIGURG events).

mod trace_util;

use std::time::Duration;

use greenrt::trace::{self, EventKind};
use trace_util::{hog, preemptive_runtime, retaken_ms};

#[test]
fn a_p_retaken_from_a_blocked_green_thread_is_one_retake_event() {
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    let (trace, retakes) = rt.block_on(|| {
        trace::start();
        // Blocks its OS thread where it may not be preempted (in libc):
        // sysmon retakes the P so the other green thread runs meanwhile.
        let blocker = greenrt::spawn(|| std::thread::sleep(Duration::from_millis(300)));
        let runner = greenrt::spawn(|| {
            for _ in 0..20 {
                greenrt::sleep(Duration::from_millis(1));
            }
        });
        runner.join().unwrap();
        blocker.join().unwrap();
        (trace::stop(), greenrt::metrics().retakes())
    });
    let retake_events = retaken_ms(&trace);
    assert!(retakes >= 1, "the blocked green thread's P was not retaken");
    assert_eq!(
        retake_events.len() as u64,
        retakes,
        "one Retake event per retake counted (events name Ms {retake_events:?})"
    );
    // The retaken M is one the trace saw signalled.
    for m in &retake_events {
        assert!(
            trace
                .events()
                .iter()
                .any(|e| matches!(e.kind, EventKind::SigUrg { m: s, .. } if s == *m)),
            "Retake of M {m:#x}, which no SIGURG event names"
        );
    }
}

#[test]
fn cpu_hogs_that_are_preempted_make_no_retake_events() {
    let Some(rt) = preemptive_runtime(1, Duration::from_millis(1)) else {
        return;
    };
    let (trace, retakes) = rt.block_on(|| {
        trace::start();
        let hogs: Vec<_> = (0..3)
            .map(|_| greenrt::spawn(|| hog(Duration::from_millis(40))))
            .collect();
        for h in hogs {
            h.join().unwrap();
        }
        (trace::stop(), greenrt::metrics().retakes())
    });
    let sigurgs = trace
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SigUrg { .. }))
        .count();
    assert!(sigurgs > 0, "the hogs were never signalled");
    assert_eq!(
        retaken_ms(&trace).len() as u64,
        retakes,
        "Retake events against retakes counted"
    );
}
