//! Signal-based asynchronous preemption (Go's model, adapted to Rust): the
//! scheduler's other half. sysmon (`scheduler::sysmon`) watches every P;
//! when one G has held its P longer than the quantum it sends SIGURG
//! (rt_tgsigqueueinfo with greenrt's tag, one pending per M) to that M.
//!
//! - `signal`: the handler preempts only at a safe point (a G runs, its
//!   no-preempt count is zero, the instruction is in the main executable's
//!   text, there is room on its stack) by rewriting the interrupted
//!   context to "call" the trampoline (`asm/x86_64/preempt.S`). Otherwise
//!   the request stays pending; if sysmon escalates to a retake and the M
//!   is blocked in a system call, the handler gives its P to a spare M
//!   instead (blocking hand-off).
//! - `trampoline`: saves every register and the XSAVE state, and parks:
//!   the preempted G keeps its OS thread (thread-locals, std's reentrant
//!   locks and the allocator's per-thread state stay consistent), its P
//!   goes to a spare M, and when the G's turn comes its M gets a P back.
//! - `guard`, `no_preempt`, `alloc`, `critical`: holding preemption off
//!   (the public guard, the runtime's own scopes, the allocator wrapper)
//!   and marking the critical path.
//! - `text`: where the main executable's code lies.
//!
//! The preemption path neither allocates nor takes a lock the interrupted
//! code could hold: futexes, atomics and intrusive queues only.

mod alloc;
mod critical;
mod guard;
mod no_preempt;
mod signal;
mod text;
mod trampoline;

use std::time::Duration;

pub use alloc::NoPreempt;
pub use critical::in_critical_path;
pub(crate) use critical::Critical;
pub use guard::PreemptGuard;
pub(crate) use no_preempt::NoPreemptScope;
pub(crate) use signal::send_preempt_signal;
pub(crate) use trampoline::{count_direct_handoff, count_signal};

/// Default preemption quantum.
pub const DEFAULT_QUANTUM: Duration = Duration::from_millis(10);
/// Smallest quantum accepted by `Builder::preempt_quantum`.
pub const MIN_QUANTUM: Duration = Duration::from_micros(100);

/// Defers preemption of the current green thread until the guard drops,
/// for code that must not be interrupted (timing-critical sections, FFI
/// that is not reentrant). Blocking runtime calls still switch. The guard
/// must be dropped by the green thread that made it (see [`PreemptGuard`]).
///
/// ```
/// greenrt::run(|| {
///     let _guard = greenrt::preempt::disable();
///     // not preempted here
/// });
/// ```
pub fn disable() -> PreemptGuard {
    PreemptGuard::new()
}

/// The runtime's own no-preemption section (see [`NoPreemptScope`]).
#[inline(always)]
pub(crate) fn no_preempt() -> NoPreemptScope {
    NoPreemptScope::new()
}

/// Process-wide set-up: signal handler and XSAVE area size. Returns false
/// if this CPU or OS cannot support preemption (then it stays off).
pub(crate) fn init() -> bool {
    trampoline::init() && signal::install()
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Green threads preempted (context rewritten and parked).
    pub preemptions: u64,
    /// Ps retaken from Ms stuck where they could not be preempted.
    pub retakes: u64,
    /// SIGURGs sent by sysmon.
    pub signals: u64,
    /// Preemptions whose P went straight to the M of the next preempted
    /// green thread (one thread wake-up) rather than to a spare M.
    pub direct_handoffs: u64,
}

impl Stats {
    /// What the counters grew by since `earlier` (an older reading).
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            preemptions: self.preemptions - earlier.preemptions,
            retakes: self.retakes - earlier.retakes,
            signals: self.signals - earlier.signals,
            direct_handoffs: self.direct_handoffs - earlier.direct_handoffs,
        }
    }
}

/// Process-wide preemption counters (all runtimes), for tests and
/// benchmarks.
pub fn stats() -> Stats {
    trampoline::counters()
}
