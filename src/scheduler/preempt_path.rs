//! The scheduler side of asynchronous preemption: the signal handler's
//! view of the M it interrupted (`SignalTarget`), and the path the
//! trampoline calls to park the preempted G (`preempt_park`). Everything
//! here runs in a signal handler or on the critical path (see
//! docs/DESIGN.md, "The critical path"): no allocation, no lock user
//! code can hold.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use super::g::{GRef, G};
use super::handoff::{MHandle, Wake};
use super::m::{current_m, M};

/// The handler's view of the M it interrupted (see `preempt::signal`).
/// Every method is async-signal-safe: atomics, Cells of this thread's M,
/// and a futex wake.
pub(crate) struct SignalTarget {
    m: &'static M,
}

/// This thread's M, if it is one (async-signal-safe).
pub(crate) fn signal_target() -> Option<SignalTarget> {
    current_m().map(|m| SignalTarget { m })
}

impl SignalTarget {
    /// Consumes sysmon's request: its level, or 0 if there is none or it
    /// is stale (the P has run another G since sysmon asked).
    pub(crate) fn take_request(&self) -> u8 {
        let h = &self.m.handle;
        let level = h.preempt_req.swap(0, Ordering::AcqRel);
        h.signal_pending.store(false, Ordering::Release);
        let Some(p) = self.m.p.get() else {
            // A retaken M's G is stopped whenever it can be.
            return if h.retaken.load(Ordering::Relaxed) {
                level
            } else {
                0
            };
        };
        // SAFETY: only the id is read; the P is this M's.
        let id = unsafe { p.get() }.id;
        let current = self.m.rt.ticks[id].load(Ordering::Relaxed);
        if current != h.preempt_tick.load(Ordering::Acquire) {
            return 0;
        }
        level
    }

    /// The running G, if it may be interrupted now: a G runs (not the
    /// scheduler), its no-preempt count is zero, and the M holds a P.
    fn interruptible_g(&self) -> Option<&G> {
        let g = self.m.curg.get();
        // SAFETY: the running G is alive while it runs.
        let g = unsafe { g.as_ref() }?;
        let owns_or_lost_p = self.m.has_p() || self.m.handle.retaken.load(Ordering::Relaxed);
        (g.nopreempt.load(Ordering::Relaxed) == 0 && owns_or_lost_p).then_some(g)
    }

    /// If the G may be preempted with its stack pointer at `rsp` (which
    /// must lie on the G's own stack, not the scheduler's), returns the
    /// lowest usable address (the guard page's end).
    pub(crate) fn preemptible_stack(&self, rsp: usize) -> Option<usize> {
        let g = self.interruptible_g()?;
        let (_, floor) = g.guard();
        (rsp > floor && rsp <= g.top() as usize).then_some(floor)
    }

    /// The handler is about to redirect the G to the trampoline: from now
    /// until `preempt_park` returns, the G must not be preempted again.
    pub(crate) fn enter_preemption(&self) {
        let g = self.m.curg.get();
        // SAFETY: checked by `preemptible_stack`: a G runs.
        unsafe { (*g).nopreempt.fetch_add(1, Ordering::Relaxed) };
    }

    /// Blocking hand-off: the M is stuck where it may not be preempted;
    /// give its P to a spare M. The G runs on without a P until it next
    /// enters the scheduler. Returns whether the P was handed off.
    pub(crate) fn retake_p(&self) -> bool {
        if self.interruptible_g().is_none() || !self.m.has_p() {
            return false;
        }
        let rt = &self.m.rt;
        // A spare M runs the P's queue. With none left (the errand thread
        // that makes them may itself wait behind a preempted green thread,
        // in the allocator say), the P goes to the longest-preempted G's
        // M: that G may hold what the stuck one waits for.
        if let Some(spare) = rt.claim_spare() {
            let p = self.m.take_p().expect("checked: the M holds a P");
            mark_retaken(p);
            self.m.handle.retaken.store(true, Ordering::Release);
            spare.give(p, false);
            rt.metrics.count_retake();
            return true;
        }
        let Some(next) = rt.preempted.try_pop() else {
            return false;
        };
        let p = self.m.take_p().expect("checked: the M holds a P");
        mark_retaken(p);
        self.m.handle.retaken.store(true, Ordering::Release);
        rt.hand_to_preempted(next, p);
        rt.metrics.count_retake();
        true
    }
}

/// Marks a P just taken from its blocked M, for the trace (see
/// `P::retaken`): a plain store, fine in the handler (the P is ours until
/// we hand it on, which publishes the store).
fn mark_retaken(p: super::p::PPtr) {
    // SAFETY: taken from this M a moment ago and not handed on yet: we
    // own it.
    unsafe { p.get() }.retaken.set(true);
}

/// The preemption path proper, on the preempted G's stack (called by the
/// trampoline with every register saved). The G keeps this OS thread: its
/// P goes to a spare M, the G is queued as preempted, and this M waits
/// until some M hands it a P for the G's next turn. Allocation-free and
/// lock-free. Returns false if it could not preempt (no spare M yet).
pub(crate) fn preempt_park() -> bool {
    let _critical = crate::preempt::Critical::enter();
    // The handler only redirects threads with an M to the trampoline.
    let m = current_m().expect("greenrt: preempted off an M");
    // SAFETY: on this M's thread; `cur` is the G we are running on.
    let g = unsafe { m.current_g() }.expect("greenrt: preempted off a green thread");
    let parked = park_preempted(m, g.clone(), true);
    // The handler took a no-preempt count for us when it redirected the
    // G here (so no second signal could nest inside this path).
    g.nopreempt.fetch_sub(1, Ordering::Relaxed);
    parked
}

/// Queues `g` (this M's running G) as preempted and waits, on this M,
/// until some M hands it a P. `preemption`: count it in the metrics (not
/// for a locked G's yield or wait for a P, see `scheduler::locked`).
pub(super) fn park_preempted(m: &M, g: GRef, preemption: bool) -> bool {
    // A retaken G (back from its blocking call, computing without a P)
    // queues for a P like any preempted G; it has no P to hand on.
    let retaken = !m.has_p() && m.handle.retaken.load(Ordering::Acquire);
    if !m.has_p() && !retaken {
        return false;
    }
    // The P goes straight to the M of the next preempted G when that is
    // what the scheduler would run next anyway: one thread wake-up per
    // preemption instead of two (spare M, then that G's M).
    // Not a P over the active limit either (see `cpu_limit`): it goes to
    // a spare M, whose scheduler parks it (moving its queue allocates,
    // which this path may not).
    let over_limit =
        m.p.get()
            // SAFETY: the M owns its current P (only the id is read).
            .is_some_and(|p| m.rt.cpu_limit.excludes(unsafe { p.get() }.id));
    let successor = if retaken || over_limit {
        None
    } else {
        m.preempted_successor()
    };
    // Once the runtime has stopped, nobody would resume the G: let it run
    // on (it is detached, see `Shared::shutdown`). The successor taken off
    // the queue above was out of reach of shutdown's drain: release it.
    if m.rt.is_shutdown() {
        if let Some(next) = successor {
            m.rt.release_preempted_g(next);
        }
        return false;
    }
    #[cfg(test)]
    tests::in_window(&m.rt);
    let spare = if retaken || successor.is_some() {
        None
    } else {
        m.rt.claim_spare()
    };
    if successor.is_none() && spare.is_none() && !retaken {
        return false;
    }
    if super::tracing::on(&m.rt) {
        super::tracing::preempted(m, &g);
    }
    g.locked_m
        .store(Arc::as_ptr(&m.handle) as *mut MHandle, Ordering::Release);
    m.handle.preempt_waiting.store(true, Ordering::Release);
    let p = m.take_p();
    // Our G's header stays alive while we run it (`cur` holds it).
    let me: *const G = g.as_ptr();
    // SAFETY: `g` is our own running G, not queued.
    unsafe { m.rt.preempted.push(g) };
    // Counted now, not when the G resumes: a reader sees it with the G
    // waiting in the preempted queue.
    if preemption {
        m.rt.metrics.count_preemption();
    }
    match (successor, spare, p) {
        (Some(next), _, Some(p)) => {
            m.rt.hand_to_preempted(next, p);
            if preemption {
                crate::preempt::count_direct_handoff();
            }
        }
        (None, Some(spare), Some(p)) => spare.give(p, false),
        _ => m.rt.resume_preempted_on_idle_p(),
    }
    // Shutdown's stop step stores `shutdown`, then drains the queue; we
    // pushed, then read `shutdown` (a SeqCst fence on each side, the
    // other in `release_preempted`): either its drain finds our G, or we
    // see `shutdown` and drain the queue ourselves (our G included if it
    // is still there), else our G, queued after the drain, would wait
    // here for good.
    fence(Ordering::SeqCst);
    if m.rt.is_shutdown() {
        m.rt.release_preempted();
    }
    // Wait for our turn. If the runtime stops first, shutdown (or the
    // drain above) takes the G out of the queue and kicks us: the G runs
    // on without a P (detached) until its next blocking call, where it
    // unwinds as cancelled.
    let p = loop {
        match m.handle.wait(None, None) {
            Wake::P(p, _) => break Some(p),
            // SAFETY: `me` is the running G, alive (see above).
            _ if m.rt.is_shutdown()
                && unsafe { &*me }.locked_m.load(Ordering::Acquire).is_null() =>
            {
                break None
            }
            _ => {}
        }
    };
    m.handle.preempt_waiting.store(false, Ordering::Release);
    if let Some(p) = p {
        // The tick already moved when our P was handed over (see
        // `hand_to_preempted`), so sysmon sees a new slice; it measures
        // it from this stamp, taken once this thread runs again, and in
        // this thread's CPU time (see sysmon's `Seen::held`): dated by
        // the hand-off, the slice would lose however long the thread
        // then waited for a CPU, and on a busy machine the other
        // processes' share of its wall-clock time, so turns would be
        // unequal. (Two clock reads a preemption; one is a system call.)
        // SAFETY: handed to us: the P is ours (only its id is read).
        let id = unsafe { p.get() }.id;
        let tick = m.rt.ticks[id].load(Ordering::Relaxed);
        let now = crate::sys::clock::now();
        let cpu = crate::sys::clock::thread_cpu_now();
        m.handle.stamp_slice(id, tick, now, cpu);
        m.set_p(Some(p));
        if super::tracing::on(&m.rt) {
            // SAFETY: `me` is the running G, alive (see above).
            super::tracing::resumed(m, unsafe { &*me });
        }
    }
    true
}

#[cfg(test)]
#[path = "preempt_path_tests.rs"]
mod tests;
