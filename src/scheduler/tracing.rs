//! The scheduler's side of tracing (see `crate::trace`): where the
//! records are written. Every hook is called behind one relaxed load of
//! the runtime's recording mode (`on`, `mode`), and the bodies are cold
//! and never inlined (but for the direct switch's record, inlined at the
//! end of `switch_direct`, see `switched`), so with tracing off a
//! scheduling point costs a load and a predictable branch.
//!
//! Which buffer a record goes to follows the thread writing it: an M's
//! own (in its handle), sysmon's, or the runtime's locked one for every
//! other thread. A green thread writes under a no-preempt scope, so the
//! preemption path, which writes to the same M's buffer, can never
//! interrupt a half-written record; the signal handler writes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::g::G;
use super::handoff::MHandle;
use super::m::{current_m, Request, M};
use super::p::P;
use super::shared::Shared;
use crate::trace::{self, stop_code, Kind, Word3, NO_P};

pub(crate) use crate::trace::{MODE_FLIGHT, MODE_OFF};

/// The runtime's recording mode (`MODE_OFF`, ...): one relaxed load.
#[inline(always)]
pub(crate) fn mode(rt: &Shared) -> u8 {
    rt.trace.mode.load(Ordering::Relaxed)
}

/// Whether `rt` records (the one check on every hot path).
#[inline(always)]
pub(crate) fn on(rt: &Shared) -> bool {
    rt.trace.on()
}

fn record(kind: Kind, g: u64, arg: u64, p: u16, seq: u32) -> [u64; 4] {
    [trace::ticks(), g, arg, Word3::pack(kind, p, seq)]
}

/// A start or stop record: `mark` is the P's (see `P::trace_mark`).
#[inline(always)]
fn marked_record(kind: Kind, g: u64, arg: u64, mark: u64) -> [u64; 4] {
    [trace::ticks(), g, arg, Word3::with_mark(kind, mark)]
}

/// Appends a record to this thread's buffer for `rt`.
fn emit(rt: &Shared, kind: Kind, g: u64, arg: u64, p: u16) {
    // Not preempted half-way: the preemption path writes to this M's
    // buffer too, and a G preempted holding the lock of the runtime's
    // shared buffer would stall every thread that wants it.
    let _np = crate::preempt::no_preempt();
    match current_m() {
        Some(m) if std::ptr::eq(&*m.rt, rt) => {
            let p = if p == NO_P { m_p(m) } else { p };
            // SAFETY: this M's thread owns its writer; the scope above
            // keeps the preemption path out, and no handler writes.
            unsafe {
                m.handle
                    .trace
                    .push(record(kind, g, arg, p, 0), flight(rt), &rt.trace.retired)
            };
        }
        _ => rt.trace.push_other(record(kind, g, arg, p, 0)),
    }
}

fn flight(rt: &Shared) -> bool {
    rt.trace.flight()
}

fn m_p(m: &M) -> u16 {
    m.p.get()
        // SAFETY: only the id of the M's own P is read.
        .map_or(NO_P, |p| unsafe { p.get() }.id as u16)
}

/// A start or stop on P `p`, numbered in the P's order.
///
/// Called by the P's owner, on its scheduler stack or with preemption
/// held off (the preemption path, a blocking section).
fn run_mark(m: &M, p: &P, kind: Kind, g: u64, arg: u64) {
    let mark = Word3::next_mark(p.trace_mark.get());
    p.trace_mark.set(mark);
    // SAFETY: see `emit`; the callers keep the preemption path out.
    unsafe {
        m.handle.trace.push(
            marked_record(kind, g, arg, mark),
            flight(&m.rt),
            &m.rt.trace.retired,
        )
    };
}

/// `execute` is about to switch into `g` on `p` (on the scheduler stack,
/// where allocating is fine: the buffers are refilled here).
#[cold]
#[inline(never)]
pub(super) fn run_start(m: &M, p: &P, g: &G) {
    if m.handle.trace.needs_refill() {
        refill(m);
    }
    m.handle.trace.running.store(g.id, Ordering::Relaxed);
    // On the scheduler stack, where no preemption path runs.
    run_mark(m, p, Kind::Start, g.id, 0);
}

/// Gives this M's writer, and sysmon's (which cannot allocate), buffers.
#[cold]
#[inline(never)]
fn refill(m: &M) {
    m.handle.trace.refill();
    m.rt.trace.sysmon.refill();
}

/// `g` switched back to `execute` to yield, park or exit: its stop is
/// written now, before it is queued again or woken (after that another
/// M may start it on another P, and its stop must come first).
#[cold]
#[inline(never)]
pub(super) fn run_stop(m: &M, g: &G, req: Request) {
    let Some(p) = m.p.get() else {
        // Its P went on while it blocked: its run on it already ended.
        return;
    };
    // SAFETY: the M owns its P.
    run_mark(
        m,
        unsafe { p.get() },
        Kind::Stop,
        g.id,
        stop_code_of(m, g, req),
    );
}

/// Why `g` stopped, asking for `req`.
fn stop_code_of(m: &M, g: &G, req: Request) -> u64 {
    match req {
        Request::Yield => stop_code::YIELD,
        Request::Park => u64::from(m.stop_code.get()),
        Request::Exit if g.is_cancelled() => stop_code::CANCELLED,
        Request::Exit => stop_code::EXIT,
    }
}

/// The G in `m.prev` (stopping with its request there) switched straight
/// into the G now running on this M (`M::switch_direct`): its stop and
/// the new G's start as one record, the cost of one. Called by the new G in `finish_prev`,
/// under the no-preempt count lent to it, before `prev` can be queued or
/// woken.
#[inline(always)]
pub(super) fn switched(m: &M, prev: &G, flight: bool) {
    // SAFETY: `switch_direct` runs only on an M with a P, which it keeps
    // (nothing in between can take it); the M owns its P.
    let p = unsafe { m.p.get().unwrap_unchecked().get() };
    // Everything is read before the first store: the compiler cannot
    // tell the stores from writes to the M's and P's cells, and would
    // load those again after each.
    // SAFETY: `switch_direct` set curg to the G it is switching into,
    // which it owns (alive: `m.cur` holds it).
    let (next, prev) = (unsafe { (*m.curg.get()).id }, prev.id);
    let writer = &m.handle.trace;
    let retired = &m.rt.trace.retired;
    // Only yields and parks switch directly (an exit goes through the
    // scheduler), and `switch_out` left their stop code.
    let code = u64::from(m.stop_code.get());
    let arg = trace::SwitchArg::pack(prev, code);
    // Two marks of the P's order: the stop's, then the start's.
    let mark = Word3::next_mark(p.trace_mark.get());
    let record = marked_record(Kind::Switch, next, arg, mark);
    p.trace_mark.set(Word3::next_mark(mark));
    writer.running.store(next, Ordering::Relaxed);
    // SAFETY: see `emit`; the lent count keeps the preemption path out.
    unsafe { writer.push(record, flight, retired) };
}

/// The preemption path stops the running G on its P (before handing the
/// P on). Allocation-free and lock-free.
#[cold]
#[inline(never)]
pub(super) fn preempted(m: &M, g: &G) {
    if let Some(p) = m.p.get() {
        // SAFETY: the M owns its P (it has not handed it on yet).
        run_mark(
            m,
            unsafe { p.get() },
            Kind::Stop,
            g.id,
            stop_code::PREEMPTED,
        );
    }
}

/// The running G resumes on the M's (new) P: after a preemption, or
/// back from a blocking section. Allocation-free and lock-free.
#[cold]
#[inline(never)]
pub(super) fn resumed(m: &M, g: &G) {
    if let Some(p) = m.p.get() {
        m.handle.trace.running.store(g.id, Ordering::Relaxed);
        // SAFETY: the M owns its P.
        run_mark(m, unsafe { p.get() }, Kind::Start, g.id, 0);
    }
}

/// The running G enters a blocking section and hands its P on.
#[cold]
#[inline(never)]
pub(super) fn syscall(m: &M) {
    let g = m.curg.get();
    // SAFETY: a non-null curg is the G running here (the caller).
    if let (Some(g), Some(p)) = (unsafe { g.as_ref() }, m.p.get()) {
        // SAFETY: the M owns its P.
        run_mark(m, unsafe { p.get() }, Kind::Stop, g.id, stop_code::SYSCALL);
    }
}

/// M `m` took P `p`, last held by `from`, which (if `retaken`) lost it
/// to a retake while blocked: the handler that retook it records
/// nothing, so the taker records the retake, then the hand-off.
#[cold]
#[inline(never)]
pub(super) fn took_p(m: &M, p: &P, from: *const MHandle, retaken: bool) {
    if retaken {
        emit(&m.rt, Kind::Retake, 0, from as u64, p.id as u16);
    }
    if !std::ptr::eq(from, Arc::as_ptr(&m.handle)) {
        emit(&m.rt, Kind::Handoff, 0, from as u64, p.id as u16);
    }
}

/// `g` was spawned (by the running green thread, if any).
#[cold]
#[inline(never)]
pub(super) fn created(rt: &Shared, g: &G) {
    // The names' lock is not held across a preemption (see `emit`).
    let _np = crate::preempt::no_preempt();
    if let Some(name) = &g.name {
        rt.trace.name(g.id, name);
    }
    emit(rt, Kind::Created, g.id, parent_arg(), NO_P);
}

fn parent_arg() -> u64 {
    super::with_current_g(|g| g.map_or(0, |g| g.id + 1))
}

/// `g` was made runnable by the caller (a green thread or the scheduler).
#[cold]
#[inline(never)]
pub(super) fn runnable(g: &G) {
    emit(&g.rt, Kind::Runnable, g.id, parent_arg(), NO_P);
}

/// A poll made `n` green threads runnable (then each is `runnable`).
#[cold]
#[inline(never)]
pub(super) fn netpolled(m: &M, n: usize) {
    emit(&m.rt, Kind::Netpoll, 0, n as u64, NO_P);
}

/// A poll by a thread without a P (see `scheduler::inject_polled`) made
/// `n` of `rt`'s green threads runnable.
#[cold]
#[inline(never)]
pub(super) fn polled(rt: &Shared, n: usize) {
    emit(rt, Kind::Netpoll, 0, n as u64, NO_P);
}

/// The M started spinning.
#[cold]
#[inline(never)]
pub(super) fn spinning(m: &M) {
    emit(&m.rt, Kind::Spinning, 0, 0, NO_P);
}

/// The M found no work and goes idle.
#[cold]
#[inline(never)]
pub(super) fn idle(m: &M) {
    emit(&m.rt, Kind::Idle, 0, 0, NO_P);
}

/// sysmon signalled `m` (to preempt its green thread or retake its P). sysmon
/// writes to its own buffer: no lock, no allocation.
#[cold]
#[inline(never)]
pub(super) fn signalled(rt: &Shared, m: &MHandle) {
    let g = m.trace.running.load(Ordering::Relaxed);
    let h = m as *const MHandle as u64;
    // Whether the handler then retakes the P is its decision: the M that
    // takes the P records a retake (`took_p`).
    rt.trace.push_sysmon(record(Kind::SigUrg, g, h, NO_P, 0));
}
