//! A P's next-to-run slot (Go's `runnext`, tokio's LIFO slot): the G its
//! running G just woke, run next so that a pair handing work back and
//! forth stays on one worker, its data in that CPU's cache.
//!
//! Other Ms may steal from the slot, as Go's `runqgrab` does: a woken G
//! whose waker goes on computing instead of blocking would otherwise
//! wait for the waker's next block or preemption, a whole quantum (with
//! preemption off, for good), while a worker sits idle. A thief first
//! gives a running P's M a few microseconds to take the G itself: in a
//! ping-pong, the waker blocks right after the wake-up, and a thief that
//! took its partner would split the pair across workers. tokio's LIFO
//! slot cannot be stolen from.
//!
//! The slot holds one counted reference as a raw pointer; whoever swaps
//! it out owns that reference. The owner's swap is the price: one locked
//! instruction per wake-up and per pop of a G from the slot.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use super::g::{GRef, G};
use super::m::M;

/// How long a thief leaves a running P's next G to its own M (Go: 3 µs).
const GRACE: Duration = Duration::from_micros(3);

/// A P's next-to-run slot, in a cache line of its own (thieves read it).
#[repr(align(64))]
pub(crate) struct NextSlot(AtomicPtr<G>);

impl NextSlot {
    pub(crate) fn new() -> NextSlot {
        NextSlot(AtomicPtr::new(ptr::null_mut()))
    }

    /// Puts `g` in the slot; returns the G it displaced.
    #[inline]
    pub(crate) fn replace(&self, g: GRef) -> Option<GRef> {
        let old = self.0.swap(g.into_raw(), Ordering::AcqRel);
        // SAFETY: a non-null pointer in the slot is a reference the slot
        // owned, now ours (the swap took it out).
        (!old.is_null()).then(|| unsafe { GRef::from_raw(old) })
    }

    /// Takes the G in the slot, if any (the owner, or a thief).
    #[inline]
    pub(crate) fn take(&self) -> Option<GRef> {
        // A plain load first: an empty slot costs no locked instruction.
        if self.0.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let g = self.0.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `replace`.
        (!g.is_null()).then(|| unsafe { GRef::from_raw(g) })
    }

    /// Whether the slot is empty (a snapshot).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.load(Ordering::Acquire).is_null()
    }
}

impl Drop for NextSlot {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl M {
    /// Steals P `victim`'s next G (see the module docs); None if the slot
    /// is empty, or its own M took the G during the grace period.
    pub(super) fn steal_next(&self, victim: usize) -> Option<GRef> {
        let slot = &self.rt.nexts[victim];
        if slot.is_empty() {
            return None;
        }
        let running = self
            .rt
            .owner(victim)
            .is_some_and(|m| m.in_g.load(Ordering::Relaxed));
        if running {
            let start = Instant::now();
            while start.elapsed() < GRACE {
                if slot.is_empty() {
                    return None;
                }
                std::hint::spin_loop();
            }
        }
        slot.take()
    }
}
