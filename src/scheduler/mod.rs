//! The M:N scheduler: Gs (green threads) run on Ms (OS threads) that hold
//! Ps (scheduling contexts with run queues). See docs/DESIGN.md.

mod blocking;
pub(crate) mod cell_cache;
mod chores;
mod cpu_limit;
mod find;
mod g;
mod handoff;
mod idle;
pub(crate) mod locked;
#[cfg(all(test, loom))]
mod loom_park_tests;
#[cfg(all(test, loom))]
mod loom_tests;
mod m;
mod metrics;
mod p;
mod panic_hook;
pub(crate) mod park;
mod park_state;
mod preempt_path;
mod preempted;
mod registry;
mod runtime;
mod schedtrace;
mod shared;
mod shutdown;
mod spares;
mod stack_overflow;
mod sysmon;
mod timers;
pub(crate) mod tracing;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub(crate) use crate::trace::BlockReason;
pub(crate) use blocking::BlockingSection;
pub(crate) use g::{GBodyVTable, GRef, G};
pub(crate) use handoff::RETAKE;
pub(crate) use m::Request;
pub(crate) use metrics::snapshot as metrics_snapshot;
pub(crate) use preempt_path::{preempt_park, signal_target};
pub use runtime::{run, Builder, Runtime, DEFAULT_SHUTDOWN_TIMEOUT, MAX_WORKERS};
pub(crate) use shared::Shared;
pub(crate) use timers::add_timer;

/// Makes a runnable G (just unparked) eligible to run: into the current P's
/// LIFO slot when called on one of its runtime's Ms, else into the global
/// queue. Wakes an idle M if there is one to spare.
pub(crate) fn ready(g: GRef) {
    let m = m::current_m();
    // Runtime code: never preempted (it touches the P and runtime locks).
    let _np = crate::preempt::NoPreemptScope::for_g(m.map_or(std::ptr::null(), |m| m.curg.get()));
    if tracing::on(&g.rt) {
        tracing::runnable(&g);
    }
    if let Some(m) = m {
        if m.has_p() && Arc::ptr_eq(&m.rt, &g.rt) {
            m.p().put(g, true, &m.rt.injector);
            // The G is on our own P, which this M runs: no wake-up can be
            // lost, so only parallelism is at stake, and `wakep`'s fence
            // (a serialising instruction on every wake-up) is not needed
            // to decide whether an idle P could take work (Go's `ready`
            // reads `npidle` and `nmspinning` the same way).
            if m.rt.npidle.load(Relaxed) != 0 && m.rt.nmspinning.load(Relaxed) == 0 {
                m.rt.wakep();
            }
            return;
        }
    }
    let rt = g.rt.clone();
    rt.injector.push(g);
    rt.wakep();
}

/// Queues Gs made runnable off any P (the netpoller's ready list, Go's
/// injectglist) on their runtimes' global queues, waking idle Ms for them.
pub(crate) fn inject(gs: impl IntoIterator<Item = GRef>) {
    for g in gs {
        if tracing::on(&g.rt) {
            tracing::runnable(&g);
        }
        let rt = g.rt.clone();
        rt.injector.push(g);
        rt.wakep();
    }
}

/// `inject` for the green threads a netpoll made runnable, on a thread
/// without a P for them (the errand thread's stale-poll check, an idle M
/// woken from the poller): records the poll in each runtime's trace
/// first, as `run_polled` does on an M with a P.
pub(crate) fn inject_polled(gs: park::ReadyList) {
    let mut rest = &gs[..];
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|g| Arc::ptr_eq(&g.rt, &first.rt))
            .count();
        if tracing::on(&first.rt) {
            tracing::polled(&first.rt, n);
        }
        rest = &rest[n..];
    }
    inject(gs);
}

/// Lists a new G in its runtime's registry (so shutdown can cancel it);
/// one spawned while the runtime shuts down is born cancelled.
pub(crate) fn register(rt: &Arc<Shared>, g: &GRef) {
    let hint = current_p_id().unwrap_or(g.id as usize);
    rt.registry.insert(g, hint);
    if tracing::on(rt) {
        tracing::created(rt, g);
    }
    // SeqCst on both sides (here and `Shared::cancel_all`): either the
    // canceller's snapshot lists this G or we see `cancelling`.
    if rt.cancelling.load(std::sync::atomic::Ordering::SeqCst) {
        g.cancel();
    }
}

/// Gives up every G in `rt`'s global queue (after it stopped).
pub(crate) fn abandon_global_queue(rt: &Arc<Shared>) {
    while let crossbeam_deque::Steal::Success(g) = rt.injector.steal() {
        rt.abandon_queued(g);
    }
}

/// The running green thread, if the caller is one.
pub(crate) fn current_g() -> Option<GRef> {
    let m = m::current_m()?;
    // SAFETY: on this M's thread.
    unsafe { m.current_g() }
}

/// Runs `f` with the running G, without touching its reference count.
pub(crate) fn with_current_g<R>(f: impl FnOnce(Option<&G>) -> R) -> R {
    let g = m::current_g_raw();
    // SAFETY: a non-null pointer is this M's running G, which its
    // M's `cur` reference keeps alive while it runs; the borrow does not
    // outlive this call, during which the G keeps running on this thread.
    f(unsafe { g.as_ref() })
}

/// The runtime of the running green thread.
pub(crate) fn current_runtime() -> Option<Arc<Shared>> {
    m::current_m().map(|m| m.rt.clone())
}

/// True on a green thread.
pub(crate) fn in_green_thread() -> bool {
    !m::current_g_raw().is_null()
}

/// Whether blocking should switch green threads (true) or block the OS
/// thread (false). std keeps its panic count per OS thread: a green thread
/// that blocks while unwinding must keep its thread, or other green threads
/// there would see `std::thread::panicking()` and its count would move. A
/// green thread that locked its OS thread (`task::lock_os_thread`) keeps
/// it too.
pub(crate) fn blocks_green() -> bool {
    let green = m::current_m().is_some_and(|m| !m.curg.get().is_null() && m.locked.get() == 0);
    green && !std::thread::panicking()
}

/// Switches the running G out with `req`; `reason` says what a parking
/// G waits for (for the trace: a byte stored, read only when tracing).
#[inline(always)]
#[track_caller]
fn switch_out(req: Request, what: &str, reason: BlockReason) {
    let Some(m) = m::current_m().filter(|m| !m.curg.get().is_null()) else {
        not_in_green_thread(what);
    };
    switch_out_from(m, req, reason);
}

/// `switch_out` for a caller that has looked up its M (with a running G).
#[inline(always)]
fn switch_out_from(m: &m::M, req: Request, reason: BlockReason) {
    let _np = crate::preempt::NoPreemptScope::for_g(m.curg.get());
    // A constant store where inlined (so is `reason`): the trace's stop
    // code ready for the record, which then needs no branch.
    m.stop_code.set(match req {
        Request::Park => crate::trace::block_code(reason) as u8,
        _ => crate::trace::stop_code::YIELD as u8,
    });
    // SAFETY: we are running on the M's current G, inside its no-preempt
    // scope.
    if !unsafe { m.switch_direct(req) } {
        // SAFETY: as above.
        unsafe { m.switch_to_scheduler(req) };
    }
    // Resumed, perhaps on another M, perhaps by a G that switched
    // straight into us: finish that one.
    if let Some(m) = m::current_m() {
        m.finish_prev();
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn not_in_green_thread(what: &str) -> ! {
    panic!("greenrt::{what} called outside a green thread (use greenrt::run or Runtime::block_on)")
}

/// Parks the running G until `G::unpark` (returns at once if a wake-up
/// token is pending). May return spuriously: callers re-check their
/// condition.
///
/// A cancelled G (its runtime is shutting down) unwinds from here with
/// [`crate::Cancelled`] instead of parking, and so on every later call.
#[inline(always)]
pub(crate) fn park(reason: BlockReason) {
    // One look-up of the M before the switch and one after (in
    // `switch_out_from`: we may resume on another M); the G is us.
    let Some(m) = m::current_m().filter(|m| !m.curg.get().is_null()) else {
        not_in_green_thread("park");
    };
    // SAFETY: a non-null curg is the G running here, us: alive while we
    // run, and the same G after we resume on whichever M.
    let g = unsafe { &*m.curg.get() };
    let (pending, cancelled) = (g.take_token(), g.is_cancelled());
    if cancelled {
        unwind_cancelled();
    }
    if pending {
        return;
    }
    switch_out_from(m, Request::Park, reason);
    // Resumed. The token that woke us is spent.
    g.take_token();
    if g.is_cancelled() {
        unwind_cancelled();
    }
}

/// As `park`, without unwinding a cancelled G: returns whether it is
/// cancelled (see `park::block_through_cancel`).
pub(crate) fn park_through_cancel(reason: BlockReason) -> bool {
    let pending = with_current_g(|g| g.is_some_and(|g| g.take_token()));
    if !pending {
        switch_out(Request::Park, "park", reason);
        with_current_g(|g| {
            if let Some(g) = g {
                g.take_token();
            }
        });
    }
    current_is_cancelled()
}

/// Puts the running G at the back of its P's queue and runs others. A
/// cancelled G unwinds instead (see `park`).
#[track_caller]
pub(crate) fn yield_now() {
    // One look-up of the M before the switch (and one after, in
    // `switch_out_from`: the G may resume on another M); the G is us.
    let Some(m) = m::current_m().filter(|m| !m.curg.get().is_null()) else {
        not_in_green_thread("yield_now");
    };
    // A panicking G may not switch (see `blocks_green`).
    if std::thread::panicking() {
        return std::thread::yield_now();
    }
    // SAFETY: a non-null curg is the G running here, us: alive while we
    // run, and the same G after we resume on whichever M.
    let g = unsafe { &*m.curg.get() };
    if g.is_cancelled() {
        unwind_cancelled();
    }
    if m.locked.get() != 0 {
        locked::yield_now();
    } else {
        switch_out_from(m, Request::Yield, BlockReason::Other);
    }
    if g.is_cancelled() {
        unwind_cancelled();
    }
}

/// Whether the running G (if any) has been cancelled.
pub(crate) fn current_is_cancelled() -> bool {
    with_current_g(|g| g.is_some_and(|g| g.is_cancelled()))
}

/// Unwinds the running, cancelled G with a [`crate::Cancelled`] payload
/// (without the panic hook: cancellation is not a failure). Does nothing
/// while the G is already unwinding: a second panic would abort.
#[cold]
#[inline(never)]
pub(crate) fn unwind_cancelled() {
    if !std::thread::panicking() {
        if cfg!(panic = "abort") {
            // resume_unwind would abort without a word.
            eprintln!(
                "greenrt: a green thread was cancelled by its runtime's shutdown, and \
                 cancellation unwinds, which panic = \"abort\" cannot: aborting"
            );
        }
        std::panic::resume_unwind(Box::new(crate::task::Cancelled::new()));
    }
}

/// If `addr` lies in the guard page of the G running on this thread,
/// returns its name (for the overflow report). Async-signal-safe.
pub(crate) fn guard_hit(addr: usize) -> Option<&'static [u8]> {
    let g = m::current_g_raw();
    if g.is_null() {
        return None;
    }
    // SAFETY: the running G is alive while it runs (which it does: it
    // faulted). The name is returned with 'static only for the report that
    // ends in abort().
    let g: &'static G = unsafe { &*g };
    let (lo, hi) = g.guard();
    (addr >= lo && addr < hi).then(|| g.name.as_deref().unwrap_or("<unnamed>").as_bytes())
}

/// Stacks moved from the runtime's pool into a P's cache when a spawn on
/// the P had to take one from the pool.
const STACK_REFILL: usize = 16;

/// Most stacks made at once when a P's cache and the runtime's pool have
/// none (`Stack::new_many`, carved from the runtime's `StackReserve`): a
/// P's cache's worth, their guards installed and their top pages
/// committed in one system call each. A P's batches start smaller and
/// double up to this (`StackCache::next_batch`).
const STACK_MAP_BATCH: usize = 64;

/// A stack of `size` usable bytes: from the current P's cache, the
/// runtime's pool, or a fresh mapping.
pub(crate) fn alloc_stack(rt: &Arc<Shared>, size: usize) -> std::io::Result<crate::stack::Stack> {
    let _np = crate::preempt::no_preempt();
    if let Some(m) = m::current_m() {
        if m.has_p() && Arc::ptr_eq(&m.rt, rt) {
            let p = m.p();
            let mut cache = p.stacks.borrow_mut();
            if let Some(s) = cache.take(size) {
                rt.metrics.stacks_cached(p.id, cache.len());
                return Ok(s);
            }
            let mut pool = rt.stacks.lock();
            if let Some(s) = pool.take(size) {
                // The next spawns on this P find stacks without the lock.
                cache.refill(&mut pool, size, STACK_REFILL);
                rt.metrics.stacks_cached(p.id, cache.len());
                return Ok(s);
            }
            drop(pool);
            // Green threads are starting faster than others finish: make
            // a few stacks at once, the rest for the next ones.
            let batch = cache.next_batch(STACK_MAP_BATCH);
            let s = crate::stack::Stack::new_many(size, batch, &rt.stack_reserve, |s| {
                if let Err(s) = cache.put(s) {
                    rt.stacks.lock().put(s);
                }
            });
            rt.metrics.stacks_cached(p.id, cache.len());
            return s;
        }
    }
    if let Some(s) = rt.stacks.lock().take(size) {
        return Ok(s);
    }
    crate::stack::Stack::new(size)
}

/// The running G's header, or null (for `preempt::disable`). Inlined, so
/// that only the thread-local read itself (`m::current`, never inlined)
/// is a call: every no-preempt scope starts here.
#[inline]
pub(crate) fn current_g_ptr() -> *const G {
    m::current_g_raw()
}

/// Starts an idle P's M if the current M's P has other Gs queued (so it
/// will not look at the netpoller soon).
pub(crate) fn wakep_if_local_work() {
    let Some(m) = m::current_m() else {
        return;
    };
    // Only a hint for parallelism (this M runs its queue itself after the
    // park; nothing new became runnable here, so no wake-up can be lost):
    // skip `wakep`'s fence unless a P is idle. Parking green threads pass
    // here once per wait, and the fence's RMW lands on a stack line below
    // the frame that a woken green thread would otherwise not touch.
    if m.rt.npidle.load(std::sync::atomic::Ordering::Relaxed) > 0 && m.local_work() {
        m.rt.wakep();
    }
}

/// The id of the P the calling green thread runs on (None off a green
/// thread or without a P). Only a hint: the G may move right after.
pub(crate) fn current_p_id() -> Option<usize> {
    let _np = crate::preempt::no_preempt();
    let m = m::current_m()?;
    m.has_p().then(|| m.p().id)
}
