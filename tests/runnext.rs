//! The LIFO "next" slot: green threads handing work to each other run
//! back to back through it, but a pair that computes between hand-offs
//! must not hold back the queue for long.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{guarded, spin_for};
use greenrt::sync::mpsc;

/// One worker, preemption off (so only the run queues decide who runs):
/// a pair ping-pongs, each turn computing for 0.5 ms, while a third green
/// thread yields in a loop. Counts the pair's turns between two runs of
/// the yielder: the next slot's streak must end within a few turns when
/// turns are slow (it allows long streaks only for quick hand-offs, which
/// keep the pair in cache), so the queue's head is not kept waiting for
/// dozens of them.
#[test]
fn a_slow_ping_pong_pair_yields_the_worker_within_a_few_turns() {
    let most_turns_between = guarded(|| {
        let rt = greenrt::Builder::new()
            .workers(1)
            .preemption(false)
            .build()
            .unwrap();
        rt.block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let turns = Arc::new(AtomicUsize::new(0));
            let (a_tx, a_rx) = mpsc::channel::<()>();
            let (b_tx, b_rx) = mpsc::channel::<()>();
            let (s, t) = (stop.clone(), turns.clone());
            let a = greenrt::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    spin_for(Duration::from_micros(500));
                    t.fetch_add(1, Ordering::SeqCst);
                    b_tx.send(()).unwrap();
                    if a_rx.recv().is_err() {
                        break;
                    }
                }
            });
            let t = turns.clone();
            let b = greenrt::spawn(move || {
                while b_rx.recv().is_ok() {
                    spin_for(Duration::from_micros(500));
                    t.fetch_add(1, Ordering::SeqCst);
                    if a_tx.send(()).is_err() {
                        break;
                    }
                }
            });
            let yielder = greenrt::spawn(move || {
                let mut most = 0;
                let mut last = turns.load(Ordering::SeqCst);
                for _ in 0..30 {
                    greenrt::yield_now();
                    let now = turns.load(Ordering::SeqCst);
                    most = most.max(now - last);
                    last = now;
                }
                stop.store(true, Ordering::SeqCst);
                most
            });
            let most = yielder.join().unwrap();
            a.join().unwrap();
            b.join().unwrap();
            most
        })
    });
    // Bounded at 8 turns in a row when slow (Go bounds the streak by a
    // time slice, tokio at 3); 24 leaves room for the queue's own order.
    assert!(
        most_turns_between <= 24,
        "the yielder waited {most_turns_between} turns of the pair"
    );
}
