//! `#[greenrt::test]` (and through it the expansion `#[greenrt::main]`
//! shares): each test runs as the main green thread of a runtime of its
//! own, built with the attribute's arguments.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Limit for the waits below: far beyond what they need, so only a real
/// defect (no second worker, no preemption) reaches it.
const LIMIT: Duration = Duration::from_secs(20);

#[greenrt::test]
fn the_body_runs_on_a_green_thread() {
    assert_eq!(greenrt::task::current_name().as_deref(), Some("main"));
    let h = greenrt::spawn(|| 6 * 7);
    assert_eq!(h.join().unwrap(), 42);
    greenrt::sleep(Duration::from_millis(1));
}

#[greenrt::test]
fn a_result_test_can_use_the_question_mark() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[greenrt::test]
#[should_panic(expected = "boom in the body")]
fn a_panic_in_the_body_fails_the_test() {
    greenrt::yield_now();
    panic!("boom in the body");
}

/// Two workers: two green threads are running at the same moment (each
/// waits, spinning, for the other to arrive).
#[greenrt::test(workers = 2)]
fn workers_argument_gives_parallel_workers() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let arrived = arrived.clone();
            greenrt::spawn(move || {
                arrived.fetch_add(1, SeqCst);
                let start = Instant::now();
                while arrived.load(SeqCst) < 2 {
                    assert!(
                        start.elapsed() < LIMIT,
                        "the other green thread never ran alongside"
                    );
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// One worker with a 1 ms quantum: a green thread that spins, never
/// blocking, until another one runs, finishes only through preemption.
#[greenrt::test(workers = 1, preempt_quantum_ms = 1)]
fn preempt_quantum_argument_keeps_preemption_on() {
    let released = Arc::new(AtomicBool::new(false));
    let hog = {
        let released = released.clone();
        greenrt::spawn(move || {
            let start = Instant::now();
            while !released.load(SeqCst) {
                assert!(start.elapsed() < LIMIT, "the hog was never preempted");
                std::hint::spin_loop();
            }
        })
    };
    let releaser = {
        let released = released.clone();
        greenrt::spawn(move || released.store(true, SeqCst))
    };
    releaser.join().unwrap();
    hog.join().unwrap();
}

/// Arguments in either order, with a trailing comma.
#[greenrt::test(preempt_quantum_ms = 5, workers = 1)]
fn arguments_in_any_order() {
    assert_eq!(greenrt::spawn(|| "ok").join().unwrap(), "ok");
}
