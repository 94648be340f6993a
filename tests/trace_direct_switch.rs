//! Tracing green threads that switch straight into each other
//! (`M::switch_direct`, release builds): each switch is one record that
//! stands for the stop of one thread and the start of the next; the
//! decoded picture must be the same as for switches through the
//! scheduler.

use greenrt::trace::{self, BlockReason, StopReason};

mod common;
mod trace_util;
use trace_util::model_checked;

/// Two green threads pass a token back and forth over two channels on
/// one worker: every hand-off parks the sender on its channel and
/// switches straight into the other. Every run but each thread's last
/// ends blocked on a channel, the two alternate on the lane, and no
/// slice is lost.
#[test]
fn channel_ping_pong_slices_end_blocked_on_the_channel() {
    const ROUNDS: usize = 2_000;
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(false)
        .build()
        .unwrap();
    let (trace, ids) = rt.block_on(|| {
        trace::start();
        let (to_b, from_a) = greenrt::sync::mpsc::sync_channel::<usize>(0);
        let (to_a, from_b) = greenrt::sync::mpsc::sync_channel::<usize>(0);
        let a = greenrt::spawn(move || {
            for i in 0..ROUNDS {
                to_b.send(i).unwrap();
                assert_eq!(from_b.recv().unwrap(), i);
            }
            greenrt::task::current_id().unwrap()
        });
        let b = greenrt::spawn(move || {
            for _ in 0..ROUNDS {
                let v = from_a.recv().unwrap();
                to_a.send(v).unwrap();
            }
            greenrt::task::current_id().unwrap()
        });
        let ids = (a.join().unwrap(), b.join().unwrap());
        (trace::stop(), ids)
    });
    model_checked(&trace);
    assert_eq!(trace.dropped(), 0);
    let mut ours: Vec<_> = trace
        .slices()
        .iter()
        .filter(|s| s.g == ids.0 || s.g == ids.1)
        .collect();
    ours.sort_by_key(|s| s.start);
    let blocked = ours
        .iter()
        .filter(|s| s.reason == StopReason::Blocked(BlockReason::Channel))
        .count();
    // Each round parks each thread at least once (a rendezvous channel:
    // the sender waits for the receiver, the receiver for a value).
    assert!(
        blocked >= 2 * ROUNDS - 2,
        "{blocked} slices blocked on a channel for {ROUNDS} rounds"
    );
    let exits = ours.iter().filter(|s| s.reason == StopReason::Exit).count();
    assert_eq!(exits, 2, "each thread's last slice ends in its exit");
    let same_thread_twice = ours.windows(2).filter(|w| w[0].g == w[1].g).count();
    assert!(
        same_thread_twice * 10 < ours.len(),
        "{same_thread_twice} of {} slices follow one of the same thread",
        ours.len()
    );
}

/// Yielding threads on one worker take turns: each yield is a slice
/// ending in `Yield`, exactly as many as there were yields.
#[test]
fn every_direct_yield_is_a_slice() {
    const THREADS: usize = 4;
    const YIELDS: usize = 5_000;
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(false)
        .build()
        .unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        common::yield_in_threads(THREADS, YIELDS);
        trace::stop()
    });
    model_checked(&trace);
    assert_eq!(trace.dropped(), 0);
    let yields = trace
        .slices()
        .iter()
        .filter(|s| s.reason == StopReason::Yield)
        .count();
    assert_eq!(yields, THREADS * YIELDS);
}
