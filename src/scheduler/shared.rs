//! State shared by all Ms of one runtime: queues, idle lists, counters.

use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::thread;

use crossbeam_deque::{Injector, Stealer, Worker};
use parking_lot::Mutex;

use super::handoff::{MHandle, Wake};

use super::g::GRef;
use super::m;
use super::p::{PPtr, P};
use super::preempted::PreemptedQueue;
use super::registry::Registry;
use crate::preempt::chores::Chores;
use crate::stack::StackPool;
use crate::sys::FutexLock;
use crate::time::TimerQueue;

/// Stacks kept in the runtime-wide pool (beyond the per-P pools) under
/// load, so bursts of blocked green threads do not mmap/munmap each time.
const GLOBAL_STACK_POOL: usize = 16 * 1024;
/// What the pool is trimmed to once it has gone unused for a second.
const GLOBAL_STACK_POOL_IDLE: usize = 1024;
const STACK_POOL_IDLE_NS: u64 = 1_000_000_000;

/// Runtime settings fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    pub(crate) thread_name: String,
    /// Preemption quantum; None: no preemption.
    pub(crate) preempt: Option<std::time::Duration>,
}

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
    next_gid: AtomicU64,
    all_ps: Box<[PPtr]>,
    /// Per P, for sysmon: the schedule tick (bumped per G run) and the M
    /// holding the P (null when idle).
    pub(crate) ticks: Box<[Padded<AtomicU32>]>,
    owners: Box<[AtomicPtr<MHandle>]>,
    /// Ms parked off the idle list, ready to take a P from the preemption
    /// path without a lock (filled by sysmon).
    spares: Box<[AtomicPtr<MHandle>]>,
    /// New spare Ms whose threads have not yet taken a slot. A new thread
    /// runs std's start-up first, which allocates: published before that,
    /// a spare could be handed a P while it waits for an allocator lock
    /// held by the very green thread that P is for. So a new spare
    /// publishes itself (`publish_spare`) once it is ready to wait.
    spares_starting: AtomicUsize,
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
    /// sysmon's errands that may allocate or lock (see `preempt::chores`).
    pub(crate) chores: Chores,
}

// SAFETY: the PPtrs in `all_ps` are only dereferenced by their current
// owner (or at drop, when no M runs); everything else is Sync.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

/// The scheduler lock's state. Nothing under this lock allocates or
/// frees: a thread blocked in a locking allocator (behind a preempted
/// green thread holding its lock) must never hold it, or every M that
/// looks for a P would wait behind it. `pidle` is sized for every P up
/// front, `midle` grows outside the lock (`stop_m`), and the handles
/// dropped here are never the last reference (`allm` holds one).
pub(super) struct SchedState {
    pub(super) pidle: Vec<PPtr>,
    pub(super) midle: Vec<Arc<MHandle>>,
    watcher: Option<Arc<MHandle>>,
}

/// What `stop_m` came back with.
pub(crate) enum Stopped {
    /// Handed a P; `bool` says whether the M starts out spinning.
    Acquired(PPtr, bool),
    /// Woke without a P (timer deadline or kick); look for one.
    Woke,
    Shutdown,
}

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
        Arc::new(Shared {
            cfg,
            injector: Injector::new(),
            stealers: stealers.into_boxed_slice(),
            timers,
            sched: FutexLock::new(SchedState {
                pidle: {
                    let mut pidle = Vec::with_capacity(workers);
                    pidle.extend(ps.iter().rev().copied());
                    pidle
                },
                midle: Vec::with_capacity(2 * workers + 4),
                watcher: None,
            }),
            npidle: AtomicUsize::new(workers),
            nmspinning: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            watch_until: AtomicU64::new(u64::MAX),
            stacks: Mutex::new(StackPool::new(GLOBAL_STACK_POOL)),
            next_gid: AtomicU64::new(1),
            all_ps: ps.into_boxed_slice(),
            ticks: (0..workers).map(|_| Padded(AtomicU32::new(0))).collect(),
            owners: (0..workers)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            spares: (0..workers)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            spares_starting: AtomicUsize::new(0),
            preempted: PreemptedQueue::default(),
            sysmon_stop: AtomicBool::new(false),
            allm: AtomicPtr::new(std::ptr::null_mut()),
            threads: Mutex::new(Vec::new()),
            registry: Registry::new(workers),
            cancelling: AtomicBool::new(false),
            chores: Chores::default(),
        })
    }

    pub(crate) fn next_gid(&self) -> u64 {
        self.next_gid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Starts a spinning M if there is an idle P and nobody is spinning:
    /// called after making work runnable. Spinning Ms find the work; the
    /// "at most one new spinner" rule keeps wake-ups cheap.
    pub(crate) fn wakep(self: &Arc<Self>) {
        // Pairs with the fence in `M::drop_p`: either we see the idle P or
        // its M sees our work when it re-checks.
        fence(Ordering::SeqCst);
        if self.npidle.load(Ordering::SeqCst) == 0 || self.nmspinning.load(Ordering::SeqCst) != 0 {
            return;
        }
        if self
            .nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.start_m(true);
    }

    /// Hands an idle P to an idle (or new) M. With `spinning`, the caller
    /// has already counted the new M in `nmspinning`.
    pub(crate) fn start_m(self: &Arc<Self>, spinning: bool) {
        let mut s = self.sched.lock();
        let p = match s.pidle.pop() {
            Some(p) if !self.is_shutdown() => p,
            other => {
                if let Some(p) = other {
                    s.pidle.push(p);
                }
                drop(s);
                if spinning {
                    self.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                return;
            }
        };
        self.npidle.fetch_sub(1, Ordering::SeqCst);
        if let Some(m) = s.midle.pop() {
            if s.watcher.as_ref().is_some_and(|w| Arc::ptr_eq(w, &m)) {
                s.watcher = None;
                self.watch_until.store(u64::MAX, Ordering::SeqCst);
            }
            drop(s);
            m.give(p, spinning);
            return;
        }
        drop(s);
        if let Err(p) = self.spawn_m(Some(p), spinning) {
            // Give the P back; the running Ms keep the runtime going.
            self.put_idle_p(p.expect("the P we passed"));
            if spinning {
                self.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Starts a new M thread, with `p` or (a spare) waiting for one.
    /// On failure returns the P.
    fn spawn_m(
        self: &Arc<Self>,
        p: Option<PPtr>,
        spinning: bool,
    ) -> Result<Arc<MHandle>, Option<PPtr>> {
        let mut threads = self.threads.lock();
        // Shutdown kicks and joins the Ms listed under this lock; a thread
        // started after that would wait forever.
        if self.is_shutdown() {
            return Err(p);
        }
        let name = format!("{}-{}", self.cfg.thread_name, threads.len() + 1);
        let rt = self.clone();
        let handle = Arc::new(MHandle::new());
        self.register_m(handle.clone());
        let h = handle.clone();
        match thread::Builder::new()
            .name(name)
            .spawn(move || m::m_main(rt, h, p, spinning))
        {
            Ok(jh) => {
                threads.push((jh, handle.clone()));
                Ok(handle)
            }
            Err(e) => {
                eprintln!("greenrt: failed to start a worker thread: {e}");
                Err(p)
            }
        }
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
    fn register_m(&self, handle: Arc<MHandle>) {
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

    /// Takes a spare M, lock-free (the preemption path uses this).
    pub(crate) fn claim_spare(&self) -> Option<&MHandle> {
        self.spares.iter().find_map(|slot| {
            let m = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: as in `owner`.
            unsafe { m.as_ref() }
        })
    }

    /// Empty spare slots that no starting spare M will fill.
    fn spares_wanted(&self) -> usize {
        let empty = self
            .spares
            .iter()
            .filter(|slot| slot.load(Ordering::Acquire).is_null())
            .count();
        empty.saturating_sub(self.spares_starting.load(Ordering::Acquire))
    }

    /// Some spare slot needs an M (lock-free: sysmon asks).
    pub(crate) fn spares_missing(&self) -> bool {
        !self.is_shutdown() && self.spares_wanted() > 0
    }

    /// Keeps a spare M for every empty spare slot: an idle M if there is
    /// one, else a new thread (which publishes itself when ready, see
    /// `spares_starting`). Ordinary context only (locks, allocates); only
    /// the errand thread calls it, so slots fill from one place.
    pub(crate) fn ensure_spares(self: &Arc<Self>) {
        for _ in 0..self.spares_wanted() {
            if self.is_shutdown() {
                return;
            }
            // Any idle M but the timer watcher, which must keep watching.
            let idle = {
                let mut s = self.sched.lock();
                let watcher = s.watcher.clone();
                let i = s
                    .midle
                    .iter()
                    .position(|m| !watcher.as_ref().is_some_and(|w| Arc::ptr_eq(w, m)));
                i.map(|i| s.midle.swap_remove(i))
            };
            match idle {
                Some(m) => {
                    if !self.publish_spare(&m) {
                        // Cannot happen (only this thread fills slots);
                        // keep the M reachable all the same.
                        self.sched_with_idle_room().midle.push(m);
                        return;
                    }
                }
                None => {
                    self.spares_starting.fetch_add(1, Ordering::AcqRel);
                    if self.spawn_m(None, false).is_err() {
                        self.spares_starting.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
            }
        }
    }

    /// Puts `m` (waiting for a P) in an empty spare slot. False if all
    /// are full.
    fn publish_spare(&self, m: &MHandle) -> bool {
        let raw = m as *const MHandle as *mut MHandle;
        self.spares.iter().any(|slot| {
            slot.compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        })
    }

    /// Called by a new spare M's thread once it is ready to wait for a P:
    /// takes its slot. False if there was none (the thread then exits).
    pub(crate) fn spare_ready(&self, m: &MHandle) -> bool {
        let published = self.publish_spare(m);
        self.spares_starting.fetch_sub(1, Ordering::AcqRel);
        published
    }

    /// Gives `p`, released by an M about to block, to another M so its
    /// queue keeps moving (Go's handoffp): an idle M, or a new one.
    pub(crate) fn handoff_p(self: &Arc<Self>, p: PPtr) {
        self.put_idle_p(p);
        self.start_m(false);
    }

    /// A G was queued as preempted without a P to hand on (a retaken G):
    /// if a P is idle, hand it to the longest-waiting preempted G. Asking
    /// sysmon's errand thread instead would not do: it may itself wait
    /// for the allocator lock that very G holds. Allocation-free; `sched`
    /// is never held across an allocation or a preemption point.
    pub(crate) fn resume_preempted_on_idle_p(&self) {
        // Pairs with the fence in `find_runnable` after a P goes idle:
        // either that M sees the queued G, or we see its idle P.
        fence(Ordering::SeqCst);
        if self.npidle.load(Ordering::SeqCst) == 0 {
            return;
        }
        let Some(p) = self.get_idle_p() else {
            return;
        };
        match self.preempted.pop() {
            Some(next) => self.hand_to_preempted(next, p),
            None => self.put_idle_p(p),
        }
    }

    /// Puts `p` on the idle list.
    pub(crate) fn put_idle_p(&self, p: PPtr) {
        let mut s = self.sched.lock();
        s.pidle.push(p);
        self.npidle.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes an idle P, if any (none once the runtime has stopped: the
    /// idle ones are shutdown's to drain).
    pub(crate) fn get_idle_p(&self) -> Option<PPtr> {
        let mut s = self.sched.lock();
        if self.is_shutdown() {
            return None;
        }
        let p = s.pidle.pop()?;
        self.npidle.fetch_sub(1, Ordering::SeqCst);
        Some(p)
    }

    /// Parks the calling M (which holds no P) until it is handed a P, the
    /// timer `deadline` (monotonic ns) passes, it is kicked, or shutdown.
    /// Only one idle M sleeps with a deadline: the timer watcher. With
    /// `poll`, it may wait in the netpoller instead and return `Woke` when
    /// that made green threads runnable.
    ///
    /// `unlisted` runs if the M must go on waiting for a P someone already
    /// took it off the idle list for (it may have become a spare, and then
    /// wait long): it must queue anything the M gathered meanwhile.
    pub(crate) fn stop_m(
        &self,
        me: &Arc<MHandle>,
        deadline: u64,
        poll: bool,
        unlisted: impl FnOnce(),
    ) -> Stopped {
        self.stacks.lock().trim_idle(
            GLOBAL_STACK_POOL_IDLE,
            STACK_POOL_IDLE_NS,
            crate::time::now(),
        );
        let watching;
        {
            let mut s = self.sched_with_idle_room();
            if self.is_shutdown() {
                return Stopped::Shutdown;
            }
            watching = deadline != u64::MAX && deadline < self.watch_until.load(Ordering::SeqCst);
            if watching {
                if let Some(old) = s.watcher.replace(me.clone()) {
                    old.kick();
                }
                self.watch_until.store(deadline, Ordering::SeqCst);
            }
            s.midle.push(me.clone());
        }
        let deadline = watching.then_some(deadline);
        match me.wait(deadline, poll) {
            Wake::P(p, spinning) => return Stopped::Acquired(p, spinning),
            Wake::Kicked | Wake::Timeout | Wake::Polled if self.is_shutdown() => {
                return Stopped::Shutdown
            }
            Wake::Kicked | Wake::Timeout | Wake::Polled => {}
        }
        // Leave the idle list. If someone already took us off it, a P is
        // on its way: wait for it.
        let listed = {
            let mut s = self.sched.lock();
            if s.watcher.as_ref().is_some_and(|w| Arc::ptr_eq(w, me)) {
                s.watcher = None;
                self.watch_until.store(u64::MAX, Ordering::SeqCst);
            }
            match s.midle.iter().position(|m| Arc::ptr_eq(m, me)) {
                Some(i) => {
                    s.midle.swap_remove(i);
                    true
                }
                None => false,
            }
        };
        if listed {
            return Stopped::Woke;
        }
        unlisted();
        loop {
            match me.wait(None, false) {
                Wake::P(p, spinning) => return Stopped::Acquired(p, spinning),
                _ if self.is_shutdown() => return Stopped::Shutdown,
                _ => {}
            }
        }
    }

    /// Locks `sched` with room in `midle` for one more M, growing it
    /// outside the lock (see `SchedState`: nothing allocates under it).
    fn sched_with_idle_room(&self) -> std::sync::MutexGuard<'_, SchedState> {
        loop {
            let s = self.sched.lock();
            if s.midle.len() < s.midle.capacity() {
                return s;
            }
            let want = 2 * s.midle.capacity() + 8;
            drop(s);
            let mut bigger = Vec::with_capacity(want);
            let mut s = self.sched.lock();
            // `midle` only grows here, so it still fits in `bigger`.
            if s.midle.capacity() < want {
                bigger.append(&mut s.midle);
                std::mem::swap(&mut s.midle, &mut bigger);
            }
            drop(s);
            drop(bigger);
        }
    }

    /// A timer due at `when` was added: make sure some idle M will wake for
    /// it in time.
    pub(crate) fn timer_added(self: &Arc<Self>, when: u64) {
        if when >= self.watch_until.load(Ordering::SeqCst) {
            return;
        }
        let watcher = self.sched.lock().watcher.clone();
        match watcher {
            Some(w) => w.kick(),
            // No watcher: get an idle P running so its M re-evaluates.
            None if self.npidle.load(Ordering::SeqCst) > 0 => self.start_m(false),
            None => {}
        }
    }

    /// Hands `p` to the M that holds the preempted G `g` (popped from
    /// `preempted`), which resumes it. Lock-free and allocation-free:
    /// also used on the preemption path and in the signal handler.
    ///
    /// Takes the queue's reference to `g` and drops it *before* the
    /// hand-off: until then the waiting M's own reference (its running G)
    /// keeps the G alive, so this drop never frees; after it the G may
    /// run to its end at once, and a reference held here could be the
    /// last, freeing memory in a critical path (or a signal handler).
    pub(crate) fn hand_to_preempted(&self, g: GRef, p: PPtr) {
        let m = g.locked_m.swap(std::ptr::null_mut(), Ordering::AcqRel);
        drop(g);
        // SAFETY: the preempting M stored its handle before queueing the G
        // and waits on it; handles live as long as the runtime.
        let m = unsafe { m.as_ref() }.expect("greenrt: preempted G without its M");
        // Resuming a G is a scheduling round like `execute`: the tick
        // moves (else the 1-in-61 branch would pick this path forever,
        // and sysmon would not see a fresh slice).
        // SAFETY: we own the P until we give it away below.
        let id = unsafe { p.get() }.id;
        self.ticks[id].fetch_add(1, Ordering::Relaxed);
        m.give(p, false);
    }

    /// Earliest timer over all Ps (u64::MAX if none).
    pub(crate) fn next_timer(&self) -> u64 {
        self.timers
            .iter()
            .map(|t| t.next())
            .min()
            .unwrap_or(u64::MAX)
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
