//! Preemption: no green thread can keep the others from running.
//!
//! A green thread that computes without blocking is preempted once it has
//! held its worker for a quantum, as in Go. The quantum is
//! [`DEFAULT_QUANTUM`] (10 ms), set per runtime with
//! [`Builder::preempt_quantum`](crate::Builder::preempt_quantum) (at least
//! [`MIN_QUANTUM`]); preemption is on by default and off with
//! [`Builder::preemption(false)`](crate::Builder::preemption) or
//! `GREENRT_PREEMPT=off`. A monitor thread sends the green thread's OS
//! thread a signal (SIGURG); the green thread stops at the interrupted
//! instruction with every register saved, and its worker goes on with the
//! other green threads. When its turn comes again it resumes exactly where
//! it was. The code needs no cooperation: a loop with no call in it is
//! preempted like any other. Preemption costs one signal per quantum per
//! busy worker.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! // Two CPU hogs on one worker: preempted, they take turns, so both
//! // make progress instead of the first running to its end.
//! let rt = greenrt::Builder::new()
//!     .workers(1)
//!     .preempt_quantum(Duration::from_millis(1))
//!     .build()
//!     .unwrap();
//! let before = greenrt::preempt::stats();
//! rt.block_on(|| {
//!     let hogs: Vec<_> = (0..2)
//!         .map(|_| {
//!             greenrt::spawn(|| {
//!                 let start = Instant::now();
//!                 let mut spins = 0u64;
//!                 while start.elapsed() < Duration::from_millis(20) {
//!                     spins = spins.wrapping_add(1);
//!                 }
//!                 spins
//!             })
//!         })
//!         .collect();
//!     for hog in hogs {
//!         hog.join().unwrap();
//!     }
//! });
//! assert!(greenrt::preempt::stats().since(&before).preemptions >= 1);
//! ```
//!
//! # What is not preempted
//!
//! - **Code outside the main executable.** Only the program's own machine
//!   code is interrupted, never libc, the dynamic loader, the vDSO or
//!   another shared library (their locks, caches and `errno` are not
//!   greenrt's to interrupt). A green thread computing inside a shared
//!   library runs on until it returns to the program's code; greenrt asks
//!   again, a short grace period apart, then less and less often.
//! - **No-preemption sections.** [`disable`] returns a [`PreemptGuard`]
//!   that defers preemption of the current green thread until it drops
//!   (guards nest): for timing-critical code or code that must not be
//!   interrupted. Blocking greenrt calls inside the section still switch
//!   to other green threads. greenrt's own runtime code is never
//!   preempted either.
//! - **Allocator calls under [`NoPreempt`].** A global allocator in the
//!   executable that takes a lock can make other green threads wait for a
//!   preempted holder; wrapping it in [`NoPreempt`] keeps preemption out of
//!   every allocator call (glibc's malloc, in libc, needs nothing).
//!
//! A green thread blocked in a system call (a blocking read, a std
//! `Mutex`, `std::thread::sleep`) is not preempted but has its worker
//! taken after a grace period and given to another OS thread, so the
//! worker's other green threads keep running.
//!
//! # OS threads and thread-keyed state
//!
//! A preempted green thread keeps its OS thread until it runs again;
//! meanwhile its worker continues on another OS thread. So
//! `thread_local!` borrows, std's stdout lock and the allocator's
//! per-thread state that it held when interrupted stay valid, and nothing
//! else runs on that OS thread. The price: many preempted green threads
//! mean as many OS threads, mostly parked.
//!
//! A *blocking greenrt call* (`sleep`, `join`, a channel or lock that
//! waits, socket or file I/O) is different: the green thread parks, its
//! OS thread runs other green threads, and it may resume on another OS
//! thread. A lock keyed on the OS thread and held across such a call —
//! std's stdout and stderr locks (`io::stdout().lock()`, a
//! `ReentrantLock`), recursive pthread mutexes, anything that compares
//! `thread::current().id()` — then takes the other green threads on that
//! OS thread for its owner and lets them straight in, and may be released
//! from an OS thread that never took it. Do not hold such a lock across a
//! blocking greenrt call; use [`task_local!`](crate::task_local) rather than
//! `thread_local!` for state that must follow the green thread.
//!
//! # Counters
//!
//! [`stats`] returns process-wide counters (all runtimes): green threads
//! preempted, workers retaken from OS threads stuck where they could not
//! be preempted, signals sent; [`Stats::since`] gives the increase between
//! two readings. Per-runtime figures are in
//! [`Runtime::metrics`](crate::Runtime::metrics).

// How it works (docs/DESIGN.md, "Preemption: SIGURG and the trampoline"
// and "The preemption path", has the whole story):
// Signal-based asynchronous preemption (Go's model, adapted to Rust): the
// scheduler's other half. sysmon (`scheduler::sysmon`) watches every P;
// when one G has held its P longer than the quantum it sends SIGURG
// (rt_tgsigqueueinfo with greenrt's tag, one pending per M) to that M.
//
// - `signal`: the handler preempts only at a safe point (a G runs, its
//   no-preempt count is zero, the instruction is in the main executable's
//   text, there is room on its stack) by rewriting the interrupted
//   context to "call" the trampoline (`asm/x86_64/preempt.S`). Otherwise
//   the request stays pending; if sysmon escalates to a retake and the M
//   is blocked in a system call, the handler gives its P to a spare M
//   instead (blocking hand-off).
// - `trampoline`: saves every register and the XSAVE state, and parks:
//   the preempted G keeps its OS thread (thread-locals, std's reentrant
//   locks and the allocator's per-thread state stay consistent), its P
//   goes to a spare M, and when the G's turn comes its M gets a P back.
// - `guard`, `no_preempt`, `alloc`, `critical`: holding preemption off
//   (the public guard, the runtime's own scopes, the allocator wrapper)
//   and marking the critical path.
// - `text`: where the main executable's code lies.
//
// The preemption path neither allocates nor takes a lock the interrupted
// code could hold: futexes, atomics and intrusive queues only.

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
