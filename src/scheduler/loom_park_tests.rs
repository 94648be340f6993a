//! Loom model checks of a G's park / wake / cancel hand-shake
//! (`ParkState`, scheduler/park_state.rs): the core of every wake-up. The other
//! lock-free protocols are in `loom_tests.rs`; see docs/DESIGN.md, "Model
//! checking".

use std::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::thread;

use super::g::{ParkState, RUNNING};
use crate::sys::sync::{model, AtomicBool};

/// ParkState (scheduler/park_state.rs): the core of every wake-up. An M finishes
/// parking its G (`finish_park`, after the switch) while another thread
/// wakes it (`wake_token`, as `GRef::unpark` does). Checks: the G is
/// queued again exactly once — by its own M (`finish_park` saw the
/// token) or by the waker (its CAS saw PARKED) — never both, never
/// neither (the SeqCst store/load pairs on both sides are what forbid
/// the store-buffering outcome in which each misses the other).
#[test]
fn loom_park_races_a_wake_up_exactly_one_requeues() {
    model(|| {
        let g = Arc::new(ParkState::new());
        g.set_state(RUNNING);
        let m = {
            let g = g.clone();
            thread::spawn(move || g.finish_park())
        };
        let by_waker = g.wake_token();
        let by_own_m = m.join().unwrap();
        assert!(by_waker || by_own_m, "lost wake-up: the G stays parked");
        assert!(!(by_waker && by_own_m), "the G was queued twice");
    });
}

/// How the parking G's turn ended.
#[derive(Debug, PartialEq)]
enum Parked {
    /// Saw the cancel mark before switching out: unwound.
    Unwound,
    /// `finish_park` saw the token: its own M queued it again.
    Requeued,
    /// Parked; only a waker can queue it now.
    Asleep,
}

/// ParkState (scheduler/park_state.rs) under shutdown's `cancel_all`: the
/// canceller marks the G cancelled, then wakes it (`wake_token`; queued
/// if that returns true), while the G parks (`scheduler::park`: take the
/// token and read the mark, then switch out; the M's Park arm:
/// `finish_park`, queueing it again if that returns true; modelled
/// around the real calls). Checks: the G is queued again exactly once
/// or unwinds before parking — never left asleep, never queued twice —
/// and whenever it runs after the canceller's token it sees the mark.
#[test]
fn loom_cancel_wakes_a_parking_g_which_sees_the_mark() {
    model(|| {
        let g = Arc::new(ParkState::new());
        g.set_state(RUNNING);
        let parking = {
            let g = g.clone();
            thread::spawn(move || {
                let (pending, cancelled) = (g.take_token(), g.is_cancelled());
                if cancelled {
                    return Parked::Unwound;
                }
                assert!(!pending, "took the canceller's token without its mark");
                if g.finish_park() {
                    // Resumed by its own M: `park`'s tail.
                    g.take_token();
                    assert!(g.is_cancelled(), "resumed after the token, not cancelled");
                    return Parked::Requeued;
                }
                Parked::Asleep
            })
        };
        g.cancel();
        let queued_by_canceller = g.wake_token();
        let outcome = parking.join().unwrap();
        match outcome {
            Parked::Unwound => assert!(!queued_by_canceller, "queued a G that is not parked"),
            Parked::Requeued => assert!(!queued_by_canceller, "queued twice"),
            Parked::Asleep => {
                assert!(queued_by_canceller, "lost wake-up: the cancelled G sleeps");
                // It runs again (after the run queue's hand-over).
                g.take_token();
                assert!(g.is_cancelled());
            }
        }
    });
}

/// ParkState (scheduler/park_state.rs), one state word: two wakers race for a G
/// that is parking (its M runs `finish_park`). Checks: it is queued
/// exactly once in all — by one waker, or by its own M when a token came
/// first — never twice (two CASes cannot both take it out of PARKED).
#[test]
fn loom_two_wakers_and_a_park_queue_the_g_exactly_once() {
    model(|| {
        let g = Arc::new(ParkState::new());
        g.set_state(RUNNING);
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.wake_token())
            })
            .collect();
        let by_own_m = g.finish_park();
        let by_wakers = wakers
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(|&queued| queued)
            .count();
        assert_eq!(
            usize::from(by_own_m) + by_wakers,
            1,
            "queued {by_wakers} + {by_own_m}"
        );
    });
}

/// ParkState (scheduler/park_state.rs) with the condition a waiter waits for: a
/// waker publishes it (Release) and wakes the G (`wake_token`) while the G,
/// queued by an earlier wake-up, starts (`set_state(RUNNING)`), looks at the
/// condition, and parks if it is not there (`take_token`, `finish_park`).
/// Checks: the G sees the condition or the waker queues it — never
/// parked with the condition missed (the store-buffering outcome that a
/// plain store of RUNNING or a waker's plain "RUNNABLE: nothing to do"
/// would allow).
#[test]
fn loom_a_wake_racing_a_starting_g_is_not_lost() {
    model(|| {
        let g = Arc::new(ParkState::new());
        let cond = Arc::new(AtomicBool::new(false));
        let waker = {
            let (g, cond) = (g.clone(), cond.clone());
            thread::spawn(move || {
                cond.store(true, Ordering::Release);
                g.wake_token()
            })
        };
        g.set_state(RUNNING);
        let asleep = if cond.load(Ordering::Acquire) {
            false
        } else if g.take_token() {
            assert!(
                cond.load(Ordering::Acquire),
                "a token without its condition"
            );
            false
        } else if g.finish_park() {
            g.set_state(RUNNING);
            assert!(
                cond.load(Ordering::Acquire),
                "requeued without the condition"
            );
            false
        } else {
            true
        };
        let queued_by_waker = waker.join().unwrap();
        assert_eq!(asleep, queued_by_waker, "lost wake-up or queued twice");
    });
}
