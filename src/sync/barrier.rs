//! A barrier that parks green threads, with std's API.

use std::fmt;

use super::{Condvar, Mutex};

/// Like `std::sync::Barrier`: `n` callers of [`wait`](Barrier::wait) wait
/// for each other, then all go on; the barrier is then ready for the next
/// `n`. Waiting parks only the green thread (or blocks a plain OS thread,
/// which may mix with green ones).
///
/// ```
/// use std::sync::Arc;
///
/// greenrt::run(|| {
///     let barrier = Arc::new(greenrt::sync::Barrier::new(10));
///     let handles: Vec<_> = (0..10)
///         .map(|_| {
///             let b = barrier.clone();
///             greenrt::spawn(move || b.wait().is_leader())
///         })
///         .collect();
///     let leaders = handles.into_iter().map(|h| h.join().unwrap());
///     assert_eq!(leaders.filter(|&is_leader| is_leader).count(), 1);
/// });
/// ```
pub struct Barrier {
    lock: Mutex<Round>,
    cvar: Condvar,
    n: usize,
}

/// Who has arrived in the current round.
struct Round {
    count: usize,
    /// Bumped as each round completes: a waiter stays until it changes.
    generation: usize,
}

/// What [`Barrier::wait`] returns: whether the caller was the leader (one
/// caller per round, the last to arrive).
pub struct BarrierWaitResult(bool);

impl Barrier {
    /// A barrier for `n` callers per round. `n` of 0 or 1 never waits (every
    /// caller is a leader), as std's.
    pub const fn new(n: usize) -> Barrier {
        Barrier {
            lock: Mutex::new(Round {
                count: 0,
                generation: 0,
            }),
            cvar: Condvar::new(),
            n,
        }
    }

    /// Waits until `n` callers have called `wait` in this round. One of
    /// them (the last) is told it is the leader.
    pub fn wait(&self) -> BarrierWaitResult {
        // The lock guards only the counters: a panic cannot leave them
        // half-updated, so poisoning is ignored.
        let mut round = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = round.generation;
        round.count += 1;
        if round.count < self.n {
            let _round = self
                .cvar
                .wait_while(round, |r| r.generation == generation)
                .unwrap_or_else(|e| e.into_inner());
            BarrierWaitResult(false)
        } else {
            round.count = 0;
            round.generation = round.generation.wrapping_add(1);
            self.cvar.notify_all();
            BarrierWaitResult(true)
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

impl BarrierWaitResult {
    /// True for exactly one caller per round.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for BarrierWaitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWaitResult")
            .field("is_leader", &self.0)
            .finish()
    }
}
