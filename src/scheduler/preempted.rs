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
            // Room for as many again, so `try_pop` can take in the next
            // pushes without allocating.
            let len = ready.len();
            ready.reserve(len);
        }
        let g = ready.pop_front()?;
        self.len.fetch_sub(1, Ordering::Release);
        Some(g)
    }

    /// The longest-waiting preempted G, for the preemption path itself:
    /// never blocks (None if another M holds the queue) and never
    /// allocates (None if the FIFO would have to grow to take in the
    /// newly pushed Gs; the ordinary `pop` grows it).
    pub(crate) fn try_pop(&self) -> Option<GRef> {
        if self.is_empty() {
            return None;
        }
        let mut ready = self.ready.try_lock()?;
        if ready.is_empty() {
            // Holding the lock makes us the only consumer: pushers only
            // prepend, so the chain under `head` is stable while we count
            // it, and the exchange fails if a push came in meanwhile.
            let head = self.incoming.load(Ordering::Acquire);
            let mut n = 0;
            let mut p = head;
            while !p.is_null() {
                n += 1;
                // SAFETY: pushed Gs stay alive through `preempt_ref`; the
                // chain is not consumed while we hold `ready`.
                p = unsafe { &*p }.preempt_next.load(Ordering::Relaxed);
            }
            if n == 0 || ready.capacity() < n {
                return None;
            }
            self.incoming
                .compare_exchange(head, ptr::null_mut(), Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
            // The chain is newest first: pushing each to the front leaves
            // the oldest at the front. Capacity suffices: no allocation.
            let mut p = head;
            while !p.is_null() {
                // SAFETY: as above, and the exchange made the chain ours.
                let g = unsafe { &*p };
                p = g.preempt_next.load(Ordering::Relaxed);
                ready.push_front(unsafe { (*g.preempt_ref.get()).take() }.expect("queued G"));
            }
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
