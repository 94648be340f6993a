//! A FIFO queue of blocked callers: the one parking mechanism under
//! greenrt's Mutex, Condvar and WaitGroup (it plays the role a futex plays
//! for std).
//!
//! A waiter lives on the waiting caller's own stack (green stacks never
//! move), as a Go sudog lives in its G: waiting allocates nothing and
//! touches no reference count. The queue lists pointers to waiters under
//! its lock; whoever wakes one unlists it, takes its waker and marks it
//! woken, all under the lock, and after that never touches it again.
//!
//! A count of listed-or-about-to-be-listed waiters lets `wake_one` and
//! `wake_all` return without the lock when nobody waits, the common case
//! (an uncontended Mutex unlock never gets here; a Condvar notify with no
//! waiter does). Its protocol: a waiter counts itself (SeqCst RMW) before
//! it evaluates its condition; a waker changes the condition with a SeqCst
//! operation before it reads the count (SeqCst). In the single total order
//! of SeqCst operations either the waker's read comes after the waiter's
//! count — it takes the lock and finds the waiter — or before, and then
//! the waiter's condition check comes after the change and sees it.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::scheduler::park::{block, BlockReason, Waker};
use crate::time;

/// One blocked caller, on its own stack. While listed, `waker` belongs to
/// whoever holds the queue's lock; `woken` is set (under the lock) by the
/// caller that unlisted it, after which only the waiter touches it.
struct Waiter {
    waker: UnsafeCell<Option<Waker>>,
    woken: AtomicBool,
}

/// A listed [`Waiter`].
struct WaiterPtr(NonNull<Waiter>);

// SAFETY: a listed waiter is reached only under the queue's lock, by one
// thread at a time; its Waker (a GRef or a Thread) is Send.
unsafe impl Send for WaiterPtr {}

impl WaiterPtr {
    /// Takes the waker and marks the waiter woken. Call under the queue's
    /// lock, on a waiter just unlisted; wake after unlocking.
    fn complete(self) -> Option<Waker> {
        // SAFETY: the waiter was listed until our caller unlisted it under
        // the lock it still holds, so it has not seen `woken` and its frame
        // is alive; its fields are ours until `woken` is set, untouched
        // after.
        // Fields through the raw pointer, so that no reference to the
        // whole waiter is live across the store that frees it.
        unsafe {
            let w = self.0.as_ptr();
            let waker = (*(*w).waker.get()).take();
            (*w).woken.store(true, Ordering::Release);
            waker
        }
    }
}

#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: Mutex<VecDeque<WaiterPtr>>,
    /// Waiters listed, or counted and about to check their condition (see
    /// the module's doc).
    waiting: AtomicUsize,
}

/// Unlists the waiter if its caller unwinds (a cancelled green thread).
struct LeaveOnUnwind<'a> {
    queue: &'a WaitQueue,
    me: &'a Waiter,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        // Woken already (a Mutex's hand-over, say): pass the wake-up on,
        // so the other waiters are not stranded.
        if self.queue.leave(self.me) {
            self.queue.wake_one();
        }
    }
}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue {
            waiters: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Blocks while `should_wait` — evaluated with the queue locked, so a
    /// concurrent wake cannot slip between the check and the enqueue —
    /// returns true, until woken or `deadline` (monotonic ns) passes.
    /// Returns false on timeout, true otherwise.
    ///
    /// The condition must be changed with a SeqCst operation before the
    /// matching `wake_one`/`wake_all`, and `should_wait` must read it with
    /// SeqCst (see the module's doc).
    pub(crate) fn wait_if(
        &self,
        should_wait: impl FnOnce() -> bool,
        deadline: Option<u64>,
    ) -> bool {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        let me = Waiter {
            waker: UnsafeCell::new(None),
            woken: AtomicBool::new(false),
        };
        {
            let mut q = self.waiters.lock();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if !should_wait() {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return true;
            }
            // SAFETY: not listed yet: the cell is ours.
            unsafe { *me.waker.get() = Some(Waker::current()) };
            q.push_back(WaiterPtr(NonNull::from(&me)));
        }
        let leave = LeaveOnUnwind {
            queue: self,
            me: &me,
        };
        loop {
            if me.woken.load(Ordering::Acquire) {
                std::mem::forget(leave);
                return true;
            }
            if deadline.is_some_and(|d| time::now() >= d) {
                std::mem::forget(leave);
                return self.leave(&me);
            }
            block(deadline, BlockReason::Lock);
        }
    }

    /// Unlists `me` unless it was woken; returns whether it was.
    fn leave(&self, me: &Waiter) -> bool {
        let mut q = self.waiters.lock();
        if me.woken.load(Ordering::Acquire) {
            return true;
        }
        let me = me as *const Waiter;
        q.retain(|w| w.0.as_ptr().cast_const() != me);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Wakes the longest waiter; returns whether there was one.
    pub(crate) fn wake_one(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let _np = crate::preempt::no_preempt();
        let mut q = self.waiters.lock();
        // Under the lock the count equals the number listed (a waiter
        // counts, checks and lists itself under it), so this finds one
        // whenever the count did; the else is for a count read before the
        // last waiter left.
        let Some(w) = q.pop_front() else {
            return false;
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let waker = w.complete();
        drop(q);
        if let Some(waker) = waker {
            waker.wake_by_value();
        }
        true
    }

    /// Wakes every waiter.
    pub(crate) fn wake_all(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _np = crate::preempt::no_preempt();
        let mut q = self.waiters.lock();
        let n = q.len();
        let wakers: Vec<Waker> = q.drain(..).filter_map(WaiterPtr::complete).collect();
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        drop(q);
        for w in wakers {
            w.wake_by_value();
        }
    }
}
