//! Regions where the running green thread must not be preempted.

use std::marker::PhantomData;
use std::sync::atomic::{compiler_fence, Ordering};

use crate::scheduler::{self, G};

/// Defers preemption of the current green thread while alive (returned by
/// [`disable`](super::disable)). Nestable; not `Send` (it belongs to the
/// green thread that made it). Outside green threads it does nothing.
#[must_use = "preemption is enabled again when the guard is dropped"]
pub struct PreemptGuard {
    g: *const G,
    _not_send: PhantomData<*const ()>,
}

impl PreemptGuard {
    pub(crate) fn new() -> PreemptGuard {
        let g = scheduler::current_g_ptr();
        if !g.is_null() {
            // SAFETY: the running G is alive while it runs, and this guard
            // is dropped by the same G (it is not Send).
            unsafe { (*g).nopreempt.fetch_add(1, Ordering::Relaxed) };
            // The handler runs on this thread: keep the increment before
            // the guarded code, as the compiler sees it.
            compiler_fence(Ordering::SeqCst);
        }
        PreemptGuard {
            g,
            _not_send: PhantomData,
        }
    }
}

impl Drop for PreemptGuard {
    fn drop(&mut self) {
        if !self.g.is_null() {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: as in `new`; a G holding guards is still alive.
            unsafe { (*self.g).nopreempt.fetch_sub(1, Ordering::Relaxed) };
        }
    }
}

impl std::fmt::Debug for PreemptGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreemptGuard").finish_non_exhaustive()
    }
}
