//! A FIFO queue of blocked callers: the one parking mechanism under every
//! greenrt sync type (it plays the role a futex plays for std).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::scheduler::park::{block, Waker};
use crate::time;

struct Waiter {
    waker: Waker,
    woken: AtomicBool,
}

/// Leaves the queue if dropped (only on unwind: the normal exits forget
/// it).
struct LeaveOnUnwind<'a> {
    queue: &'a WaitQueue,
    me: &'a Arc<Waiter>,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        self.queue.leave(self.me);
    }
}

#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue {
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// Blocks while `should_wait` — evaluated with the queue locked, so a
    /// concurrent wake cannot slip between the check and the enqueue —
    /// returns true, until woken or `deadline` (monotonic ns) passes.
    /// Returns false on timeout, true otherwise.
    pub(crate) fn wait_if(
        &self,
        should_wait: impl FnOnce() -> bool,
        deadline: Option<u64>,
    ) -> bool {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        let me = {
            let mut q = self.waiters.lock();
            if !should_wait() {
                return true;
            }
            let me = Arc::new(Waiter {
                waker: Waker::current(),
                woken: AtomicBool::new(false),
            });
            q.push_back(me.clone());
            me
        };
        // A cancelled green thread unwinds out of `block`: leave the queue,
        // or pass on a wake-up already taken (a Mutex's hand-over, say),
        // so the other waiters are not stranded.
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
                let mut q = self.waiters.lock();
                if me.woken.load(Ordering::Acquire) {
                    return true;
                }
                q.retain(|w| !Arc::ptr_eq(w, &me));
                return false;
            }
            block(deadline);
        }
    }

    /// Takes `me` out of the queue; if it was woken already, wakes the
    /// next waiter in its place.
    fn leave(&self, me: &Arc<Waiter>) {
        let woken = {
            let mut q = self.waiters.lock();
            q.retain(|w| !Arc::ptr_eq(w, me));
            me.woken.load(Ordering::Acquire)
        };
        if woken {
            self.wake_one();
        }
    }

    /// Wakes the longest waiter; returns whether there was one.
    pub(crate) fn wake_one(&self) -> bool {
        let _np = crate::preempt::no_preempt();
        let w = self.waiters.lock().pop_front();
        match w {
            Some(w) => {
                w.woken.store(true, Ordering::Release);
                w.waker.wake();
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter.
    pub(crate) fn wake_all(&self) {
        let _np = crate::preempt::no_preempt();
        let all = std::mem::take(&mut *self.waiters.lock());
        for w in all {
            w.woken.store(true, Ordering::Release);
            w.waker.wake();
        }
    }
}
