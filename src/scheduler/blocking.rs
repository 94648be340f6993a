//! Blocking an OS thread from a green thread (Go's entersyscall /
//! exitsyscall): the worker's P is handed on while the thread blocks.

use super::m::{current_m, M};

/// While alive, the running G blocks its OS thread without a P: the P is
/// handed to another M so the worker's other green threads keep running
/// (Go's entersyscall/exitsyscall). On drop it takes an idle P back if
/// there is one; otherwise the G runs on without a P until its next
/// switch, where the scheduler queues it globally — or, if it locked its
/// OS thread, waits on this thread until an M hands it a P.
pub(crate) struct BlockingSection {
    /// This thread's M (not `Send`: the section ends on the thread it
    /// began on, as blocking does not switch).
    m: Option<&'static M>,
}

impl BlockingSection {
    /// Releases the current M's P, if the caller is a green thread.
    pub(crate) fn enter() -> BlockingSection {
        let _np = crate::preempt::no_preempt();
        let m = current_m();
        if let Some(m) = m.filter(|m| m.has_p() && super::tracing::on(&m.rt)) {
            super::tracing::syscall(m);
        }
        if let Some(p) = m.and_then(|m| m.take_p()) {
            m.expect("an M").rt.handoff_p(p);
        }
        BlockingSection { m }
    }
}

impl Drop for BlockingSection {
    fn drop(&mut self) {
        let _np = crate::preempt::no_preempt();
        let Some(m) = self.m else {
            return;
        };
        if m.p.get().is_none() {
            if let Some(p) = m.rt.get_idle_p() {
                m.set_p(Some(p));
                let g = m.curg.get();
                // SAFETY: a non-null curg is the G running here (us).
                if let Some(g) = unsafe { g.as_ref() }.filter(|_| super::tracing::on(&m.rt)) {
                    super::tracing::resumed(m, g);
                }
            } else if m.locked.get() != 0 {
                // A locked G never runs without a P (it would never
                // switch out to find one): wait for one on this thread.
                super::locked::wait_for_p(m);
            }
        }
    }
}
