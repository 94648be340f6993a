//! The queue of preempted Gs.
//!
//! A preempted G keeps its M (see `preempt`), so it is queued here, not on
//! a run queue: whichever M picks it up hands its P to the waiting M. The
//! push side runs on the preemption path, which must not allocate or take
//! a lock the interrupted code could hold: it is an intrusive lock-free
//! stack. Consumers (ordinary scheduler code) move pushed Gs, oldest
//! first, into a FIFO under a lock, so preempted Gs take turns fairly.

use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::g::{GRef, G};

#[derive(Default)]
pub(crate) struct PreemptedQueue {
    incoming: AtomicPtr<G>,
    ready: Mutex<VecDeque<GRef>>,
    len: AtomicUsize,
}

impl PreemptedQueue {
    /// Queues the running G. Lock-free and allocation-free.
    ///
    /// # Safety
    /// `g` must be the caller's own running G, not queued here already.
    pub(crate) unsafe fn push(&self, g: GRef) {
        let raw = g.as_ptr() as *mut G;
        *(*raw).preempt_ref.get() = Some(g);
        let mut head = self.incoming.load(Ordering::Relaxed);
        loop {
            (*raw).preempt_next.store(head, Ordering::Relaxed);
            match self.incoming.compare_exchange_weak(
                head,
                raw,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.len.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// The longest-waiting preempted G.
    pub(crate) fn pop(&self) -> Option<GRef> {
        if self.is_empty() {
            return None;
        }
        let mut ready = self.ready.lock();
        if ready.is_empty() {
            let mut batch = Vec::new();
            let mut p = self.incoming.swap(ptr::null_mut(), Ordering::Acquire);
            while !p.is_null() {
                // SAFETY: pushed Gs stay alive through `preempt_ref`, and
                // the swap gave us exclusive ownership of this chain.
                let g = unsafe { &*p };
                p = g.preempt_next.load(Ordering::Relaxed);
                batch.push(unsafe { (*g.preempt_ref.get()).take() }.expect("queued G"));
            }
            ready.extend(batch.into_iter().rev());
        }
        let g = ready.pop_front()?;
        self.len.fetch_sub(1, Ordering::Release);
        Some(g)
    }

    /// Removes every queued G (shutdown).
    pub(crate) fn drain(&self) -> Vec<GRef> {
        let mut out = Vec::new();
        while let Some(g) = self.pop() {
            out.push(g);
        }
        out
    }
}
