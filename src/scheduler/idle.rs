//! Idle Ps and idle Ms: starting an M for runnable work (`wakep`, Go's
//! wakep/startm), handing a P on (`handoff_p`), and parking an M that
//! found nothing (`stop_m`, Go's stopm). All of it under the scheduler
//! lock `Shared::sched`, which is never held across an allocation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use crate::sys::sync::{fence, AtomicUsize};
use crate::sys::FutexGuard;

use super::handoff::{MHandle, Wake};
use super::m;
use super::p::PPtr;
use super::park::ReadyList;
use super::shared::Shared;

/// The scheduler lock's state. Nothing under this lock allocates or
/// frees: a thread blocked in a locking allocator (behind a preempted
/// green thread holding its lock) must never hold it, or every M that
/// looks for a P would wait behind it. `pidle` is sized for every P up
/// front, `midle` grows outside the lock (`stop_m`), and the handles
/// dropped here are never the last reference (`allm` holds one). The one
/// exception is shutdown's final drain (`Shared::shutdown`): it runs once
/// the Ms have stopped and every preempted G was resumed detached, so no
/// holder of an allocator lock still waits for a P.
pub(super) struct SchedState {
    pub(super) pidle: Vec<PPtr>,
    /// Ps at or above the active limit, kept off `pidle` and out of
    /// `npidle` (see `cpu_limit`); sized for every P, as `pidle` is.
    pub(super) parked: Vec<PPtr>,
    pub(super) midle: Vec<Arc<MHandle>>,
    /// The idle M sleeping until the next timer, if any.
    pub(super) watcher: Option<Arc<MHandle>>,
}

/// What `stop_m` came back with.
pub(crate) enum Stopped {
    /// Handed a P; `bool` says whether the M starts out spinning.
    Acquired(PPtr, bool),
    /// Woke without a P (timer deadline or kick); look for one.
    Woke,
    Shutdown,
}

/// The two halves of the idle-P pairing (the loom tests drive them, see
/// docs/DESIGN.md, "Model checking"). Whoever makes work runnable asks
/// `idle_p_for_work` (or `claim_spinner`) afterwards; an M that finds
/// nothing puts its P on the idle list (counting it in `npidle`) and
/// then looks again through `recheck_after_idle`. The two SeqCst fences
/// order each side's write before its read: either the waker sees the
/// idle P, or the M sees the work. Never both missed.
///
/// The waking half: is a P idle, now that our work is visible?
pub(super) fn idle_p_for_work(npidle: &AtomicUsize) -> bool {
    fence(Ordering::SeqCst);
    npidle.load(Ordering::SeqCst) != 0
}

/// `wakep`'s waking half: true if a P is idle and nobody spins, and the
/// caller now counts (in `nmspinning`) as the one new spinning M to
/// start; "at most one new spinner" keeps wake-ups cheap.
pub(super) fn claim_spinner(npidle: &AtomicUsize, nmspinning: &AtomicUsize) -> bool {
    idle_p_for_work(npidle)
        && nmspinning.load(Ordering::SeqCst) == 0
        && nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
}

/// The idle half, after the P went on the idle list: `work_visible`
/// looks at the queues again.
pub(super) fn recheck_after_idle(work_visible: impl FnOnce() -> bool) -> bool {
    fence(Ordering::SeqCst);
    work_visible()
}

impl Shared {
    /// Starts a spinning M if there is an idle P and nobody is spinning:
    /// called after making work runnable. Spinning Ms find the work; the
    /// "at most one new spinner" rule keeps wake-ups cheap.
    pub(crate) fn wakep(self: &Arc<Self>) {
        // Pairs with the fence in `M::find_runnable` after `drop_p`: either
        // we see the idle P or its M sees our work when it re-checks.
        if claim_spinner(&self.npidle, &self.nmspinning) {
            self.start_m(true);
        }
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
    pub(super) fn spawn_m(
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

    /// Gives `p`, released by an M about to block, to another M so its
    /// queue keeps moving (Go's handoffp): an idle M, or a new one.
    /// A P at or above the active limit (see `cpu_limit`) is parked
    /// instead, its queued Gs moved to the global queue for the M started
    /// here.
    pub(crate) fn handoff_p(self: &Arc<Self>, p: PPtr) {
        // SAFETY: the caller owns `p` until it is listed below.
        let owned = unsafe { p.get() };
        if self.cpu_limit.excludes(owned.id) {
            for g in owned.drain() {
                self.injector.push(g);
            }
        }
        self.put_idle_p(p);
        self.start_m(false);
    }

    /// Puts `p` on the idle list, or, if it is at or above the active
    /// limit and has nothing queued, on the parked list (not counted in
    /// `npidle`: no M is handed it). A P over the limit that still has
    /// Gs queued is listed idle: the M it is handed to moves them and
    /// parks it (`M::shed_parked_p`). Allocation-free (the preemption
    /// path calls it).
    pub(crate) fn put_idle_p(&self, p: PPtr) {
        // SAFETY: the caller owns `p` until it is listed below; only the
        // immutable id and the queue's emptiness are read.
        let owned = unsafe { p.get() };
        let mut s = self.sched.lock();
        if self.cpu_limit.excludes(owned.id) && owned.is_empty() {
            s.parked.push(p);
            return;
        }
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
    /// `polled`, it may wait in the netpoller instead and return `Woke`
    /// when that made green threads runnable; they are in `polled` for the
    /// caller to run — unless the M must go on waiting for a P someone
    /// already took it off the idle list for (it may have become a spare,
    /// and then wait long): those are queued globally here.
    pub(crate) fn stop_m(
        &self,
        me: &Arc<MHandle>,
        deadline: u64,
        mut polled: Option<&mut ReadyList>,
    ) -> Stopped {
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
        match me.wait(deadline, polled.as_deref_mut()) {
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
        if let Some(gs) = polled {
            super::inject_polled(std::mem::take(gs));
        }
        loop {
            match me.wait(None, None) {
                Wake::P(p, spinning) => return Stopped::Acquired(p, spinning),
                _ if self.is_shutdown() => return Stopped::Shutdown,
                _ => {}
            }
        }
    }

    /// Locks `sched` with room in `midle` for one more M, growing it
    /// outside the lock (see `SchedState`: nothing allocates under it).
    pub(super) fn sched_with_idle_room(&self) -> FutexGuard<'_, SchedState> {
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
}
