//! Finding work for an M: its P's queues, the preempted Gs, the global
//! queue, timers, the netpoller and stealing from other Ps (Go's
//! `findRunnable`), and giving the P up when there is none.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_deque::Steal;

use super::g::GRef;
use super::idle::{self, Stopped};
use super::m::M;
use super::p::P;
use super::park::ReadyList;

/// Every 61st tick, one G of the global queue is served before the local
/// ones (Go's `schedule`).
const GLOBAL_CHECK_INTERVAL: u32 = 61;
/// Every 61st tick the netpoller is polled (without blocking) even though
/// this P has Gs queued, as tokio's `event_interval`: Gs whose fds became
/// ready join the queue's tail instead of waiting in the kernel until the
/// queue runs dry. Under load that keeps a P cycling through the Gs it
/// runs (their stacks and sockets still in cache) while the overflow
/// waits in the global queue (see `P::put`); without it every connection
/// of a busy server takes its turn through epoll's FIFO ready list, and
/// with a thousand of them nothing stays in cache.
const NETPOLL_CHECK_INTERVAL: u32 = 61;
/// The ticks at which either of the above is due (`M::switch_direct`
/// leaves those to the scheduler).
pub(super) const SHARED_CHECK_INTERVAL: u32 = 61;
const _: () = assert!(
    GLOBAL_CHECK_INTERVAL == SHARED_CHECK_INTERVAL
        && NETPOLL_CHECK_INTERVAL == SHARED_CHECK_INTERVAL
);
/// Rounds over all victims a spinning M makes before giving up.
const STEAL_ROUNDS: usize = 4;

impl M {
    /// Finds a G to run, stealing and sleeping as needed. Returns None only
    /// when the runtime shuts down.
    pub(super) fn find_runnable(&self) -> Option<GRef> {
        loop {
            if self.rt.is_shutdown() {
                if let Some(p) = self.p.get() {
                    // Gs queued here will never run: give their joiners
                    // the news (shutdown drains the other queues).
                    // SAFETY: the M owns its current P.
                    for g in unsafe { p.get() }.drain() {
                        self.rt.abandon_queued(g);
                    }
                }
                self.drop_p();
                return None;
            }
            if self.p.get().is_none() && !self.acquire_after_stop()? {
                continue;
            }
            // The active limit is at or below our P (it fell while we
            // ran, or an idle P over it still had Gs queued; see
            // `cpu_limit`): park it, its Gs to the global queue, and look
            // for another.
            if self.shed_parked_p() {
                continue;
            }
            if let Some(g) = self.take_handover().or_else(|| self.find_once()) {
                if self.spinning.get() {
                    self.reset_spinning();
                }
                return Some(g);
            }
            if self.p.get().is_none() {
                // Our P went to the M of a preempted G (see
                // `resume_preempted`): look for another.
                if self.spinning.replace(false) {
                    self.rt.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                continue;
            }
            // Nothing anywhere: give up the P, re-check, then sleep.
            let was_spinning = self.spinning.replace(false);
            if was_spinning {
                self.rt.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
            self.park_p();
            // Pairs with the fence in `wakep`: work made runnable before the
            // P went idle must be seen here.
            // A spinner that gives up re-checks everything (and resumes
            // spinning if it finds work); anyone re-checks the lock-free
            // global queue, which has no other way to wake it.
            // So are preempted Gs: one queued without a P to hand on (a
            // retaken one) finds no idle P if it looked before ours went
            // idle (pairs with the fence in `resume_preempted_on_idle_p`).
            if idle::recheck_after_idle(|| {
                (was_spinning && self.work_anywhere())
                    || !self.rt.injector.is_empty()
                    || !self.rt.preempted.is_empty()
            }) {
                if let Some(p) = self.rt.get_idle_p() {
                    self.set_p(Some(p));
                    if was_spinning {
                        self.spinning.set(true);
                        self.rt.nmspinning.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
            }
            // An idle P exists (ours): this M may wait in the netpoller.
            if super::tracing::on(&self.rt) {
                super::tracing::idle(self);
            }
            let mut polled = ReadyList::new();
            let may_poll = !self.poll_for_others.replace(false);
            let stopped = self.rt.stop_m(
                &self.handle,
                self.rt.next_timer(),
                may_poll.then_some(&mut polled),
            );
            match stopped {
                Stopped::Acquired(p, spinning) => {
                    self.set_p(Some(p));
                    self.set_spinning_handed(spinning);
                }
                Stopped::Woke => {}
                Stopped::Shutdown => {
                    // Queued, so shutdown accounts for them with the rest.
                    super::inject_polled(polled);
                    return None;
                }
            }
            // The netpoller is the process's, shared by every runtime in it.
            // An M that polled only another runtime's green threads hands
            // each over with a wake-up of that runtime's M; were it to block
            // in the poller again, every event of a runtime busy with I/O
            // while this one idles would cost two thread wake-ups. So its
            // next stop leaves the poller to that runtime's Ms, which take
            // it when they run out of work (sysmon's stale poll, and busy
            // Ps' polls, cover this runtime's sockets meanwhile).
            self.poll_for_others
                .set(!polled.is_empty() && polled.iter().all(|g| !Arc::ptr_eq(&g.rt, &self.rt)));
            self.run_polled(polled);
        }
    }

    /// Polls the netpoller without blocking and queues the Gs it made
    /// runnable on this P (see `run_polled`): no more than its local queue
    /// has room for (`netpoll::poll_budget`). Returns whether there were any.
    fn run_netpolled(&self) -> bool {
        let Some(max) = crate::netpoll::poll_budget(self.p().free_slots()) else {
            return false;
        };
        let mut polled = ReadyList::new();
        crate::netpoll::poll_now(&mut polled, max);
        let any = !polled.is_empty();
        self.run_polled(polled);
        any
    }

    /// Between two Gs: submits the file operations the Gs of P `p` queued
    /// on its io_uring ring once enough gathered or they waited long
    /// enough (the netpoll calls submit the rest), and queues the Gs whose
    /// completions are already posted (see `uring::reap_posted`).
    #[inline(never)]
    fn file_chores(&self, p: usize) {
        crate::netpoll::uring::submit_if_due(Some(p), crate::sys::clock::now);
        let mut done = ReadyList::new();
        if crate::netpoll::uring::reap_posted(p, &mut done) > 0 {
            self.run_polled(done);
        }
    }

    /// Queues Gs the netpoller made runnable: on our P (taking an idle one
    /// if we have none) so this M runs them, waking another M only if
    /// there is more than one; without a P, globally.
    fn run_polled(&self, gs: Vec<GRef>) {
        if gs.is_empty() {
            return;
        }
        if self.p.get().is_none() {
            if let Some(p) = self.rt.get_idle_p() {
                self.set_p(Some(p));
            }
        }
        let many = gs.len() > 1;
        if super::tracing::on(&self.rt) {
            super::tracing::netpolled(self, gs.len());
        }
        for g in gs {
            if super::tracing::on(&g.rt) {
                super::tracing::runnable(&g);
            }
            match self.p.get() {
                // SAFETY: the M owns its current P.
                Some(p) if Arc::ptr_eq(&g.rt, &self.rt) => {
                    // SAFETY: the M owns its current P.
                    unsafe { p.get() }.put(g, false, &self.rt.injector)
                }
                _ => {
                    let rt = g.rt.clone();
                    rt.injector.push(g);
                    rt.wakep();
                }
            }
        }
        if many {
            self.rt.wakep();
        }
    }

    /// After waking without a P: take an idle one if there is work for it.
    /// Returns Some(true) with a P, Some(false) to go round again (after
    /// sleeping), None at shutdown.
    fn acquire_after_stop(&self) -> Option<bool> {
        if let Some(p) = self.rt.get_idle_p() {
            self.set_p(Some(p));
            return Some(true);
        }
        // Every P is busy; they run their own timers and poll the netpoller
        // when they run out of work. Sleep until handed one.
        match self.rt.stop_m(&self.handle, u64::MAX, None) {
            Stopped::Acquired(p, spinning) => {
                self.set_p(Some(p));
                self.set_spinning_handed(spinning);
                Some(true)
            }
            Stopped::Woke => Some(false),
            Stopped::Shutdown => None,
        }
    }

    /// One pass over every source of work, in priority order.
    fn find_once(&self) -> Option<GRef> {
        let p = self.p();
        self.run_timers();
        // A program that never touched a file pays one load here.
        if crate::netpoll::uring::in_use() {
            self.file_chores(p.id);
        }
        // Every 61st tick the shared queues go first, so neither the global
        // queue nor preempted Gs starve behind a busy local queue; they
        // alternate, so neither starves the other.
        let tick = self.rt.ticks[p.id].load(Ordering::Relaxed);
        let polled_this_tick = tick % NETPOLL_CHECK_INTERVAL == 0;
        if polled_this_tick {
            self.run_netpolled();
        }
        if tick % GLOBAL_CHECK_INTERVAL == 0 {
            super::metrics::publish(&self.rt, p);
            if tick % (2 * GLOBAL_CHECK_INTERVAL) == 0 && self.resume_preempted() {
                return None;
            }
            // One G, as Go's `schedule` takes: a batch would move the
            // global queue's head in front of the local Gs (see `P::put`).
            if let Some(g) = self.take_global_one() {
                return Some(g);
            }
            if self.resume_preempted() {
                return None;
            }
        }
        if let Some(g) = p.pop() {
            return Some(g);
        }
        if let Some(g) = self.take_global(p) {
            return Some(g);
        }
        if self.resume_preempted() {
            return None;
        }
        // With every other P idle and their queues empty there is
        // nothing to steal (see `nothing_elsewhere`), and unless this M must leave the poller
        // to other runtimes (`poll_for_others`), its stop is about to wait
        // in the netpoller: a poll without blocking first would be a
        // second epoll_wait for the same wait. When the M ran dry because
        // its G parked for a reply, that poll finds nothing and the
        // blocking one follows (two system calls where one does); when
        // events are ready, the blocking poll returns them at once. (Go
        // polls twice here; tokio's idle worker goes straight to its
        // driver.) With other Ps busy the poll stays: it takes ready
        // events without giving up the P.
        let alone = self.nothing_elsewhere();
        if alone && !self.poll_for_others.get() {
            return None;
        }
        // Green threads whose fds became ready: run them here (unless the
        // poll at the top just looked).
        if !polled_this_tick && self.run_netpolled() {
            if let Some(g) = p.pop() {
                return Some(g);
            }
        }
        if alone {
            return None;
        }
        // Spin (steal) only while fewer than half of the busy Ps' Ms do.
        let busy = self
            .rt
            .cpu_limit
            .active()
            .saturating_sub(self.rt.npidle.load(Ordering::SeqCst));
        if !self.spinning.get() && 2 * self.rt.nmspinning.load(Ordering::SeqCst) >= busy {
            return None;
        }
        if !self.spinning.get() {
            if super::tracing::on(&self.rt) {
                super::tracing::spinning(self);
            }
            self.spinning.set(true);
            self.rt.nmspinning.fetch_add(1, Ordering::SeqCst);
        }
        self.steal(p)
    }

    /// Whether every P but ours is idle and there is nothing to steal.
    /// Both are asked: an idle P may still have Gs queued (`handoff_p`
    /// lists a blocking M's P idle before an M takes it, and a P over the
    /// active limit is listed idle with its Gs, see `cpu_limit`), and
    /// Ps over a lowered limit may still be busy; an M that skipped the
    /// steal then could leave those Gs unrun.
    fn nothing_elsewhere(&self) -> bool {
        nothing_elsewhere(
            self.rt.npidle.load(Ordering::SeqCst),
            self.rt.cpu_limit.active(),
            self.rt.stealers.iter().map(|s| s.is_empty()),
        )
    }

    /// If a preempted G waits, hands our P to the M that holds it (a
    /// preempted G keeps its OS thread) and returns true; we are then
    /// without a P.
    fn resume_preempted(&self) -> bool {
        // The preempted G may hold the allocator's lock: from here to the
        // hand-off nothing allocates (see `preempt::in_critical_path`).
        let _critical = crate::preempt::Critical::enter();
        let Some(g) = self.rt.preempted.pop() else {
            return false;
        };
        let p = self.take_p().expect("greenrt: M without a P");
        self.rt.hand_to_preempted(g, p);
        true
    }

    /// For the preemption path: the next preempted G, if the scheduler
    /// would run it next (nothing queued on our P or globally, no timer
    /// due). Lock-free and allocation-free; None when unsure.
    pub(super) fn preempted_successor(&self) -> Option<GRef> {
        if self.rt.is_shutdown()
            || self.local_work()
            || !self.rt.injector.is_empty()
            || self.rt.next_timer() <= crate::sys::clock::now()
        {
            return None;
        }
        self.rt.preempted.try_pop()
    }

    fn take_global_one(&self) -> Option<GRef> {
        loop {
            match self.rt.injector.steal() {
                Steal::Success(g) => return Some(g),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn take_global(&self, p: &P) -> Option<GRef> {
        loop {
            match self.rt.injector.steal_batch_and_pop(&p.runq) {
                Steal::Success(g) => return Some(g),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Steals about half of a random victim's queue.
    fn steal(&self, p: &P) -> Option<GRef> {
        let n = self.rt.stealers.len();
        for _ in 0..STEAL_ROUNDS {
            let start = p.random() as usize % n;
            for i in 0..n {
                let victim = (start + i) % n;
                if victim == p.id {
                    continue;
                }
                let before = p.runq.len();
                loop {
                    match self.rt.stealers[victim].steal_batch_and_pop(&p.runq) {
                        Steal::Success(g) => {
                            // Others may steal from us meanwhile: a lower bound.
                            p.batch.stole(p.runq.len().saturating_sub(before) + 1);
                            return Some(g);
                        }
                        Steal::Empty => break,
                        Steal::Retry => continue,
                    }
                }
            }
            if let Some(g) = self.take_global(p) {
                return Some(g);
            }
        }
        None
    }

    /// Readies the Gs of every P's expired timers into our P, in one
    /// batch: this M runs the first, and one `wakep` (not one per timer)
    /// gets an idle P's M to steal the rest. Reads the clock only when
    /// some timer is armed.
    fn run_timers(&self) {
        let earliest = self.rt.next_timer();
        if earliest == u64::MAX {
            return;
        }
        let now = crate::sys::clock::now();
        if earliest > now {
            return;
        }
        let p = self.p();
        let mut readied = 0;
        for timers in self.rt.timers.iter().filter(|t| t.next() <= now) {
            readied += timers.run_expired(now, p, &self.rt.injector);
        }
        if readied > 1 {
            self.rt.wakep();
        }
    }

    /// A spinning M found work: stop spinning, and if it was the last
    /// spinner, start another so remaining work is picked up in parallel.
    fn reset_spinning(&self) {
        self.spinning.set(false);
        if self.rt.nmspinning.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.rt.wakep();
        }
    }

    /// Gives up the P for want of work (counted as the P's park).
    #[inline(never)]
    fn park_p(&self) {
        if let Some(p) = self.p.get() {
            // SAFETY: the M owns its current P.
            unsafe { p.get() }.batch.parked();
        }
        self.drop_p();
    }

    fn drop_p(&self) {
        if let Some(p) = self.take_p() {
            self.rt.put_idle_p(p);
        }
    }

    /// Is any work visible: a queued G or an expired timer?
    fn work_anywhere(&self) -> bool {
        if !self.rt.injector.is_empty()
            || !self.rt.preempted.is_empty()
            || self.rt.stealers.iter().any(|s| !s.is_empty())
        {
            return true;
        }
        let next = self.rt.next_timer();
        next != u64::MAX && next <= crate::sys::clock::now()
    }
}

/// `M::nothing_elsewhere`'s test: `npidle` of `active` Ps idle (ours is
/// not), and every run queue empty (`queues_empty`, ours included: the
/// caller found its own empty).
fn nothing_elsewhere(
    npidle: usize,
    active: usize,
    mut queues_empty: impl Iterator<Item = bool>,
) -> bool {
    npidle + 1 >= active && queues_empty.all(|empty| empty)
}

#[cfg(test)]
mod tests {
    use super::nothing_elsewhere;

    /// An idle P can still hold Gs (a P handed on at a blocking call, or
    /// one over the active limit): an M that saw only "every other P
    /// idle" skipped the steal and parked, and the Gs waited until a P
    /// happened to go to an M that ran that one (for ever, in a review's
    /// reproduction, the idle list handing out the other P each time).
    #[test]
    fn an_idle_p_with_queued_gs_leaves_something_to_steal() {
        assert!(nothing_elsewhere(1, 2, [true, true].into_iter()));
        assert!(!nothing_elsewhere(1, 2, [true, false].into_iter()));
        assert!(!nothing_elsewhere(0, 2, [true, true].into_iter()));
        assert!(nothing_elsewhere(0, 1, [true].into_iter()));
        // More Ps than the active limit: one above it may be busy and
        // queue Gs until its M next schedules.
        assert!(!nothing_elsewhere(1, 2, [true, true, false].into_iter()));
    }
}
