//! Spare Ms: threads parked ahead of need in lock-free slots, so that the
//! preemption path can hand a P to an M without starting a thread (which
//! allocates; see docs/DESIGN.md, "The critical path"). The errand thread
//! (`chores`) refills the slots; the handler and `park_preempted` claim
//! from them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::handoff::MHandle;
use super::shared::Shared;

impl Shared {
    /// Takes a spare M, lock-free (the preemption path uses this).
    pub(crate) fn claim_spare(&self) -> Option<&MHandle> {
        self.spares.iter().find_map(|slot| {
            let m = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: a slot holds null or an MHandle listed in `allm`,
            // which keeps every handle alive until the runtime drops.
            unsafe { m.as_ref() }
        })
    }

    /// Empty spare slots that no starting spare M will fill.
    fn spares_wanted(&self) -> usize {
        let empty = self
            .spares
            .iter()
            .filter(|slot| slot.load(Ordering::Acquire).is_null())
            .count();
        empty.saturating_sub(self.spares_starting.load(Ordering::Acquire))
    }

    /// Some spare slot needs an M (lock-free: sysmon asks).
    pub(crate) fn spares_missing(&self) -> bool {
        !self.is_shutdown() && self.spares_wanted() > 0
    }

    /// Keeps a spare M for every empty spare slot: an idle M if there is
    /// one, else a new thread (which publishes itself when ready, see
    /// `spares_starting`). Ordinary context only (locks, allocates); only
    /// the errand thread calls it, so slots fill from one place.
    pub(crate) fn ensure_spares(self: &Arc<Self>) {
        for _ in 0..self.spares_wanted() {
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
                    if !self.publish_spare(&m) {
                        // Cannot happen (only this thread fills slots);
                        // keep the M reachable all the same.
                        self.sched_with_idle_room().midle.push(m);
                        return;
                    }
                }
                None => {
                    self.spares_starting.fetch_add(1, Ordering::AcqRel);
                    if self.spawn_m(None, false).is_err() {
                        self.spares_starting.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
            }
        }
    }

    /// Puts `m` (waiting for a P) in an empty spare slot. False if all
    /// are full.
    fn publish_spare(&self, m: &MHandle) -> bool {
        let raw = m as *const MHandle as *mut MHandle;
        self.spares.iter().any(|slot| {
            slot.compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        })
    }

    /// Called by a new spare M's thread once it is ready to wait for a P:
    /// takes its slot. False if there was none (the thread then exits).
    pub(crate) fn spare_ready(&self, m: &MHandle) -> bool {
        let published = self.publish_spare(m);
        self.spares_starting.fetch_sub(1, Ordering::AcqRel);
        published
    }
}
