//! Spare Ms: threads parked ahead of need in lock-free slots, so that the
//! preemption path can hand a P to an M without starting a thread (which
//! allocates; see docs/DESIGN.md, "The critical path"). The errand thread
//! (`chores`) refills the slots; the handler and `park_preempted` claim
//! from them.

use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::sys::sync::{AtomicPtr, AtomicUsize};

use super::handoff::MHandle;
use super::shared::Shared;

/// The spare slots proper: lock-free slots holding parked Ms (any `T`:
/// the loom tests drive this code with their own), and the count of new
/// spare Ms whose threads have not yet taken a slot.
pub(crate) struct SpareSlots<T> {
    slots: Box<[AtomicPtr<T>]>,
    /// A new thread runs std's start-up first, which allocates:
    /// published before that, a spare could be handed a P while it waits
    /// for an allocator lock held by the very green thread that P is
    /// for. So a new spare publishes itself (`ready`) once it is ready to
    /// wait, and counts here until then.
    starting: AtomicUsize,
}

impl<T> SpareSlots<T> {
    pub(crate) fn new(n: usize) -> SpareSlots<T> {
        SpareSlots {
            slots: (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            starting: AtomicUsize::new(0),
        }
    }

    /// Takes a spare, lock-free: each published one goes to one claimer.
    pub(crate) fn claim(&self) -> Option<NonNull<T>> {
        self.slots
            .iter()
            .find_map(|slot| NonNull::new(slot.swap(ptr::null_mut(), Ordering::AcqRel)))
    }

    /// Some slot holds a spare now.
    pub(crate) fn any(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| !slot.load(Ordering::Acquire).is_null())
    }

    /// Spares parked in the slots now.
    pub(crate) fn parked(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| !slot.load(Ordering::Relaxed).is_null())
            .count()
    }

    /// Empty slots that no starting spare will fill.
    pub(crate) fn wanted(&self) -> usize {
        let empty = self
            .slots
            .iter()
            .filter(|slot| slot.load(Ordering::Acquire).is_null())
            .count();
        empty.saturating_sub(self.starting.load(Ordering::Acquire))
    }

    /// Puts `m` (waiting for a P) in an empty slot. False if all are full.
    pub(crate) fn publish(&self, m: &T) -> bool {
        let raw = m as *const T as *mut T;
        self.slots.iter().any(|slot| {
            slot.compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// A new spare's thread is being started (it will call `ready`, or
    /// the start failed and the caller calls `start_failed`).
    pub(crate) fn starting(&self) {
        self.starting.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn start_failed(&self) {
        self.starting.fetch_sub(1, Ordering::AcqRel);
    }

    /// The new spare `m` is ready to wait for a P: takes its slot. False
    /// if there was none.
    pub(crate) fn ready(&self, m: &T) -> bool {
        let published = self.publish(m);
        self.starting.fetch_sub(1, Ordering::AcqRel);
        published
    }
}

impl Shared {
    /// Takes a spare M, lock-free (the preemption path and the handler
    /// use this), and asks the errand thread to refill its slot at once:
    /// while unstarted green threads queue behind preempted ones, every
    /// preemption takes a spare, and one not back by the next quantum's
    /// end is a preemption refused (the G runs on: an unequal turn).
    /// Asking is lock-free and allocation-free (see `Chores::request`).
    pub(crate) fn claim_spare(&self) -> Option<&MHandle> {
        let m = self.spares.claim()?;
        self.chores.request(super::chores::SPARES);
        // SAFETY: a slot holds null or an MHandle listed in `allm`,
        // which keeps every handle alive until the runtime drops.
        Some(unsafe { m.as_ref() })
    }

    /// A spare M can be claimed now (lock-free: sysmon asks).
    pub(crate) fn has_spare(&self) -> bool {
        self.spares.any()
    }

    /// Some spare slot needs an M (lock-free: sysmon asks).
    pub(crate) fn spares_missing(&self) -> bool {
        !self.is_shutdown() && self.spares.wanted() > 0
    }

    /// Keeps a spare M for every empty spare slot: an idle M if there is
    /// one, else a new thread (which publishes itself when ready, see
    /// `SpareSlots::starting`). Ordinary context only (locks, allocates);
    /// only the errand thread calls it, so slots fill from one place.
    pub(crate) fn ensure_spares(self: &Arc<Self>) {
        for _ in 0..self.spares.wanted() {
            if self.is_shutdown() {
                return;
            }
            // Any idle M but the timer watcher, which must keep watching.
            let idle = {
                let mut s = self.sched.lock();
                let watcher = s.watcher.clone();
                let i = s
                    .midle
                    .iter()
                    .position(|m| !watcher.as_ref().is_some_and(|w| Arc::ptr_eq(w, m)));
                i.map(|i| s.midle.swap_remove(i))
            };
            match idle {
                Some(m) => {
                    if !self.spares.publish(&m) {
                        // A new spare took the slot after `wanted` saw
                        // it empty (`wanted` reads the slots before
                        // `starting`): keep the M reachable.
                        self.sched_with_idle_room().midle.push(m);
                        return;
                    }
                }
                None => {
                    self.spares.starting();
                    if self.spawn_m(None, false).is_err() {
                        self.spares.start_failed();
                        return;
                    }
                }
            }
        }
    }

    /// Called by a new spare M's thread once it is ready to wait for a P:
    /// takes its slot. False if there was none (the thread then exits).
    pub(crate) fn spare_ready(&self, m: &MHandle) -> bool {
        self.spares.ready(m)
    }
}
