//! A mutual-exclusion lock that parks green threads, with std's API and
//! poisoning.

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waitq::WaitQueue;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and someone may be waiting: unlock must wake.
const CONTENDED: u32 = 2;
/// Spins before parking: a lock is usually held briefly.
const SPIN_LIMIT: u32 = 100;

/// Like `std::sync::Mutex`, but contention parks only the green thread.
pub struct Mutex<T: ?Sized> {
    state: AtomicU32,
    poisoned: AtomicBool,
    queue: WaitQueue,
    data: UnsafeCell<T>,
}

// SAFETY: moving the Mutex moves the `T` inside, which T: Send allows; the
// other fields are atomics and a wait queue, not tied to any thread.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: through `&Mutex` the data is reached only via a guard, and the
// state word (Acquire on lock, Release on unlock) lets one guard exist at
// a time, so threads take turns with `&mut T`: T: Send suffices, as for
// std's Mutex.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Proof of holding a [`Mutex`]; unlocks on drop.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    pub(super) lock: &'a Mutex<T>,
    panicking: bool,
    /// Not Send: like std's guard (the lock belongs to whoever locked it).
    _not_send: std::marker::PhantomData<*const ()>,
}

// SAFETY: a shared `&MutexGuard` only derefs to `&T` (DerefMut needs
// `&mut`), so sharing the guard shares `&T`, which T: Sync allows.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new, unlocked and unpoisoned mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(UNLOCKED),
            poisoned: AtomicBool::new(false),
            queue: WaitQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poisoned.load(Ordering::Relaxed);
        let data = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, parking the caller while another holds it.
    /// Errors (with the guard inside) if a holder panicked.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.guard()
    }

    fn lock_contended(&self) {
        for _ in 0..SPIN_LIMIT {
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            std::hint::spin_loop();
        }
        // Mark contended; whoever unlocks will wake one waiter, who marks
        // it contended again (others may still wait).
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            self.queue
                .wait_if(|| self.state.load(Ordering::SeqCst) == CONTENDED, None);
        }
    }

    /// Acquires the lock if it is free, without blocking.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let guard = MutexGuard {
            lock: self,
            panicking: std::thread::panicking(),
            _not_send: std::marker::PhantomData,
        };
        if self.poisoned.load(Ordering::Relaxed) {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    pub(super) fn unlock(&self) {
        // SeqCst: the wait queue's no-waiter check relies on it (waitq.rs).
        if self.state.swap(UNLOCKED, Ordering::SeqCst) == CONTENDED {
            self.queue.wake_one();
        }
    }

    /// True if a holder panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Clears the poisoned state.
    pub fn clear_poison(&self) {
        self.poisoned.store(false, Ordering::Relaxed);
    }

    /// Mutable access without locking (the borrow proves exclusivity).
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.is_poisoned();
        let data = self.data.get_mut();
        if poisoned {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(v: T) -> Self {
        Mutex::new(v)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(g) => d.field("data", &&*g),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&*e.into_inner()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock,
        // so no `&mut T` exists elsewhere; the `&T` borrows the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock,
        // and `&mut self` means no other reference derived from this guard
        // is live: the `&mut T` is unique for its borrow of the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unwinding because the runtime cancelled us is not a failure of
        // the critical section: no poison (as tokio drops futures).
        if !self.panicking && std::thread::panicking() && !crate::task::is_cancelled() {
            self.lock.poisoned.store(true, Ordering::Relaxed);
        }
        self.lock.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
