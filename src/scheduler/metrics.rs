//! Runtime metrics, scheduler side: per-worker counters batched in the P
//! and published now and then (tokio's `MetricsBatch`), the runtime-wide
//! ones, and the snapshot [`crate::RuntimeMetrics`] is made of.
//!
//! A P's counters are plain `Cell`s in its [`Batch`], written only by the
//! M holding the P (no locked instruction per event). The batch is
//! published — every total stored, Relaxed, into the P's line of
//! [`Counters::workers`], which readers load — whenever the P changes
//! hands (it goes idle, is handed on at a blocking call or a preemption)
//! and on every 61st scheduling round of the P (`find_once`'s periodic
//! branch). The clock is read there and when an M takes a P, never per
//! green-thread switch. Busy time is time an M held the P (running green
//! threads, or looking for them), as tokio counts a worker busy while it
//! is not parked.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed},
};
use std::time::Duration;

use super::p::P;
use super::shared::{Padded, Shared};
use crate::runtime_metrics::{RuntimeMetrics, WorkerMetrics};
use crate::sys::clock;

/// One P's counters since the runtime started, kept by its owner.
#[derive(Default)]
pub(crate) struct Batch {
    /// When the current owner took the P (monotonic ns; 0: nobody holds
    /// it), or when the busy time was last published, if later.
    held_since: Cell<u64>,
    busy_ns: Cell<u64>,
    parks: Cell<u64>,
    steal_ops: Cell<u64>,
    stolen: Cell<u64>,
    polls: Cell<u64>,
    /// The P's schedule tick when the batch was last published: the
    /// rounds since then are the green-thread runs (`Shared::ticks` moves
    /// once per `execute` and once per resumed preempted G).
    last_tick: Cell<u32>,
}

/// What the batches publish, per P: cumulative totals.
#[derive(Default)]
pub(crate) struct Published {
    busy_ns: AtomicU64,
    parks: AtomicU64,
    steal_ops: AtomicU64,
    stolen: AtomicU64,
    polls: AtomicU64,
    /// Stacks in the P's cache, stored by its owner on every change (not
    /// batched: a store to a line only it writes).
    stacks_cached: AtomicUsize,
}

/// A runtime's published counters.
pub(crate) struct Counters {
    /// Indexed by P id, each in a line of its own (one writer each).
    workers: Box<[Padded<Published>]>,
    /// Preemptions and retakes: at most one per quantum and worker, so
    /// one shared RMW each (the process-wide `preempt::stats` take one
    /// too).
    preemptions: AtomicU64,
    retakes: AtomicU64,
    /// When the runtime was built (monotonic ns).
    started: u64,
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Counters {
        Counters {
            workers: (0..workers).map(|_| Padded(Published::default())).collect(),
            preemptions: AtomicU64::new(0),
            retakes: AtomicU64::new(0),
            started: clock::now(),
        }
    }

    /// A G was preempted (queued by the preemption path).
    pub(crate) fn count_preemption(&self) {
        self.preemptions.fetch_add(1, Relaxed);
    }

    /// A P was retaken from an M stuck in a system call.
    pub(crate) fn count_retake(&self) {
        self.retakes.fetch_add(1, Relaxed);
    }

    /// P `p`'s stack cache now holds `n` stacks.
    #[inline]
    pub(crate) fn stacks_cached(&self, p: usize, n: usize) {
        self.workers[p].stacks_cached.store(n, Relaxed);
    }

    /// Time since the runtime was built.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(clock::now().saturating_sub(self.started))
    }
}

impl Batch {
    /// The P gives up looking for work and goes idle.
    #[inline]
    pub(crate) fn parked(&self) {
        self.parks.set(self.parks.get() + 1);
    }

    /// A steal from another P brought `n` Gs (the one run at once
    /// included).
    #[inline]
    pub(crate) fn stole(&self, n: usize) {
        self.steal_ops.set(self.steal_ops.get() + 1);
        self.stolen.set(self.stolen.get() + n as u64);
    }
}

/// An M has just taken P `p`: its busy time starts. (Not inlined, nor is
/// `released`: `M::set_p` is inlined all over the scheduling loop.)
#[inline(never)]
pub(crate) fn acquired(p: &P) {
    p.batch.held_since.set(clock::now());
}

/// The M holding `p` gives it up (to the idle list or another M):
/// publishes the batch, the busy time up to now included.
#[inline(never)]
pub(crate) fn released(rt: &Shared, p: &P) {
    publish(rt, p);
    p.batch.held_since.set(0);
}

/// Publishes `p`'s batch (its owner calls this on every 61st round, so
/// a P that stays busy is seen moving). Cold: kept out of the scheduling
/// loop's code.
#[cold]
#[inline(never)]
pub(crate) fn publish(rt: &Shared, p: &P) {
    let b = &p.batch;
    let since = b.held_since.get();
    if since != 0 {
        let now = clock::now();
        b.busy_ns.set(b.busy_ns.get() + now.saturating_sub(since));
        b.held_since.set(now);
    }
    let tick = rt.ticks[p.id].load(Relaxed);
    b.polls
        .set(b.polls.get() + u64::from(tick.wrapping_sub(b.last_tick.get())));
    b.last_tick.set(tick);
    let out = &rt.metrics.workers[p.id];
    out.busy_ns.store(b.busy_ns.get(), Relaxed);
    out.parks.store(b.parks.get(), Relaxed);
    out.steal_ops.store(b.steal_ops.get(), Relaxed);
    out.stolen.store(b.stolen.get(), Relaxed);
    out.polls.store(b.polls.get(), Relaxed);
}

/// A snapshot of `rt`'s metrics. Takes the scheduler lock briefly (for
/// the idle-M count), so not for sysmon or the preemption path.
pub(crate) fn snapshot(rt: &Shared) -> RuntimeMetrics {
    // The idle count first, Acquire: a P's owner publishes its batch
    // before listing it idle (`M::set_p`, then `put_idle_p`'s SeqCst
    // increment), so a snapshot that counts a P idle also sees all of
    // its runs. Read after the counters, it could pair stale counters
    // with a fresh idle count (tests/metrics.rs, a snapshot showing all
    // workers idle).
    let idle_workers = rt.npidle.load(Acquire);
    let workers = rt
        .metrics
        .workers
        .iter()
        .zip(rt.stealers.iter())
        .map(|(w, stealer)| WorkerMetrics {
            busy: Duration::from_nanos(w.busy_ns.load(Relaxed)),
            parks: w.parks.load(Relaxed),
            steal_operations: w.steal_ops.load(Relaxed),
            steals: w.stolen.load(Relaxed),
            polls: w.polls.load(Relaxed),
            local_queue_depth: stealer.len(),
        })
        .collect();
    let (mut stacks_pooled, stacks_cold) = {
        // Under a no-preempt count: the pool lock blocks spawns and exits.
        let _np = crate::preempt::no_preempt();
        let pool = rt.stacks.lock();
        (pool.len(), pool.cold())
    };
    stacks_pooled += rt
        .metrics
        .workers
        .iter()
        .map(|w| w.stacks_cached.load(Relaxed))
        .sum::<usize>();
    let mut threads = 0;
    rt.for_each_m(|_| threads += 1);
    let idle_threads = {
        // A green thread calling this must not be preempted holding the
        // scheduler lock (every M looking for a P would wait behind it).
        let _np = crate::preempt::no_preempt();
        rt.sched.lock().midle.len()
    } + rt.spares.parked();
    RuntimeMetrics {
        elapsed: rt.metrics.elapsed(),
        workers,
        idle_workers,
        active_workers: rt.cpu_limit.active(),
        cpu_quota: rt.cpu_limit.quota(),
        alive_tasks: rt.registry.live(),
        global_queue_depth: rt.injector.len(),
        preempted_queue_depth: rt.preempted.len(),
        preemptions: rt.metrics.preemptions.load(Relaxed),
        retakes: rt.metrics.retakes.load(Relaxed),
        threads,
        idle_threads,
        spinning_threads: rt.nmspinning.load(Relaxed),
        netpoll_waiters: crate::netpoll::waiters(),
        netpoll_polls: crate::netpoll::polls(),
        file_ops_in_flight: crate::netpoll::uring::in_flight(),
        stacks_pooled,
        stacks_cold,
        stacks_mapped: crate::stack::mapped(),
        armed_timers: rt.armed_timers(),
    }
}
