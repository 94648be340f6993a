//! Regions where the running green thread must not be preempted.

use std::marker::PhantomData;
use std::sync::atomic::{compiler_fence, Ordering};

use crate::scheduler::{self, GRef};

/// Defers preemption of the current green thread while alive (returned by
/// [`disable`](super::disable)). Nestable; not `Send` (it belongs to the
/// green thread that made it). Outside green threads it does nothing.
///
/// Drop it on the green thread that made it. Not being `Send` does not
/// ensure that: a `thread_local!` belongs to the OS thread, and the next
/// green thread to run there can take a guard out of it. Dropping a guard
/// on another green thread aborts the process (it is a bug that would
/// otherwise leave one green thread unpreemptible for good and release
/// another too early). Dropping it off any green thread (say, with an OS
/// thread's thread-locals when it exits) just ends it.
///
/// The guard keeps its green thread's memory alive (until the guard is
/// dropped or, if it is leaked, for good), so it always releases the count
/// of the green thread that took it.
#[must_use = "preemption is enabled again when the guard is dropped"]
pub struct PreemptGuard {
    /// The green thread whose no-preempt count this guard holds (None off
    /// green threads). A counted reference, not a raw pointer: safe code
    /// can carry the guard past the end of its green thread, whose memory
    /// may then be reused for another one.
    g: Option<GRef>,
    _not_send: PhantomData<*const ()>,
}

impl PreemptGuard {
    pub(crate) fn new() -> PreemptGuard {
        let g = scheduler::current_g();
        if let Some(g) = &g {
            g.nopreempt.fetch_add(1, Ordering::Relaxed);
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
        let Some(g) = self.g.take() else {
            return;
        };
        let here = scheduler::current_g_ptr();
        if !here.is_null() && !std::ptr::eq(here, g.as_ptr()) {
            dropped_on_another_green_thread(&g);
        }
        compiler_fence(Ordering::SeqCst);
        g.nopreempt.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Releasing the count here would let the guard's own green thread stay
/// unpreemptible forever (if it still runs) while the green thread that
/// took the guard believes it is protected: a logic error that safe code
/// can commit, so it is reported at once rather than left to corrupt
/// scheduling.
#[cold]
#[inline(never)]
fn dropped_on_another_green_thread(g: &GRef) -> ! {
    let here =
        scheduler::with_current_g(|h| h.map(|h| format!("'{}' (id {})", h.display_name(), h.id)))
            .unwrap_or_default();
    eprintln!(
        "greenrt: a preempt::disable() guard made on green thread '{}' (id {}) was dropped on \
         another green thread, {here}; a guard must be dropped by the green thread that made \
         it (was it kept in a thread_local?). Aborting.",
        g.display_name(),
        g.id
    );
    std::process::abort();
}

impl std::fmt::Debug for PreemptGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreemptGuard").finish_non_exhaustive()
    }
}
