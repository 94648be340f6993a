//! `FutexLock`: the lock for runtime state that the preemption path takes.

use std::sync::{PoisonError, TryLockError};

use super::sync::{Mutex, MutexGuard};

/// What `FutexLock::lock` returns.
pub(crate) type FutexGuard<'a, T> = MutexGuard<'a, T>;

/// A mutex the critical path may take (docs/DESIGN.md, "The critical
/// path"): std's Linux futex mutex, one word of its own, which never
/// allocates. Not parking_lot's: its contended path lazily creates
/// per-thread data and a process-wide hash table (allocating, inside a
/// critical path) and locks that table's buckets, which every parking_lot
/// lock in the process shares, user code's included — and a green thread
/// can be preempted inside parking_lot's code holding one.
///
/// Runtime code never panics while holding it, so poisoning is ignored.
///
/// Under loom, loom's mutex (see `sys::sync`); its `new` is not `const`.
pub(crate) struct FutexLock<T>(Mutex<T>);

impl<T> FutexLock<T> {
    #[cfg(not(all(test, loom)))]
    pub(crate) const fn new(v: T) -> FutexLock<T> {
        FutexLock(Mutex::new(v))
    }

    #[cfg(all(test, loom))]
    pub(crate) fn new(v: T) -> FutexLock<T> {
        FutexLock(Mutex::new(v))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free now (for the signal handler, which may have
    /// interrupted its holder on this very thread).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}
