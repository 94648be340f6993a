//! A condition variable that parks green threads, with std's API.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use super::mutex::MutexGuard;
use super::waitq::WaitQueue;
use crate::time;

/// Like `std::sync::Condvar`; pairs with [`super::Mutex`].
#[derive(Default)]
pub struct Condvar {
    /// Bumped by every notify: a waiter that saw an older value when it
    /// released the mutex does not sleep, so no notify is lost.
    seq: AtomicU32,
    queue: WaitQueue,
}

/// Whether a timed wait ended by timing out (std's type has no public
/// constructor, so greenrt has its own with the same method).
#[derive(Debug, PartialEq, Eq, Copy, Clone)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because its timeout elapsed (not because of
    /// a notification or a spurious wake-up).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

type Relocked<'a, T> = LockResult<MutexGuard<'a, T>>;

impl Condvar {
    /// A new condition variable with no waiters.
    pub const fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            queue: WaitQueue::new(),
        }
    }

    /// Releases the guard's lock, waits for a notification (or a spurious
    /// wake-up), and re-acquires the lock.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> Relocked<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Waits while `condition` holds.
    pub fn wait_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> Relocked<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like `wait`, but gives up after `dur`.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (r, woken) = self.wait_until(guard, Some(time::deadline_after(dur)));
        let timed_out = WaitTimeoutResult(!woken);
        match r {
            Ok(g) => Ok((g, timed_out)),
            Err(e) => Err(PoisonError::new((e.into_inner(), timed_out))),
        }
    }

    /// Waits while `condition` holds, for at most `dur` in total.
    pub fn wait_timeout_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        dur: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = time::deadline_after(dur);
        while condition(&mut *guard) {
            if time::now() >= deadline {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            let (r, _) = self.wait_until(guard, Some(deadline));
            guard = r.map_err(|e| PoisonError::new((e.into_inner(), WaitTimeoutResult(false))))?;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<u64>,
    ) -> (Relocked<'a, T>, bool) {
        let mutex = guard.lock;
        let seq = self.seq.load(Ordering::Acquire);
        drop(guard);
        let woken = self
            .queue
            .wait_if(|| self.seq.load(Ordering::SeqCst) == seq, deadline);
        (mutex.lock(), woken)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        // SeqCst: the wait queue's no-waiter check relies on it (waitq.rs).
        self.seq.fetch_add(1, Ordering::SeqCst);
        self.queue.wake_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        self.queue.wake_all();
    }
}
