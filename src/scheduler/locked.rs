//! Thread affinity (Go's LockOSThread): a green thread that called
//! `lock_os_thread` runs only on its current M's OS thread, and no other
//! G runs there meanwhile.
//!
//! The count lives in the M (`M::locked`), not the G: a locked G never
//! leaves its M, so "the running G is locked" and "this M is locked" are
//! the same fact, and `blocks_green` reads it next to `curg`.
//!
//! A locked G never switches out, so it is never on a run queue and no
//! M (nor `switch_direct`) can run it elsewhere:
//!
//! - **blocking**: `blocks_green` is false, so every greenrt wait blocks
//!   the OS thread as an OS thread's would, inside a `BlockingSection`
//!   (the P goes to another M), with an OS-thread waker. Back from the
//!   wait, with no idle P to take, the G queues as a preempted G does
//!   and its M waits until an M hands it a P (`wait_for_p`);
//! - **yielding**: the G is queued as preempted and its P handed on, as
//!   if sysmon had preempted it (`yield_now`), or as a blocking call's;
//! - **preemption** keeps the OS thread anyway (see "The preemption
//!   path");
//! - **exit**: `g_entry` clears the count; the M runs others again.
//!
//! Shutdown's cancellation unparks every M's OS thread (`cancel_all`), so
//! a locked G waiting on a greenrt primitive sees its mark and unwinds.

use std::sync::atomic::Ordering;

use super::m::{current_m, M};

/// The calling G's M, if the caller is a green thread.
fn green_m() -> Option<&'static M> {
    current_m().filter(|m| !m.curg.get().is_null())
}

/// `task::lock_os_thread`: one more level of locking (no-op off a green
/// thread).
pub(crate) fn lock() {
    if let Some(m) = green_m() {
        m.locked.set(m.locked.get().saturating_add(1));
    }
}

/// `task::unlock_os_thread`: one level less (no-op when not locked).
pub(crate) fn unlock() {
    if let Some(m) = green_m() {
        m.locked.set(m.locked.get().saturating_sub(1));
    }
}

/// A locked G's M comes back from blocking its OS thread without a P (no
/// idle one to take): queue the G as a retaken preempted G would be and
/// wait on this M until an M hands it a P (or shutdown releases it, and
/// it runs on without one, detached). Call inside a no-preempt scope.
pub(super) fn wait_for_p(m: &M) {
    // SAFETY: on this M's thread.
    let Some(g) = (unsafe { m.current_g() }) else {
        return;
    };
    m.handle.retaken.store(true, Ordering::Release);
    if !super::preempt_path::park_preempted(m, g, false) {
        // Shutdown: run on without a P; nothing is pending a retake.
        m.handle.retaken.store(false, Ordering::Relaxed);
    }
}

/// `yield_now` of a locked G: its P runs others while the G waits on its
/// own M in the preempted queue. The P goes where a preempted G's would
/// (the next preempted G's M, a spare M); with neither (preemption off
/// keeps no spares) but Gs queued on it, to an idle or new M, as a
/// blocking call's does. Returns at once if nothing else is to run.
pub(super) fn yield_now() {
    let _np = crate::preempt::no_preempt();
    let Some(m) = green_m() else {
        return;
    };
    // SAFETY: on this M's thread.
    let Some(g) = (unsafe { m.current_g() }) else {
        return;
    };
    if !m.has_p() || super::preempt_path::park_preempted(m, g, false) {
        return;
    }
    if m.local_work() && !m.rt.is_shutdown() {
        let p = m.take_p().expect("checked: the M holds a P");
        m.rt.handoff_p(p);
        wait_for_p(m);
    }
}
