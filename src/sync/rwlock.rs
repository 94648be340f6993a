//! A reader-writer lock that parks green threads, with std's API and
//! poisoning.
//!
//! Writer preference: once a writer waits, new readers wait behind it, so
//! a stream of readers cannot starve writers (readers already inside
//! finish; the last one out wakes the writer). A writer unlocking wakes
//! the next waiting writer if there is one, else every waiting reader; a
//! steady stream of writers can therefore hold readers off, and a thread
//! that takes a read lock it already holds may deadlock once a writer
//! waits between the two (std's docs warn of the same).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waitq::WaitQueue;

/// `state`: a writer holds the lock. The low bits count readers.
const WRITE_LOCKED: u32 = 1 << 31;
/// Most readers at once (the rest of the bits).
const MAX_READERS: u32 = WRITE_LOCKED - 1;

/// Like `std::sync::RwLock`, but contention parks only the green thread.
pub struct RwLock<T: ?Sized> {
    /// WRITE_LOCKED, or the number of readers inside.
    state: AtomicU32,
    /// Writers waiting (or about to): new readers hold back while non-zero.
    writers_waiting: AtomicU32,
    poisoned: AtomicBool,
    readers: WaitQueue,
    writers: WaitQueue,
    data: UnsafeCell<T>,
}

// SAFETY: moving the lock moves the `T` inside (T: Send); the other fields
// are atomics and wait queues, not tied to any thread.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: readers share `&T` across threads (T: Sync) and a writer gets
// `&mut T` on whichever thread holds the write lock (T: Send); the state
// word (Acquire on lock, Release on unlock) keeps a writer exclusive. The
// same bounds as std's RwLock.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to a [`RwLock`]'s data; releases the read lock on drop.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    /// Not Send, like std's guards.
    _not_send: PhantomData<*const ()>,
}

/// Exclusive access to a [`RwLock`]'s data; releases the write lock on
/// drop (poisoning the lock if the holder is panicking).
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared `&RwLockReadGuard` only gives `&T`, which T: Sync
// allows to share.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a shared `&RwLockWriteGuard` only derefs to `&T` (DerefMut
// needs `&mut`), so sharing it shares `&T`, which T: Sync allows.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

/// Counts a waiting writer for as long as it lives; the last writer to
/// stop waiting without the lock (a cancelled green thread unwinding)
/// lets the readers it held back in.
struct WaitingWriter<'a, T: ?Sized>(&'a RwLock<T>);

impl<T: ?Sized> Drop for WaitingWriter<'_, T> {
    fn drop(&mut self) {
        // SeqCst: the wait queue's no-waiter check relies on it (waitq.rs).
        if self.0.writers_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.readers.wake_all();
        }
    }
}

impl<T> RwLock<T> {
    /// A new, unlocked and unpoisoned lock holding `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicU32::new(0),
            writers_waiting: AtomicU32::new(0),
            poisoned: AtomicBool::new(false),
            readers: WaitQueue::new(),
            writers: WaitQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock, returning the data.
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

impl<T: ?Sized> RwLock<T> {
    /// Takes a shared read lock, parking the caller while a writer holds
    /// the lock or waits for it. Errors (with the guard inside) if a
    /// writer panicked while holding it.
    ///
    /// # Panics
    /// If 2³¹ − 1 read locks are held at once.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        while !self.try_read_lock() {
            self.readers.wait_if(|| !self.read_lockable(), None);
        }
        self.read_guard()
    }

    /// Takes a read lock if that needs no waiting (no writer holds or
    /// waits for the lock).
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        if self.try_read_lock() {
            self.read_guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Takes the exclusive write lock, parking the caller while anyone
    /// else holds it. Errors (with the guard inside) if a writer panicked
    /// while holding it.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        if !self.try_write_lock() {
            self.writers_waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = WaitingWriter(self);
            while !self.try_write_lock() {
                self.writers
                    .wait_if(|| self.state.load(Ordering::SeqCst) != 0, None);
            }
            // We hold the lock, so readers stay out: no wake-up needed (our
            // unlock wakes them).
            std::mem::forget(waiting);
            self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.write_guard()
    }

    /// Takes the write lock if it is free.
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        if self.try_write_lock() {
            self.write_guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// True if a writer panicked while holding the lock.
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

    /// Whether a reader may enter now: no writer holds the lock or waits.
    /// SeqCst: the wait queue's protocol (waitq.rs).
    fn read_lockable(&self) -> bool {
        self.state.load(Ordering::SeqCst) & WRITE_LOCKED == 0
            && self.writers_waiting.load(Ordering::SeqCst) == 0
    }

    fn try_read_lock(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WRITE_LOCKED != 0 || self.writers_waiting.load(Ordering::SeqCst) != 0 {
                return false;
            }
            assert!(s < MAX_READERS, "greenrt::sync::RwLock: too many readers");
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    fn try_write_lock(&self) -> bool {
        self.state
            .compare_exchange(0, WRITE_LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let guard = RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        };
        if self.is_poisoned() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let guard = RwLockWriteGuard {
            lock: self,
            panicking: std::thread::panicking(),
            _not_send: PhantomData,
        };
        if self.is_poisoned() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    fn read_unlock(&self) {
        // SeqCst (Release for the data): the wait queue's protocol.
        if self.state.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last reader out: a writer may be waiting.
            self.writers.wake_one();
        }
    }

    fn write_unlock(&self) {
        self.state.swap(0, Ordering::SeqCst);
        // A waiting writer goes first (writer preference); it wakes the
        // readers when it is done, or if it gives up (`WaitingWriter`).
        if self.writers_waiting.load(Ordering::SeqCst) == 0 || !self.writers.wake_one() {
            self.readers.wake_all();
        }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(v: T) -> Self {
        RwLock::new(v)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(g) => d.field("data", &&*g),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&*e.into_inner()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a read guard lives the state counts it, so no
        // writer holds the lock and no `&mut T` exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard exists only while this thread holds the
        // lock exclusively; the `&T` borrows the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this thread holds the lock exclusively, and `&mut self`
        // means no other reference derived from the guard is live.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // As Mutex: a runtime cancellation is not a failed update.
        if !self.panicking && std::thread::panicking() && !crate::task::is_cancelled() {
            self.lock.poisoned.store(true, Ordering::Relaxed);
        }
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
