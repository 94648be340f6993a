//! State shared by all Ms of one runtime: queues, idle lists, counters.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_deque::{Injector, Stealer, Worker};
use parking_lot::Mutex;

use super::handoff::MHandle;

use super::chores::Chores;
use super::cpu_limit::{CpuLimit, QuotaSource};
use super::g::GRef;
use super::idle::SchedState;
use super::metrics::Counters;
use super::p::{PPtr, P};
use super::preempted::PreemptedQueue;
use super::registry::Registry;
use super::spares::SpareSlots;
use super::timers::TimerQueue;
use crate::stack::{StackPool, StackReserve};
use crate::sys::sync::AtomicUsize;
use crate::sys::FutexLock;

/// Runtime settings fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    pub(crate) thread_name: String,
    /// Preemption quantum; None: no preemption.
    pub(crate) preempt: Option<std::time::Duration>,
    /// Ps that may run green threads at first (see `cpu_limit`).
    pub(crate) active: usize,
    /// The CPU quota read at build time, in CPUs.
    pub(crate) quota: Option<f64>,
    /// Where the limit's quota is re-read from (None: fixed).
    pub(crate) quota_source: Option<QuotaSource>,
}

/// Fewest spare-M slots: each preemption of a G that keeps its M takes a
/// spare, and the errand thread makes the next one (a thread start, and
/// while tracing two trace buffers faulted in: milliseconds). With one
/// slot (one worker) a quantum could end before the next spare was
/// ready, and the slice ran on until it was: round after round of new
/// green threads, each preempted for the first time, got longer turns.
const MIN_SPARES: usize = 4;

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Global run queue: spawns from outside, overflow, fairness.
    pub(crate) injector: Injector<GRef>,
    /// One per P, indexed by P id.
    pub(crate) stealers: Box<[Stealer<GRef>]>,
    /// Timers, one queue per P, indexed by P id.
    pub(crate) timers: Box<[Padded<TimerQueue>]>,
    /// Taken on the preemption path (`resume_preempted_on_idle_p`), so
    /// a `FutexLock`, not parking_lot's.
    pub(super) sched: FutexLock<SchedState>,
    pub(crate) npidle: AtomicUsize,
    pub(crate) nmspinning: AtomicUsize,
    pub(crate) shutdown: AtomicBool,
    /// Deadline the timer-watching idle M sleeps until (u64::MAX: none).
    pub(crate) watch_until: AtomicU64,
    pub(crate) stacks: Mutex<StackPool>,
    /// Address space mapped ahead for new stacks (`Stack::new_many`).
    pub(crate) stack_reserve: StackReserve,
    next_gid: AtomicU64,
    all_ps: Box<[PPtr]>,
    /// Per P, for sysmon: the schedule tick (bumped per G run) and the M
    /// holding the P (null when idle).
    pub(crate) ticks: Box<[Padded<AtomicU32>]>,
    owners: Box<[AtomicPtr<MHandle>]>,
    /// Ms parked off the idle list, ready to take a P from the preemption
    /// path without a lock (filled by sysmon's errand thread).
    pub(super) spares: SpareSlots<MHandle>,
    pub(crate) preempted: PreemptedQueue,
    /// Tells sysmon to exit (set after the Ms are gone).
    pub(crate) sysmon_stop: AtomicBool,
    /// Every M handle ever made, as an intrusive push-only list (`MHandle::
    /// next_all`), each holding one reference: handles live as long as
    /// the runtime, so the lock-free paths (sysmon, the handler, spare
    /// slots) may keep raw pointers to them. Freed in `Drop`.
    allm: AtomicPtr<MHandle>,
    /// M threads, for shutdown to join. Its own lock, apart from `sched`:
    /// starting a thread allocates, and nothing may allocate under
    /// `sched` (see `stop_m`).
    pub(super) threads: Mutex<Vec<(thread::JoinHandle<()>, Arc<MHandle>)>>,
    /// Every live G, so shutdown can cancel them.
    pub(crate) registry: Registry,
    /// Shutdown has begun: Gs are being cancelled (new ones are born
    /// cancelled). `shutdown` is set only once they are gone.
    pub(crate) cancelling: AtomicBool,
    /// Started Gs that shutdown gave up in a run queue (they never got a
    /// turn to unwind): their stacks are leaked (see `abandon_queued`).
    pub(crate) abandoned_started: AtomicUsize,
    /// Scheduler tracing: whether this runtime records, and its buffers.
    pub(crate) trace: crate::trace::RtTrace,
    /// sysmon's errands that may allocate or lock (see `chores`).
    pub(crate) chores: Chores,
    /// Published metrics (see `metrics`).
    pub(crate) metrics: Counters,
    /// How many Ps may run green threads (see `cpu_limit`).
    pub(crate) cpu_limit: CpuLimit,
}

// SAFETY: the PPtrs in `all_ps` are only dereferenced by their current
// owner (or at drop, when no M runs); everything else is Sync.
unsafe impl Sync for Shared {}
// SAFETY: moving the last `Shared` to another thread (to drop it there)
// is fine: `Drop` runs when no M is left, and frees the leaked Ps and M
// handles, which belong to no thread.
unsafe impl Send for Shared {}

impl Shared {
    pub(crate) fn new(cfg: Config) -> Arc<Shared> {
        let mut stealers = Vec::with_capacity(cfg.workers);
        let mut ps = Vec::with_capacity(cfg.workers);
        for id in 0..cfg.workers {
            let w = Worker::new_fifo();
            stealers.push(w.stealer());
            let p = Box::new(P::new(id, w));
            ps.push(PPtr(std::ptr::NonNull::from(Box::leak(p))));
        }
        let timers = (0..cfg.workers)
            .map(|_| Padded(TimerQueue::default()))
            .collect();
        let workers = cfg.workers;
        let active = cfg.active.clamp(1, workers);
        let cpu_limit = CpuLimit::new(active, cfg.quota, cfg.quota_source.clone());
        Arc::new(Shared {
            cfg,
            injector: Injector::new(),
            stealers: stealers.into_boxed_slice(),
            timers,
            sched: FutexLock::new(SchedState {
                // P 0 is taken first; Ps over the limit start parked.
                pidle: {
                    let mut pidle = Vec::with_capacity(workers);
                    pidle.extend(ps[..active].iter().rev().copied());
                    pidle
                },
                parked: {
                    let mut parked = Vec::with_capacity(workers);
                    parked.extend(ps[active..].iter().copied());
                    parked
                },
                midle: Vec::with_capacity(2 * workers + 4),
                watcher: None,
            }),
            npidle: AtomicUsize::new(active),
            nmspinning: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            watch_until: AtomicU64::new(u64::MAX),
            stacks: Mutex::new(StackPool::new()),
            stack_reserve: StackReserve::new(),
            next_gid: AtomicU64::new(1),
            all_ps: ps.into_boxed_slice(),
            ticks: (0..workers).map(|_| Padded(AtomicU32::new(0))).collect(),
            owners: (0..workers)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            spares: SpareSlots::new(workers.max(MIN_SPARES)),
            preempted: PreemptedQueue::default(),
            sysmon_stop: AtomicBool::new(false),
            allm: AtomicPtr::new(std::ptr::null_mut()),
            threads: Mutex::new(Vec::new()),
            registry: Registry::new(workers),
            cancelling: AtomicBool::new(false),
            abandoned_started: AtomicUsize::new(0),
            trace: Default::default(),
            chores: Chores::default(),
            metrics: Counters::new(workers),
            cpu_limit,
        })
    }

    pub(crate) fn next_gid(&self) -> u64 {
        self.next_gid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Records which M holds P `id` (null: none), for sysmon.
    pub(crate) fn set_owner(&self, id: usize, m: *const MHandle) {
        self.owners[id].store(m as *mut MHandle, Ordering::Release);
    }

    /// The M holding P `id`, if any. Handles live as long as the runtime.
    pub(crate) fn owner(&self, id: usize) -> Option<&MHandle> {
        // SAFETY: every MHandle is kept alive by `allm` until drop.
        unsafe { self.owners[id].load(Ordering::Acquire).as_ref() }
    }

    /// Lists a new M's handle in `allm` (which keeps it alive until the
    /// runtime drops). Lock-free.
    pub(super) fn register_m(&self, handle: Arc<MHandle>) {
        let raw = Arc::into_raw(handle) as *mut MHandle;
        let mut head = self.allm.load(Ordering::Relaxed);
        loop {
            // SAFETY: `raw` came from Arc::into_raw just above and is not
            // published until the exchange succeeds.
            unsafe { (*raw).next_all.store(head, Ordering::Relaxed) };
            match self
                .allm
                .compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Calls `f` with every M handle ever made. Lock-free and
    /// allocation-free (sysmon walks it).
    pub(crate) fn for_each_m(&self, mut f: impl FnMut(&MHandle)) {
        let mut p = self.allm.load(Ordering::Acquire);
        // SAFETY: listed handles live until `Drop` (see `allm`), and each
        // `next_all` was written before its handle was published.
        while let Some(m) = unsafe { p.as_ref() } {
            f(m);
            p = m.next_all.load(Ordering::Relaxed);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for p in self.all_ps.iter() {
            // SAFETY: each P was leaked from a Box in `new` and nothing can
            // use it once the last reference to Shared is gone.
            drop(unsafe { Box::from_raw(p.0.as_ptr()) });
        }
        let mut m = *self.allm.get_mut();
        while !m.is_null() {
            // SAFETY: every listed handle holds the reference that
            // `register_m` leaked; nothing can reach the list any more.
            let handle = unsafe { Arc::from_raw(m) };
            m = handle.next_all.load(Ordering::Relaxed);
        }
    }
}

/// A value alone in its cache line. Per-P state that its own M writes
/// often (the scheduling tick, on every switch) and others read would
/// otherwise share a line with the next P's and bounce between cores.
#[repr(align(64))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
