//! [`RuntimeMetrics`]: a snapshot of a runtime's scheduler counters, from
//! [`Runtime::metrics`](crate::Runtime::metrics) or, on a green thread,
//! [`metrics()`](crate::metrics()).

use std::time::Duration;

use crate::scheduler;

/// A snapshot of one runtime's scheduler: its workers (Ps), green
/// threads, queues, OS threads (Ms) and preemptions.
///
/// The methods are named as tokio's `RuntimeMetrics` where tokio has the
/// same measure. A worker's index is its P's id, `0..num_workers()`.
///
/// **Freshness.** Gauges (queue depths, live green threads, thread
/// counts, netpoll waiters) are read when the snapshot is taken. The
/// per-worker counters (`worker_*` except `worker_local_queue_depth`) are
/// batched: each worker counts in fields only it writes and publishes
/// them when its P changes hands (it goes idle, or is handed on at a
/// blocking call or a preemption) and on every 61st scheduling round, so
/// a snapshot shows a busy worker's counters as of at most 61 green-thread
/// runs ago (or as of its current green thread's start, if that one has
/// run for long). All counters are cumulative since the runtime was
/// built; subtract two snapshots for a rate.
///
/// ```
/// let rt = greenrt::Builder::new().workers(2).build().unwrap();
/// let live = rt.block_on(|| {
///     let hs: Vec<_> = (0..4).map(|i| greenrt::spawn(move || i)).collect();
///     let m = greenrt::metrics();
///     assert_eq!(m.num_workers(), 2);
///     for h in hs {
///         h.join().unwrap();
///     }
///     m.num_alive_tasks()
/// });
/// // This green thread and the four it spawned (unless some finished).
/// assert!((1..=5).contains(&live));
/// ```
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    pub(crate) elapsed: Duration,
    pub(crate) workers: Vec<WorkerMetrics>,
    pub(crate) idle_workers: usize,
    pub(crate) active_workers: usize,
    pub(crate) cpu_quota: Option<f64>,
    pub(crate) alive_tasks: usize,
    pub(crate) global_queue_depth: usize,
    pub(crate) preempted_queue_depth: usize,
    pub(crate) preemptions: u64,
    pub(crate) retakes: u64,
    pub(crate) threads: usize,
    pub(crate) idle_threads: usize,
    pub(crate) spinning_threads: usize,
    pub(crate) netpoll_waiters: usize,
    pub(crate) netpoll_polls: u64,
    pub(crate) file_ops_in_flight: usize,
    pub(crate) stacks_pooled: usize,
    pub(crate) stacks_cold: usize,
    pub(crate) stacks_mapped: usize,
    pub(crate) armed_timers: usize,
}

/// One worker's published counters and its queue's depth.
#[derive(Clone, Debug)]
pub(crate) struct WorkerMetrics {
    pub(crate) busy: Duration,
    pub(crate) parks: u64,
    pub(crate) steal_operations: u64,
    pub(crate) steals: u64,
    pub(crate) polls: u64,
    pub(crate) local_queue_depth: usize,
}

impl RuntimeMetrics {
    /// Time since the runtime was built, when the snapshot was taken.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Number of workers (Ps), parked ones included: the most green
    /// threads that can ever run at once on this runtime.
    pub fn num_workers(&self) -> usize {
        self.workers.len()
    }

    /// Workers that may run green threads now: the CPU limit. All of
    /// them ([`num_workers`](Self::num_workers)) unless the worker count
    /// follows the process's CPU quota (the default; see
    /// [`Builder::workers`](crate::Builder::workers)), where the workers
    /// `num_active_workers()..num_workers()` are parked until the quota
    /// grows. Equals [`Runtime::workers`](crate::Runtime::workers) at the
    /// time of the snapshot.
    pub fn num_active_workers(&self) -> usize {
        self.active_workers
    }

    /// The CPU quota the limit was last computed from, in CPUs (quota
    /// over period: `Some(1.5)` for `cpu.max` = `150000 100000`), or
    /// None when no cgroup limits the process, the quota could not be
    /// read, or the worker count is fixed (`Builder::workers`,
    /// `GREENRT_WORKERS`), which reads none.
    pub fn cpu_quota(&self) -> Option<f64> {
        self.cpu_quota
    }

    /// Active workers whose P is idle (no OS thread holds it: nothing to
    /// run). Parked workers are not counted.
    pub fn num_idle_workers(&self) -> usize {
        self.idle_workers
    }

    /// Live green threads: spawned and not yet finished — running,
    /// runnable, parked, preempted, or not yet started. A `block_on`
    /// (or `run`) root counts while it runs, and so does the green
    /// thread taking the snapshot. One that just finished may still count
    /// for a moment after its `join` returned (it leaves when its worker
    /// has switched away from it).
    pub fn num_alive_tasks(&self) -> usize {
        self.alive_tasks
    }

    /// Green threads in the global run queue (spawns from outside the
    /// runtime, wake-ups off a worker, local-queue overflow).
    pub fn global_queue_depth(&self) -> usize {
        self.global_queue_depth
    }

    /// Preempted green threads waiting for a worker. They are in neither
    /// run queue: each keeps its OS thread (see the README's
    /// "Preemption"), and a worker hands its P to the longest-waiting one
    /// when its local queue runs dry, or every 61st round.
    pub fn preempted_queue_depth(&self) -> usize {
        self.preempted_queue_depth
    }

    /// Total time an OS thread held `worker`'s P: running green threads,
    /// or between them and looking for work (stealing, polling), as tokio
    /// counts a worker busy while it is not parked. Never more than
    /// [`elapsed`](Self::elapsed). Batched (see the type's docs).
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_total_busy_duration(&self, worker: usize) -> Duration {
        self.workers[worker].busy
    }

    /// Times `worker`'s P found no work anywhere and went idle (its OS
    /// thread then parks, or waits in the netpoller). Batched.
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_park_count(&self, worker: usize) -> u64 {
        self.workers[worker].parks
    }

    /// Green threads `worker` took from other workers' queues (counting
    /// the one it ran at once). Batched.
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_steal_count(&self, worker: usize) -> u64 {
        self.workers[worker].steals
    }

    /// Successful steals by `worker` (each takes about half of the
    /// victim's queue). Batched.
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_steal_operations(&self, worker: usize) -> u64 {
        self.workers[worker].steal_operations
    }

    /// Green-thread runs on `worker`: each time one was switched to,
    /// including a preempted one resumed. Batched.
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_poll_count(&self, worker: usize) -> u64 {
        self.workers[worker].polls
    }

    /// Green threads in `worker`'s local run queue now (not counting its
    /// one-slot "next" slot).
    ///
    /// # Panics
    /// If `worker >= num_workers()`.
    pub fn worker_local_queue_depth(&self, worker: usize) -> usize {
        self.workers[worker].local_queue_depth
    }

    /// Green threads preempted on this runtime (stopped by SIGURG after
    /// their quantum), counted when the preemption path queues them.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Workers retaken from OS threads stuck in a system call (handed to
    /// another OS thread, see the README's "Preemption").
    pub fn retakes(&self) -> u64 {
        self.retakes
    }

    /// OS threads (Ms) the runtime has started to run green threads
    /// (sysmon and its errand thread are not counted).
    pub fn num_threads(&self) -> usize {
        self.threads
    }

    /// Ms parked without a P: on the idle list, or kept as spares for
    /// the preemption path.
    pub fn num_idle_threads(&self) -> usize {
        self.idle_threads
    }

    /// Ms spinning: holding a P and looking for work to steal.
    pub fn num_spinning_threads(&self) -> usize {
        self.spinning_threads
    }

    /// Green threads parked in the netpoller now, waiting for an fd to
    /// become ready or for a file operation to complete. The netpoller
    /// is shared by every runtime of the process, so this is too.
    pub fn netpoll_waiters(&self) -> usize {
        self.netpoll_waiters
    }

    /// Calls to epoll_wait the netpoller has made so far, blocking or not,
    /// over every runtime of the process (the netpoller is shared). With
    /// a request counter of your own it gives the polls per request: a
    /// worker that runs out of work polls once, and under load one poll
    /// brings in many ready sockets.
    pub fn netpoll_polls(&self) -> u64 {
        self.netpoll_polls
    }

    /// File operations queued on or submitted to the io_uring rings and
    /// not yet completed (with any cancellation requests). Process-wide,
    /// like the rings.
    pub fn file_ops_in_flight(&self) -> usize {
        self.file_ops_in_flight
    }

    /// Free green-thread stacks this runtime keeps mapped for reuse: in
    /// its workers' caches and its pool. A finished green thread's stack
    /// goes there and a new one takes it back (the most recently freed
    /// first), without a system call. The pool holds what the workload
    /// freed — up to its peak of live green threads — and is trimmed
    /// over time from a background thread: stacks that sat unused for a
    /// second, beyond the larger of 1 024 and a quarter of the live green
    /// threads, are released with `MADV_FREE`
    /// (counted in [`stacks_cold`](Self::stacks_cold)), and unmapped
    /// after another second unused.
    pub fn stacks_pooled(&self) -> usize {
        self.stacks_pooled
    }

    /// Of [`stacks_pooled`](Self::stacks_pooled), those released with
    /// `MADV_FREE`: still mapped, their pages the kernel's to reclaim
    /// under memory pressure (until then still counted in the process's
    /// resident set); unmapped if they stay unused.
    pub fn stacks_cold(&self) -> usize {
        self.stacks_cold
    }

    /// Green-thread stacks mapped in the process now: those of live
    /// green threads plus the pooled ones. Process-wide (every runtime's
    /// stacks), like [`netpoll_waiters`](Self::netpoll_waiters).
    pub fn stacks_mapped(&self) -> usize {
        self.stacks_mapped
    }

    /// Timers armed on the runtime's workers now: one per green thread
    /// in a `sleep` or a timed wait (`recv_timeout`, `wait_timeout`,
    /// `join_timeout`, a socket timeout). A wait that ends early disarms
    /// its timer, so this counts only waits still in progress.
    pub fn armed_timers(&self) -> usize {
        self.armed_timers
    }
}

/// The metrics of the runtime the calling green thread runs on.
///
/// # Panics
/// When called outside a green thread (use
/// [`Runtime::metrics`](crate::Runtime::metrics) there).
pub fn metrics() -> RuntimeMetrics {
    let Some(rt) = scheduler::current_runtime() else {
        panic!(
            "greenrt::metrics called outside a green thread (use Runtime::metrics, or call it \
             from greenrt::run or Runtime::block_on)"
        );
    };
    scheduler::metrics_snapshot(&rt)
}
