//! M: an OS thread running the scheduler loop (its "g0" context) and
//! switching into Gs.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::g::{GRef, DEAD, G, RUNNABLE, RUNNING};
use super::handoff::{MHandle, Wake};
use super::p::{PPtr, P};
use super::shared::Shared;
use super::stack_overflow::AltStack;
use super::tracing;
use crate::context;

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
    pub(super) handle: Arc<MHandle>,
    pub(super) p: Cell<Option<PPtr>>,
    pub(super) spinning: Cell<bool>,
    /// The running G (raw, for the signal handler) and its owning handle.
    pub(crate) curg: Cell<*const G>,
    pub(super) cur: UnsafeCell<Option<GRef>>,
    pub(crate) request: Cell<Request>,
    /// The trace's stop code for the G switching out to park (what it
    /// waits for) or yield, set by `switch_out` (read only when tracing).
    pub(super) stop_code: Cell<u8>,
    /// The scheduler's (g0's) stack pointer while a G runs: saved by the
    /// switch into the G, resumed by the G's switch out. The G's parent
    /// slot points here (see `G::link_parent`).
    g0_sp: UnsafeCell<*mut u8>,
    /// A G that switched straight into the next one (`switch_direct`),
    /// and what it asked for: the next G finishes it (`finish_prev`) once
    /// the switch has saved its context.
    prev: UnsafeCell<Option<(GRef, Request)>>,
    /// A G `switch_direct` took from the P but could not switch into (it
    /// has not started, or has too little stack left to finish the G
    /// before it): the scheduler runs it next.
    handover: UnsafeCell<Option<GRef>>,
    /// `lock_os_thread` nesting of the running G: non-zero only while a
    /// locked G runs, which never leaves this M (see `scheduler::locked`).
    pub(super) locked: Cell<u32>,
    /// The last poll this M blocked in woke only other runtimes' green
    /// threads: its next stop sleeps without the netpoller, leaving it
    /// to an M of the runtime whose sockets are busy (see `run_polled`).
    pub(super) poll_for_others: Cell<bool>,
    /// The M took a P since it last ran a G: `execute` stamps the next
    /// slice's start (`MHandle::stamp_slice`) for sysmon, which would
    /// otherwise date it by its own request or round, and miss however
    /// long the hand-off took (a wake-up, a new M's set-up).
    stamp_next: Cell<bool>,
    /// The clock (monotonic ns) and the time-stamp counter when this M
    /// last read the clock to look for a due timer between two direct
    /// switches (see `direct::timer_may_be_due`).
    timer_clock: Cell<(u64, u64)>,
    /// Freed spawn cells kept for this M's next spawns (see `cell_cache`).
    pub(super) cells: UnsafeCell<super::cell_cache::CellCache>,
}

mod direct;

thread_local! {
    static CURRENT: Cell<*const M> = const { Cell::new(std::ptr::null()) };
}

/// The M running on this OS thread, or null.
///
/// Never inlined: a green thread can resume on another OS thread after any
/// switch, and an inlined thread-local access could let the compiler reuse
/// a TLS address computed before the switch.
#[inline(never)]
fn current() -> *const M {
    CURRENT.with(|c| c.get())
}

/// This thread's M, if the thread is one of a runtime's Ms: the one home
/// of "load CURRENT, check for null, dereference" (async-signal-safe).
///
/// `'static` stands for "while this M lives", which outlasts every caller:
/// CURRENT is set only while `m_main`'s M is alive and cleared before it
/// goes, and its callers run on this thread inside `m_main` (runtime code,
/// the M's green threads, or a signal handler interrupting either). `M` is
/// not `Sync`, so the reference cannot leave the thread.
pub(crate) fn current_m() -> Option<&'static M> {
    // SAFETY: a non-null CURRENT points at the M living on this thread
    // (see above for why it outlives the reference).
    unsafe { current().as_ref() }
}

/// The running G of this thread, or null (async-signal-safe: the TLS slot
/// is const-initialised and has no destructor).
#[inline]
pub(crate) fn current_g_raw() -> *const G {
    current_m().map_or(std::ptr::null(), |m| m.curg.get())
}

/// Body of every M thread. Without a P (a spare M, see `Shared::ensure_spares`)
/// it first waits to be handed one.
pub(crate) fn m_main(rt: Arc<Shared>, handle: Arc<MHandle>, p: Option<PPtr>, spinning: bool) {
    // Threads inherit their creator's scheduling class: never run green
    // threads at sysmon's raised one.
    crate::sys::sched_class::reset_inherited();
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
        stop_code: Cell::new(0),
        g0_sp: UnsafeCell::new(std::ptr::null_mut()),
        prev: UnsafeCell::new(None),
        handover: UnsafeCell::new(None),
        locked: Cell::new(0),
        poll_for_others: Cell::new(false),
        stamp_next: Cell::new(false),
        timer_clock: Cell::new((0, 0)),
        cells: UnsafeCell::new(Default::default()),
    };
    CURRENT.with(|c| c.set(&m));
    // Declared after `m`, so dropped before it, on every way out of here
    // (unwinding too): nothing on this thread may find a dead M.
    let _unset = UnsetCurrent;
    // See `trace::session::turn_on`: our handle is listed (before this
    // thread started); the session stores the mode, fences, walks.
    std::sync::atomic::fence(Ordering::SeqCst);
    if tracing::on(&m.rt) {
        m.handle.trace.refill();
    }
    match p {
        Some(p) => {
            m.set_p(Some(p));
            // Recorded on the P's lane, as a spin `find` starts.
            m.set_spinning_handed(spinning);
        }
        // A new spare: std's thread start-up (which allocates) is over,
        // so take a spare slot, then wait (off the idle list) for a P.
        None if !m.rt.spare_ready(&m.handle) => return,
        None => loop {
            match m.handle.wait(None, None) {
                Wake::P(p, spinning) => {
                    m.set_p(Some(p));
                    m.set_spinning_handed(spinning);
                    break;
                }
                _ if m.rt.is_shutdown() => return,
                _ => {}
            }
        },
    }
    while let Some(g) = m.find_runnable() {
        m.execute(g);
    }
}

/// Clears CURRENT as `m_main` ends: its M goes right after.
struct UnsetCurrent;

impl Drop for UnsetCurrent {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }
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
        // SAFETY: `cur` is only written by this M's thread (in `execute`),
        // and the caller is on it: no write can race this read.
        unsafe { (*self.cur.get()).clone() }
    }

    /// Takes or gives up P ownership, keeping sysmon's view (the P's
    /// owner) and the P's busy time in step.
    pub(crate) fn set_p(&self, p: Option<PPtr>) {
        if let Some(old) = self.p.replace(p) {
            // SAFETY: we owned it until now.
            let old = unsafe { old.get() };
            super::metrics::released(&self.rt, old);
            self.rt.set_owner(old.id, std::ptr::null());
        }
        if let Some(new) = p {
            self.stamp_next.set(true);
            self.handle.retaken.store(false, Ordering::Relaxed);
            // SAFETY: it is ours now.
            let new = unsafe { new.get() };
            super::metrics::acquired(new);
            self.rt.set_owner(new.id, Arc::as_ptr(&self.handle));
            let from = new.last_m.replace(Arc::as_ptr(&self.handle));
            let retaken = new.retaken.replace(false);
            if tracing::on(&self.rt) {
                tracing::took_p(self, new, from, retaken);
            }
        }
    }

    /// Takes the spinning state an M is woken or started with (handed a
    /// P by `wakep`, which counted it in `nmspinning`); a trace records
    /// the spin as it does one the M starts itself (`find`).
    pub(crate) fn set_spinning_handed(&self, spinning: bool) {
        if spinning && tracing::on(&self.rt) {
            tracing::spinning(self);
        }
        self.spinning.set(spinning);
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
                // SAFETY: the G came off a run queue, so this M owns it,
                // and it has no stack yet, so it has not started.
                Ok(stack) => unsafe { g.bind_stack(stack) },
                Err(e) => return self.fail_start(g, e),
            }
        }
        let p = self.p();
        // One writer (this P's owner), so load + store, no locked op.
        let tick = &self.rt.ticks[p.id];
        let t = tick.load(Ordering::Relaxed).wrapping_add(1);
        tick.store(t, Ordering::Relaxed);
        if self.stamp_next.get() {
            self.stamp_first_slice(p, t);
        }
        g.set_state(RUNNING);
        if tracing::on(&self.rt) {
            tracing::run_start(self, p, &g);
        }
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
        // SAFETY: `cur` is written only on this M's thread, and the G
        // that ran is suspended (it switched back to us): nothing races.
        let g = unsafe { (*self.cur.get()).take() }.expect("greenrt: lost the running G");
        self.finish_switched_out(g, self.request.get());
    }

    /// The first slice since this M took `p` begins now (its tick is
    /// `tick`): dated in wall-clock time only (a vDSO clock read, not the
    /// thread CPU clock's system call; a preempted G's resumption, which
    /// stamps both, is the case where the two differ most).
    #[cold]
    fn stamp_first_slice(&self, p: &super::p::P, tick: u32) {
        self.stamp_next.set(false);
        let now = crate::sys::clock::now();
        self.handle
            .stamp_slice(p.id, tick, now, super::handoff::NO_CPU);
    }

    /// Acts on the request of `g`, which has switched out (its context is
    /// saved): requeue, park or release it.
    ///
    /// Tracing: the stop is written first, before the G can be queued or
    /// woken (and then started by another M, see `tracing::run_stop`).
    fn finish_switched_out(&self, g: GRef, req: Request) {
        if tracing::on(&self.rt) {
            tracing::run_stop(self, &g, req);
        }
        self.finish_stopped(g, req);
    }

    /// `finish_switched_out` once the G's stop is recorded (if tracing).
    fn finish_stopped(&self, g: GRef, req: Request) {
        match req {
            Request::Yield => {
                g.set_state(RUNNABLE);
                self.requeue(g, false);
            }
            Request::Park => {
                if let Some(g) = G::park_owned(g) {
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
        let fail = std::panic::AssertUnwindSafe(|| g.start(Some(err)));
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

    /// Pools a finished G's stack: no system call, no allocation (see
    /// `stack::pool`).
    fn recycle_stack(&self, stack: crate::stack::Stack) {
        let Some(p) = self.p.get() else {
            self.rt.stacks.lock().put(stack);
            return;
        };
        // SAFETY: the M owns its current P.
        let p = unsafe { p.get() };
        let mut local = p.stacks.borrow_mut();
        if let Err(stack) = local.put(stack) {
            local.spill_half(&mut self.rt.stacks.lock());
            let _ = local.put(stack);
        }
        self.rt.metrics.stacks_cached(p.id, local.len());
    }

    /// Switches from the running G back to this M's scheduler context.
    ///
    /// # Safety
    /// Must be called on a G's stack (the M's `curg`).
    pub(crate) unsafe fn switch_to_scheduler(&self, req: Request) {
        self.request.set(req);
        let g = self.curg.get();
        // SAFETY: the caller runs on `g`'s stack, so `g` (this M's curg)
        // is alive and its `sp` cell is ours to save into; `g0_sp` holds
        // the scheduler's stack pointer, saved when this M switched in,
        // and only this thread touches it.
        unsafe { context::switch((*g).sp.get(), *self.g0_sp.get()) };
    }
}

/// First Rust code on a new G's stack (called from `greenrt_start`).
pub(crate) extern "C" fn g_entry(_header: *mut u8) -> ! {
    // A G that switched straight into us (`switch_direct`) waits for us to
    // finish it.
    if let Some(m) = current_m() {
        m.finish_prev();
    }
    {
        // SAFETY: on this M's thread, whose `curg` holds the G that is
        // running — us. (The M is not kept: the G may move to another.)
        let g = unsafe { current_m().expect("greenrt: g_entry off an M").current_g() }
            .expect("greenrt: g_entry off a green thread");
        // The body catches the closure's panic for the JoinHandle; a panic
        // escaping anyway (from a task-local destructor, say) must not
        // unwind into the assembly frame below us.
        let run = std::panic::AssertUnwindSafe(|| g.start(None));
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
    let m = current_m().expect("greenrt: g_entry off an M");
    // A G that exits locked unlocks: its M goes back to running others.
    m.locked.set(0);
    // SAFETY: we run on the G's stack, on this M's thread.
    unsafe { m.switch_to_scheduler(Request::Exit) };
    unreachable!("greenrt: a finished green thread was resumed")
}
