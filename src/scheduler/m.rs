//! M: an OS thread running the scheduler loop (its "g0" context) and
//! switching into Gs.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use crossbeam_deque::{Injector, Steal};

use super::g::{GRef, DEAD, G, RUNNABLE, RUNNING};
use super::handoff::{MHandle, Wake};
use super::p::{PPtr, P};
use super::shared::{Shared, Stopped};
use crate::context;
use crate::stack::overflow::AltStack;

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
/// Rounds over all victims a spinning M makes before giving up.
const STEAL_ROUNDS: usize = 4;

/// Why a G switched back to its M's scheduler context.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Request {
    /// Go to the tail of the local queue.
    Yield,
    /// Park until `G::unpark`.
    Park,
    /// The G finished; release its stack.
    Exit,
}

pub(crate) struct M {
    pub(crate) rt: Arc<Shared>,
    handle: Arc<MHandle>,
    p: Cell<Option<PPtr>>,
    spinning: Cell<bool>,
    /// The running G (raw, for the signal handler) and its owning handle.
    pub(crate) curg: Cell<*const G>,
    cur: UnsafeCell<Option<GRef>>,
    pub(crate) request: Cell<Request>,
    /// The scheduler's (g0's) stack pointer while a G runs: saved by the
    /// switch into the G, resumed by the G's switch out. The G's parent
    /// slot points here (see `G::link_parent`).
    g0_sp: UnsafeCell<*mut u8>,
    /// While this M polls the netpoller, Gs it makes runnable are gathered
    /// here instead of queued, so it can run them itself (see `netpolled`).
    polled: RefCell<Option<Vec<GRef>>>,
}

thread_local! {
    static CURRENT: Cell<*const M> = const { Cell::new(std::ptr::null()) };
}

/// The M running on this OS thread, or null.
///
/// Never inlined: a green thread can resume on another OS thread after any
/// switch, and an inlined thread-local access could let the compiler reuse
/// a TLS address computed before the switch.
#[inline(never)]
pub(crate) fn current() -> *const M {
    CURRENT.with(|c| c.get())
}

/// The running G of this thread, or null (async-signal-safe: the TLS slot
/// is const-initialised and has no destructor).
pub(crate) fn current_g_raw() -> *const G {
    let m = current();
    if m.is_null() {
        return std::ptr::null();
    }
    // SAFETY: a non-null CURRENT points at the M living on this thread.
    unsafe { (*m).curg.get() }
}

/// Body of every M thread. Without a P (a spare M, see `Shared::ensure_spares`)
/// it first waits to be handed one.
pub(crate) fn m_main(rt: Arc<Shared>, handle: Arc<MHandle>, p: Option<PPtr>, spinning: bool) {
    // Spare Ms are started by sysmon; don't run green threads at its class.
    crate::preempt::sched_class::reset_inherited();
    let _alt = AltStack::install();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    handle.tid.store(tid, Ordering::Relaxed);
    let m = M {
        rt,
        handle,
        p: Cell::new(None),
        spinning: Cell::new(spinning),
        curg: Cell::new(std::ptr::null()),
        cur: UnsafeCell::new(None),
        request: Cell::new(Request::Yield),
        g0_sp: UnsafeCell::new(std::ptr::null_mut()),
        polled: RefCell::new(None),
    };
    CURRENT.with(|c| c.set(&m));
    match p {
        Some(p) => m.set_p(Some(p)),
        // A new spare: std's thread start-up (which allocates) is over,
        // so take a spare slot, then wait (off the idle list) for a P.
        None if !m.rt.spare_ready(&m.handle) => {
            CURRENT.with(|c| c.set(std::ptr::null()));
            return;
        }
        None => loop {
            match m.handle.wait(None, false) {
                Wake::P(p, spinning) => {
                    m.set_p(Some(p));
                    m.spinning.set(spinning);
                    break;
                }
                _ if m.rt.is_shutdown() => {
                    CURRENT.with(|c| c.set(std::ptr::null()));
                    return;
                }
                _ => {}
            }
        },
    }
    while let Some(g) = m.find_runnable() {
        m.execute(g);
    }
    CURRENT.with(|c| c.set(std::ptr::null()));
}

impl M {
    /// The P this M holds. Panics if it holds none (a runtime bug).
    pub(crate) fn p(&self) -> &P {
        let p = self.p.get().expect("greenrt: M without a P");
        // SAFETY: the M owns its current P exclusively.
        unsafe { p.get() }
    }

    /// A handle to the G running on this M (None in the scheduler).
    ///
    /// # Safety
    /// Must be called on this M's thread.
    pub(crate) unsafe fn current_g(&self) -> Option<GRef> {
        (*self.cur.get()).clone()
    }

    /// Takes or gives up P ownership, keeping sysmon's view (the P's
    /// owner) in step.
    pub(crate) fn set_p(&self, p: Option<PPtr>) {
        if let Some(old) = self.p.replace(p) {
            // SAFETY: we owned it until now.
            self.rt.set_owner(unsafe { old.get() }.id, std::ptr::null());
        }
        if let Some(new) = p {
            self.handle.retaken.store(false, Ordering::Relaxed);
            // SAFETY: it is ours now.
            self.rt
                .set_owner(unsafe { new.get() }.id, Arc::as_ptr(&self.handle));
        }
    }

    pub(crate) fn take_p(&self) -> Option<PPtr> {
        let p = self.p.get();
        self.set_p(None);
        p
    }

    pub(crate) fn has_p(&self) -> bool {
        self.p.get().is_some()
    }

    /// Our P has Gs queued.
    pub(crate) fn local_work(&self) -> bool {
        // SAFETY: the M owns its current P.
        self.p.get().is_some_and(|p| !unsafe { p.get() }.is_empty())
    }

    /// Runs `g` until it switches back, then acts on its request.
    fn execute(&self, g: GRef) {
        // SAFETY: we own the G now: it came off a run queue.
        if !unsafe { g.has_stack() } {
            match super::alloc_stack(&self.rt, g.stack_size) {
                // SAFETY: as above; it has not started.
                Ok(stack) => unsafe { g.bind_stack(stack) },
                Err(e) => return self.fail_start(g, e),
            }
        }
        let p = self.p();
        // One writer (this P's owner), so load + store, no locked op.
        let tick = &self.rt.ticks[p.id];
        tick.store(
            tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        g.set_state(RUNNING);
        self.curg.set(g.as_ptr());
        let (g0_sp, sp) = (self.g0_sp.get(), g.sp.get());
        // SAFETY: we own the G (it came off a run queue) and it has a stack.
        unsafe { g.link_parent(g0_sp) };
        // SAFETY: `cur` is only touched on this thread, here and by the G
        // while it runs (through `current()`), never both at once.
        unsafe { *self.cur.get() = Some(g) };
        self.handle.in_g.store(true, Ordering::Relaxed);
        // SAFETY: the G is RUNNING, so only this M resumes it; its stack is
        // alive while `cur` holds it. Its context was saved by `switch` or
        // made by `prepare`.
        unsafe { context::switch(g0_sp, *sp) };
        self.handle.in_g.store(false, Ordering::Relaxed);
        self.curg.set(std::ptr::null());
        // SAFETY: as above; the G is suspended now.
        let g = unsafe { (*self.cur.get()).take() }.expect("greenrt: lost the running G");
        match self.request.get() {
            Request::Yield => {
                g.set_state(RUNNABLE);
                self.requeue(g, false);
            }
            Request::Park => {
                if g.finish_park() {
                    self.requeue(g, true);
                }
            }
            Request::Exit => {
                g.set_state(DEAD);
                // SAFETY: the G is dead and we are off its stack.
                if let Some(stack) = unsafe { g.take_stack() } {
                    self.recycle_stack(stack);
                }
                drop(self.rt.registry.remove(&g));
            }
        }
    }

    /// No stack could be mapped for a G about to start: its body reports
    /// the error to the joiner, run here on the scheduler's stack.
    fn fail_start(&self, g: GRef, err: std::io::Error) {
        eprintln!(
            "greenrt: green thread '{}' could not start: {err}",
            g.display_name()
        );
        g.set_state(DEAD);
        let fail = std::panic::AssertUnwindSafe(|| g.body().start(Some(err)));
        if std::panic::catch_unwind(fail).is_err() {
            eprintln!("greenrt: panic while dropping an unstarted green thread");
        }
        drop(self.rt.registry.remove(&g));
    }

    /// Queues a G that just switched out: on our P, or — if the G gave
    /// the P away while blocking (see `BlockingSection`) — globally.
    fn requeue(&self, g: GRef, next: bool) {
        match self.p.get() {
            // SAFETY: the M owns its current P.
            Some(p) => unsafe { p.get() }.put(g, next, &self.rt.injector),
            None => {
                self.rt.injector.push(g);
                self.rt.wakep();
            }
        }
    }

    fn recycle_stack(&self, stack: crate::stack::Stack) {
        let Some(p) = self.p.get() else {
            let _ = self.rt.stacks.lock().put(stack);
            return;
        };
        // SAFETY: the M owns its current P.
        let mut local = unsafe { p.get() }.stacks.borrow_mut();
        if let Err(stack) = local.put(stack) {
            let mut global = self.rt.stacks.lock();
            global.touch(crate::time::now());
            local.spill_half(&mut global);
            let _ = local.put(stack);
        }
    }

    /// Finds a G to run, stealing and sleeping as needed. Returns None only
    /// when the runtime shuts down.
    fn find_runnable(&self) -> Option<GRef> {
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
            if let Some(g) = self.find_once() {
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
            self.drop_p();
            // Pairs with the fence in `wakep`: work made runnable before the
            // P went idle must be seen here.
            fence(Ordering::SeqCst);
            // A spinner that gives up re-checks everything (and resumes
            // spinning if it finds work); anyone re-checks the lock-free
            // global queue, which has no other way to wake it.
            // So are preempted Gs: one queued without a P to hand on (a
            // retaken one) finds no idle P if it looked before ours went
            // idle (pairs with the fence in `park_preempted`).
            if (was_spinning && self.work_anywhere())
                || !self.rt.injector.is_empty()
                || !self.rt.preempted.is_empty()
            {
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
            let (stopped, polled) = self.gather_polled(|| {
                let unlisted = || self.flush_polled();
                self.rt
                    .stop_m(&self.handle, self.rt.next_timer(), true, unlisted)
            });
            match stopped {
                Stopped::Acquired(p, spinning) => {
                    self.set_p(Some(p));
                    self.spinning.set(spinning);
                }
                Stopped::Woke => {}
                Stopped::Shutdown => {
                    // Queued, so shutdown accounts for them with the rest.
                    polled
                        .into_iter()
                        .for_each(|g| g.rt.clone().injector.push(g));
                    return None;
                }
            }
            self.run_polled(polled);
        }
    }

    /// Polls the netpoller without blocking and queues the Gs it made
    /// runnable on this P (see `run_polled`). Returns whether there were any.
    fn run_netpolled(&self) -> bool {
        let (_, polled) = self.gather_polled(crate::netpoll::poll_now);
        let any = !polled.is_empty();
        self.run_polled(polled);
        any
    }

    /// Runs `poll` (something that polls the netpoller) with the Gs it
    /// makes runnable gathered on this M rather than queued one by one
    /// with a wake-up each; returns its result and those Gs.
    fn gather_polled<R>(&self, poll: impl FnOnce() -> R) -> (R, Vec<GRef>) {
        *self.polled.borrow_mut() = Some(Vec::new());
        let r = poll();
        let gs = self.polled.borrow_mut().take().unwrap_or_default();
        (r, gs)
    }

    /// Queues the Gs gathered so far globally (gathering goes on): for
    /// when this M may not get a P for a while.
    fn flush_polled(&self) {
        let gathered = self.polled.borrow_mut().as_mut().map(std::mem::take);
        for g in gathered.into_iter().flatten() {
            let rt = g.rt.clone();
            rt.injector.push(g);
            rt.wakep();
        }
    }

    /// Queues Gs gathered by `gather_polled`: on our P (taking an idle one
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
        for g in gs {
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

    /// Takes `g` into the batch being gathered, if this M is gathering.
    pub(crate) fn gather(&self, g: GRef) -> Option<GRef> {
        match self.polled.try_borrow_mut() {
            Ok(mut batch) => match batch.as_mut() {
                Some(gs) => {
                    gs.push(g);
                    None
                }
                None => Some(g),
            },
            Err(_) => Some(g),
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
        match self.rt.stop_m(&self.handle, u64::MAX, false, || {}) {
            Stopped::Acquired(p, spinning) => {
                self.set_p(Some(p));
                self.spinning.set(spinning);
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
        // Every 61st tick the shared queues go first, so neither the global
        // queue nor preempted Gs starve behind a busy local queue; they
        // alternate, so neither starves the other.
        let tick = self.rt.ticks[p.id].load(Ordering::Relaxed);
        let polled_this_tick = tick % NETPOLL_CHECK_INTERVAL == 0;
        if polled_this_tick {
            self.run_netpolled();
        }
        if tick % GLOBAL_CHECK_INTERVAL == 0 {
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
        // Green threads whose fds became ready: run them here (unless the
        // poll at the top just looked).
        if !polled_this_tick && self.run_netpolled() {
            if let Some(g) = p.pop() {
                return Some(g);
            }
        }
        // Spin (steal) only while fewer than half of the busy Ps' Ms do.
        let busy = self.rt.cfg.workers - self.rt.npidle.load(Ordering::SeqCst);
        if !self.spinning.get() && 2 * self.rt.nmspinning.load(Ordering::SeqCst) >= busy {
            return None;
        }
        if !self.spinning.get() {
            self.spinning.set(true);
            self.rt.nmspinning.fetch_add(1, Ordering::SeqCst);
        }
        self.steal(p)
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
    fn preempted_successor(&self) -> Option<GRef> {
        if self.rt.is_shutdown()
            || self.local_work()
            || !self.rt.injector.is_empty()
            || self.rt.next_timer() <= crate::time::now()
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
                loop {
                    match self.rt.stealers[victim].steal_batch_and_pop(&p.runq) {
                        Steal::Success(g) => return Some(g),
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

    /// Readies the Gs of every P's expired timers into our P. Reads the
    /// clock only when some timer is armed.
    fn run_timers(&self) {
        let earliest = self.rt.next_timer();
        if earliest == u64::MAX {
            return;
        }
        let now = crate::time::now();
        if earliest > now {
            return;
        }
        let p = self.p();
        for timers in self.rt.timers.iter().filter(|t| t.next() <= now) {
            timers.run_expired(now, |g| unpark_into(g, p, &self.rt.injector));
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
        next != u64::MAX && next <= crate::time::now()
    }

    /// Switches from the running G back to this M's scheduler context.
    ///
    /// # Safety
    /// Must be called on a G's stack (the M's `curg`).
    pub(crate) unsafe fn switch_to_scheduler(&self, req: Request) {
        self.request.set(req);
        let g = self.curg.get();
        // SAFETY: the caller runs on `g`'s stack; `g0_sp` holds the
        // scheduler's stack pointer, saved when this M switched in.
        context::switch((*g).sp.get(), *self.g0_sp.get());
    }
}

/// Makes a PARKED G runnable directly into `p` (used for timers).
fn unpark_into(g: GRef, p: &P, global: &Injector<GRef>) {
    if g.wake_token() {
        p.put(g, true, global);
    }
}

/// First Rust code on a new G's stack (called from `greenrt_start`).
pub(crate) extern "C" fn g_entry(_header: *mut u8) -> ! {
    {
        // SAFETY: CURRENT is this thread's M, whose `cur` holds the G that
        // is running — us.
        let g = unsafe { (*current()).current_g() }.expect("greenrt: g_entry off a green thread");
        // The body catches the closure's panic for the JoinHandle; a panic
        // escaping anyway (from a task-local destructor, say) must not
        // unwind into the assembly frame below us.
        let run = std::panic::AssertUnwindSafe(|| g.body().start(None));
        if std::panic::catch_unwind(run).is_err() {
            eprintln!(
                "greenrt: panic while finishing green thread '{}'",
                g.display_name()
            );
            std::process::abort();
        }
    }
    // Every value of this G has been dropped; leave for good (not to be
    // preempted on the way: the guard is never dropped, the G is done).
    std::mem::forget(crate::preempt::no_preempt());
    // SAFETY: we run on the G's stack, and CURRENT is this thread's M.
    unsafe { (*current()).switch_to_scheduler(Request::Exit) };
    unreachable!("greenrt: a finished green thread was resumed")
}

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

/// The handler's view of the M it interrupted (see `preempt::signal`).
/// Every method is async-signal-safe: atomics, Cells of this thread's M,
/// and a futex wake.
pub(crate) struct SignalTarget {
    m: &'static M,
}

/// This thread's M, if it is one (async-signal-safe).
pub(crate) fn signal_target() -> Option<SignalTarget> {
    let m = current();
    // SAFETY: a non-null CURRENT points at the M living on this thread,
    // which outlives any signal delivered to the thread while it is set.
    (!m.is_null()).then(|| SignalTarget { m: unsafe { &*m } })
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
            self.m.handle.retaken.store(true, Ordering::Release);
            spare.give(p, false);
            return true;
        }
        let Some(next) = rt.preempted.try_pop() else {
            return false;
        };
        let p = self.m.take_p().expect("checked: the M holds a P");
        self.m.handle.retaken.store(true, Ordering::Release);
        rt.hand_to_preempted(next, p);
        true
    }
}

/// The preemption path proper, on the preempted G's stack (called by the
/// trampoline with every register saved). The G keeps this OS thread: its
/// P goes to a spare M, the G is queued as preempted, and this M waits
/// until some M hands it a P for the G's next turn. Allocation-free and
/// lock-free. Returns false if it could not preempt (no spare M yet).
pub(crate) fn preempt_park() -> bool {
    let _critical = crate::preempt::Critical::enter();
    let m = current();
    // SAFETY: the handler only redirects threads with an M to the
    // trampoline, and CURRENT is this thread's M.
    let m = unsafe { &*m };
    // SAFETY: on this M's thread; `cur` is the G we are running on.
    let g = unsafe { m.current_g() }.expect("greenrt: preempted off a green thread");
    let parked = park_preempted(m, g.clone());
    // The handler took a no-preempt count for us when it redirected the
    // G here (so no second signal could nest inside this path).
    g.nopreempt.fetch_sub(1, Ordering::Relaxed);
    parked
}

fn park_preempted(m: &M, g: GRef) -> bool {
    // A retaken G (back from its blocking call, computing without a P)
    // queues for a P like any preempted G; it has no P to hand on.
    let retaken = !m.has_p() && m.handle.retaken.load(Ordering::Acquire);
    if !m.has_p() && !retaken {
        return false;
    }
    // The P goes straight to the M of the next preempted G when that is
    // what the scheduler would run next anyway: one thread wake-up per
    // preemption instead of two (spare M, then that G's M).
    let successor = if retaken {
        None
    } else {
        m.preempted_successor()
    };
    // Once the runtime has stopped, nobody would resume the G: let it run
    // on (it is detached, see `Shared::shutdown`).
    if m.rt.is_shutdown() {
        return false;
    }
    let spare = if retaken || successor.is_some() {
        None
    } else {
        m.rt.claim_spare()
    };
    if successor.is_none() && spare.is_none() && !retaken {
        return false;
    }
    g.locked_m
        .store(Arc::as_ptr(&m.handle) as *mut MHandle, Ordering::Release);
    m.handle.preempt_waiting.store(true, Ordering::Release);
    let p = m.take_p();
    // Our G's header stays alive while we run it (`cur` holds it).
    let me: *const G = g.as_ptr();
    // SAFETY: `g` is our own running G, not queued.
    unsafe { m.rt.preempted.push(g) };
    match (successor, spare, p) {
        (Some(next), _, Some(p)) => {
            m.rt.hand_to_preempted(next, p);
            crate::preempt::count_direct_handoff();
        }
        (None, Some(spare), Some(p)) => spare.give(p, false),
        _ => m.rt.resume_preempted_on_idle_p(),
    }
    // Wait for our turn. If the runtime stops first, shutdown takes the G
    // out of the queue and kicks us: the G runs on without a P (detached)
    // until its next blocking call, where it unwinds as cancelled.
    let p = loop {
        match m.handle.wait(None, false) {
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
    // The tick already moved when our P was handed over (see
    // `resume_preempted`), so sysmon starts a fresh slice for us.
    if p.is_some() {
        m.set_p(p);
    }
    true
}
