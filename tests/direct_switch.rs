//! Switching from a parking or yielding green thread straight into the
//! next one of its P (`M::switch_direct`), without passing through the
//! scheduler.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{block_on, child_tag, describe, run_child};
use greenrt::sync::mpsc;

/// With mprotect guard pages a green thread gets its stack at spawn, so
/// the next G of a P can have a stack and never have run: a direct switch
/// then lands in its entry point, which must finish the G that switched
/// (requeue or park it) as a resumed G does. It did not at first: the
/// parking G stayed "running" in no queue, and the program hung.
#[test]
fn a_direct_switch_into_a_green_thread_that_never_ran_finishes_the_one_before() {
    const NAME: &str = "a_direct_switch_into_a_green_thread_that_never_ran_finishes_the_one_before";
    if child_tag().as_deref() == Some("fresh") {
        let total = block_on(2, || {
            let handles: Vec<_> = (0..200u64)
                .map(|i| {
                    let (tx, rx) = mpsc::sync_channel::<u64>(1);
                    let echo = greenrt::spawn(move || rx.iter().sum::<u64>());
                    greenrt::spawn(move || {
                        for k in 0..50 {
                            tx.send(i + k).unwrap();
                            greenrt::yield_now();
                        }
                        drop(tx);
                        echo.join().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert_eq!(total, (0..200u64).map(|i| 50 * i + 49 * 50 / 2).sum());
        println!("CHILD_DONE");
        return;
    }
    let out = run_child(
        NAME,
        "fresh",
        &[("GREENRT_GUARD", Some("mprotect"))],
        Duration::from_secs(60),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CHILD_DONE"),
        "green threads started by a direct switch did not all finish\n{}",
        describe(&out)
    );
}

/// Yielding green threads on one worker take turns in queue order when
/// each yield switches straight into the next: a yielder goes behind the
/// others, never back in front.
#[test]
fn yielding_green_threads_take_turns_in_order_with_direct_switches() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    block_on(1, move || {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let order = order.clone();
                greenrt::spawn(move || {
                    for _ in 0..20 {
                        order.lock().unwrap().push(i);
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let order = seen.lock().unwrap();
    assert_eq!(order.len(), 60);
    // After the first round every window of three holds each G once.
    for w in order[3..].chunks(3) {
        let mut w = w.to_vec();
        w.sort();
        assert_eq!(w, [0, 1, 2], "turns out of order: {order:?}");
    }
}
