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
        loop {
            if me.woken.load(Ordering::Acquire) {
                return true;
            }
            if deadline.is_some_and(|d| time::now() >= d) {
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
