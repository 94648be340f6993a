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

/// Recurses until about `depth` bytes below `top`, then yields `yields`
/// times there.
#[inline(never)]
fn yield_deep(top: usize, depth: usize, yields: usize) -> usize {
    let pad = [0u8; 256];
    std::hint::black_box(&pad);
    let here = pad.as_ptr() as usize;
    if top - here < depth {
        return yield_deep(top, depth, yields) + std::hint::black_box(pad[0]) as usize;
    }
    for _ in 0..yields {
        greenrt::yield_now();
    }
    0
}

/// A direct switch finishes the green thread it left (requeues it) on
/// the stack of the one it switches into, below where that one parked.
/// That can take several KiB (a run queue that spills to the shared
/// queue, growing a buffer: about 6.5 KiB measured), so green threads
/// with small stacks that yield deep in them overflowed: the switch must
/// go through the scheduler's own stack when little room is left.
#[test]
fn green_threads_yielding_deep_in_small_stacks_do_not_overflow() {
    const STACK: usize = 16 * 1024;
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(false)
        .build()
        .unwrap();
    rt.block_on(|| {
        // More than a local run queue holds (256), so requeues spill.
        let hs: Vec<_> = (0..300)
            .map(|_| {
                greenrt::task::Builder::new()
                    .stack_size(STACK)
                    .spawn(|| {
                        let top = 0u8;
                        let top = std::hint::black_box(&top) as *const u8 as usize;
                        // About 3 KiB left below (less the frames above `top`).
                        yield_deep(top, STACK - 5 * 1024, 50)
                    })
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}
