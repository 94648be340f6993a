//! Direct switches: a parking or yielding G switches straight into the
//! next G of its P, and that G finishes it (docs/DESIGN.md, "Context
//! switch"). Part of `M`, split out of `m.rs`.

use std::sync::atomic::Ordering;

use super::super::g::{GRef, G, RUNNING};
use super::super::tracing;
use super::{Request, M};
use crate::context;

/// Stack a G must have left below its saved stack pointer for a direct
/// switch into it (see `M::switch_direct`): about twice the deepest
/// finish of a predecessor measured.
const DIRECT_SWITCH_STACK_ROOM: usize = 12 * 1024;

impl M {
    /// The G that switched into us directly: finish it (see `prev`).
    #[inline(always)]
    pub(crate) fn finish_prev(&self) {
        // SAFETY: `prev` is only touched on this M's thread, by the G
        // running on it, never reentrantly (the G holds a no-preempt scope).
        if let Some((g, req)) = unsafe { (*self.prev.get()).take() } {
            self.finish_stopped(g, req);
            // Give back the no-preempt count `switch_direct` lent us.
            // SAFETY: we run on `curg` (it switched in and called this),
            // alive while it runs; the count is written only by its own
            // thread (and that thread's handler, balanced by now).
            let count = unsafe { &(*self.curg.get()).nopreempt };
            count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        }
    }

    /// The G `switch_direct` left for the scheduler, if any.
    pub(in crate::scheduler) fn take_handover(&self) -> Option<GRef> {
        // SAFETY: only this M's thread touches `handover`, and this runs
        // on its scheduler context.
        unsafe { (*self.handover.get()).take() }
    }

    /// From the running G (which is parking or yielding, `req`), switches
    /// straight into the next G of this P when the scheduler would pick
    /// it without looking elsewhere first (no shared-queue tick, no timer
    /// due, no file chores): one switch instead of two, and no return
    /// through the scheduler's stack, whose frames would mispredict every
    /// return of the resumed G. Returns false (nothing done) otherwise.
    ///
    /// # Safety
    /// Must be called on the running G's stack, inside its no-preempt
    /// scope; on true the caller must call `finish_prev` once resumed.
    #[inline(never)]
    pub(crate) unsafe fn switch_direct(&self, req: Request) -> bool {
        // A locked G never switches out while locked (it blocks its OS
        // thread instead), and none is ever queued on a P, so `next`
        // below is never locked either.
        debug_assert_eq!(self.locked.get(), 0, "greenrt: a locked G switched out");
        let Some(pp) = self.p.get() else {
            return false;
        };
        // SAFETY: the M owns its current P.
        let p = unsafe { pp.get() };
        let tick = &self.rt.ticks[p.id];
        let t = tick.load(Ordering::Relaxed);
        // Debug builds always go through the scheduler: finishing the
        // predecessor runs on the next G's stack (a requeue can grow or
        // spill the run queue, which allocates), and unoptimised frames
        // made that overflow 16 KiB stacks (tests/stack.rs, map_count).
        if cfg!(debug_assertions)
            || t % super::super::find::SHARED_CHECK_INTERVAL == 0
            || self.rt.is_shutdown()
            || crate::netpoll::uring::in_use()
        {
            return false;
        }
        let timer = self.rt.next_timer();
        if timer != u64::MAX && self.timer_may_be_due(timer) {
            return false;
        }
        // Taking the next G off the run queue can go deep too (it may
        // shrink the queue's buffer): only with room on our own stack.
        let here = std::hint::black_box(0u8);
        let here = std::ptr::addr_of!(here) as usize;
        // SAFETY: curg is the G running here (us), alive while it runs.
        let (_, lowest) = unsafe { (*self.curg.get()).guard() };
        if here.saturating_sub(lowest) < DIRECT_SWITCH_STACK_ROOM {
            return false;
        }
        let Some(next) = p.pop() else {
            return false;
        };
        // SAFETY: popped from our P: this M owns it. (A G gets its stack
        // at spawn or when first run, so one without a stack has not
        // started; one with a stack starts in `g_entry`, which finishes us
        // as a resumed G does.)
        // Finishing us runs on the next G's stack, below where it parked,
        // and can go deep (a requeue that spills to the shared queue or
        // resizes a run queue's buffer took about 6.5 KiB): with less
        // room than `DIRECT_SWITCH_STACK_ROOM` there, the scheduler's
        // stack does it (tests/direct_switch.rs, small stacks).
        // SAFETY: as above; a G with a stack has a saved context.
        if !unsafe { next.has_stack() } || unsafe { next.stack_room() } < DIRECT_SWITCH_STACK_ROOM {
            // SAFETY: only this M's thread touches `handover`.
            unsafe { *self.handover.get() = Some(next) };
            return false;
        }
        // Lend the next G a no-preempt count until it has finished us
        // (`finish_prev`): a G that has not started yet holds none of its
        // own, and the handler must not stop it before that. (Until the
        // stack switch the handler also refuses: the stack pointer is
        // not on `curg`'s stack.) We own the G: only we write its count.
        let count = &next.nopreempt;
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        tick.store(t.wrapping_add(1), Ordering::Relaxed);
        next.set_state(RUNNING);
        self.curg.set(next.as_ptr());
        // SAFETY: we own `next` (it came off our P) and it has a stack;
        // this M's scheduler context stays suspended in `execute`, its
        // stack pointer in `g0_sp`.
        unsafe { next.link_parent(self.g0_sp.get()) };
        // SAFETY: the G's saved context is read by its owner (us) only.
        let next_sp = unsafe { *next.sp.get() };
        // SAFETY: `cur` and `prev` are only touched on this M's thread,
        // by the running G (us) or the scheduler, never both at once.
        let prev = unsafe { (*self.cur.get()).replace(next) }.expect("greenrt: lost the running G");
        let save = prev.sp.get();
        // SAFETY: as above.
        unsafe { *self.prev.get() = Some((prev, req)) };
        let mode = tracing::mode(&self.rt);
        if mode != tracing::MODE_OFF {
            // Written here, by the stopping G under its own no-preempt
            // scope, before it can be queued or woken (its stop must come
            // before any later start of it); after everything else, so
            // that the untraced path keeps no more values live. No refill
            // here (it allocates): `execute` refills, and runs at least
            // every `SHARED_CHECK_INTERVAL` switches, far fewer than a
            // buffer holds.
            // SAFETY: `save` is `prev`'s context slot, and `prev` (held in
            // `self.prev`) is alive.
            let prev = unsafe { G::from_context_slot(save) };
            tracing::switched(self, prev, mode == tracing::MODE_FLIGHT);
        }
        // SAFETY: `save` is our (the running G's) own context slot, kept
        // alive by the GRef in `prev`; `next` is RUNNING, owned by this M,
        // its context saved by `switch` (it has started) and its stack
        // alive while `cur` holds it.
        unsafe { context::switch(save, next_sp) };
        true
    }

    /// Whether the earliest timer (at `timer`, monotonic ns) may be due,
    /// reading the clock only when it may: a program with any timer armed
    /// (a sleeper, a read timeout) would otherwise read it on every
    /// direct switch, 7% of a yield's instructions. The time-stamp
    /// counter bounds the time since this M last read the clock: it ticks
    /// at least once a nanosecond (x86-64 TSCs run at the nominal clock
    /// rate, over 1 GHz), so the clock then plus the ticks since is no
    /// earlier than now, and while that is before the timer, it is not
    /// due. Each read of the clock cuts the distance to the timer by the
    /// TSC's rate in GHz, so a timer a second away costs a few dozen
    /// reads, not one per switch. (A slower TSC would only make a due
    /// timer wait for the next pass through the scheduler, every
    /// `SHARED_CHECK_INTERVAL` switches, or sysmon.)
    #[inline(always)]
    fn timer_may_be_due(&self, timer: u64) -> bool {
        let tsc = crate::trace::ticks();
        let (ns, then) = self.timer_clock.get();
        // A counter that went back (another CPU's) reads the clock.
        let bound = ns.saturating_add(tsc.checked_sub(then).unwrap_or(u64::MAX));
        if bound < timer {
            return false;
        }
        let now = crate::sys::clock::now();
        self.timer_clock.set((now, tsc));
        timer <= now
    }
}
