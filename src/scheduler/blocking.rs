//! Blocking an OS thread from a green thread (Go's entersyscall /
//! exitsyscall): the worker's P is handed on while the thread blocks.

use super::m::{current, M};

/// While alive, the running G blocks its OS thread without a P: the P is
/// handed to another M so the worker's other green threads keep running
/// (Go's entersyscall/exitsyscall). On drop it takes an idle P back if
/// there is one; otherwise the G runs on without a P until its next
/// switch, where the scheduler queues it globally.
pub(crate) struct BlockingSection {
    m: *const M,
}

impl BlockingSection {
    /// Releases the current M's P, if the caller is a green thread.
    pub(crate) fn enter() -> BlockingSection {
        let _np = crate::preempt::no_preempt();
        let m = current();
        if !m.is_null() {
            // SAFETY: a non-null CURRENT is this thread's M.
            let m = unsafe { &*m };
            if let Some(p) = m.take_p() {
                m.rt.handoff_p(p);
            }
        }
        BlockingSection { m }
    }
}

impl Drop for BlockingSection {
    fn drop(&mut self) {
        let _np = crate::preempt::no_preempt();
        if self.m.is_null() {
            return;
        }
        // SAFETY: still on the same OS thread: blocking did not switch.
        let m = unsafe { &*self.m };
        if m.p.get().is_none() {
            if let Some(p) = m.rt.get_idle_p() {
                m.set_p(Some(p));
            }
        }
    }
}
