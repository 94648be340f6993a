//! The runtime's own no-preemption sections.
//!
//! Runtime code that touches its P or a runtime lock must not be
//! preempted (a preempted green thread would keep holding them). It
//! raises the running G's no-preempt count for a lexical scope with a
//! [`NoPreemptScope`], which never leaves the function that made it: unlike the
//! public [`PreemptGuard`](super::PreemptGuard) it needs no reference
//! count, so the hot paths stay free of extra atomic read-modify-writes,
//! and it changes the count with a plain load and store (see `new`).

use std::sync::atomic::{compiler_fence, Ordering};

use crate::scheduler::{self, G};

/// Holds off preemption of the running green thread while alive. Made and
/// dropped by the same runtime function on the same green thread; never
/// stored or returned to user code.
pub(crate) struct NoPreemptScope {
    g: *const G,
}

impl NoPreemptScope {
    #[inline(always)]
    pub(crate) fn new() -> NoPreemptScope {
        NoPreemptScope::for_g(scheduler::current_g_ptr())
    }

    /// As `new`, for a caller that has looked up the running G already
    /// (`g`: the G running this code, or null off a green thread).
    #[inline(always)]
    pub(crate) fn for_g(g: *const G) -> NoPreemptScope {
        if !g.is_null() {
            // SAFETY: a non-null current_g_ptr is the G running this code,
            // which stays alive while it runs; `nopreempt` is an atomic, so
            // the shared access is race-free. (The scope is dropped by the
            // same G before the function that made it returns.)
            let count = unsafe { &(*g).nopreempt };
            // A load and a store, not a locked read-modify-write (Go's
            // `m.locks++`): the count is written only by its own G, on the
            // thread it runs on, and by that thread's SIGURG handler, whose
            // change (taken when it redirects the G, given back before the
            // G resumes) is balanced by the time this store runs.
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            // The handler runs on this thread: keep the increment before
            // the guarded code, as the compiler sees it.
            compiler_fence(Ordering::SeqCst);
        }
        NoPreemptScope { g }
    }
}

impl Drop for NoPreemptScope {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.g.is_null() {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: `self.g` is the G that made this scope, non-null and
            // alive: a scope is dropped by the same runtime function (on
            // the same G, possibly another OS thread) that made it, and a G
            // is not freed while it is still running. `nopreempt` is an
            // atomic, so the shared access is race-free.
            let count = unsafe { &(*self.g).nopreempt };
            // As in `new`: only this G (and its thread's handler, balanced)
            // writes the count.
            count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        }
    }
}
