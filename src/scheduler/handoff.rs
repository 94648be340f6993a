//! `MHandle`: how other threads hand an M a P or wake it.
//!
//! Built on a futex and atomics only — no lock — so that even the
//! preemption path, which may have interrupted code holding arbitrary
//! locks, can hand a P to another M.

use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

use crate::sys::sync;
use crate::sys::{futex_wait, futex_wake};

use super::p::{PPtr, P};
use super::park::ReadyList;
use crate::sys::clock;

/// What an M waiting on its handle woke up for.
pub(crate) enum Wake<Q = PPtr> {
    /// Handed a P; `bool`: start out spinning.
    P(Q, bool),
    /// Kicked (re-evaluate: shutdown, timer change).
    Kicked,
    /// The deadline passed.
    Timeout,
    /// Waited in the netpoller, which made green threads runnable.
    Polled,
}

/// The hand-off protocol proper, generic over what is handed (a P; the
/// loom tests hand their own values through this very code): the slot,
/// the kick flag, the futex word every hand-off and kick bumps, and
/// `in_poll`, whose fence pairs with the one in `bump`.
pub(crate) struct Handoff<T> {
    /// A P handed to this M, or null.
    p: sync::AtomicPtr<T>,
    spinning: sync::AtomicBool,
    kick: sync::AtomicBool,
    /// Futex word, bumped by every hand-off and kick.
    seq: sync::AtomicU32,
    /// Blocked in the netpoller's epoll_wait rather than on the futex:
    /// waking it takes an eventfd write too (`break_wait`).
    in_poll: sync::AtomicBool,
}

impl<T> Handoff<T> {
    pub(crate) fn new() -> Handoff<T> {
        Handoff {
            p: sync::AtomicPtr::new(ptr::null_mut()),
            spinning: sync::AtomicBool::new(false),
            kick: sync::AtomicBool::new(false),
            seq: sync::AtomicU32::new(0),
            in_poll: sync::AtomicBool::new(false),
        }
    }

    /// Hands `p` over (the M must be waiting for one or about to).
    /// `break_wait` makes the netpoller's epoll_wait return.
    pub(crate) fn give(&self, p: NonNull<T>, spinning: bool, break_wait: impl FnOnce()) {
        self.spinning.store(spinning, Ordering::Relaxed);
        self.p.store(p.as_ptr(), Ordering::Release);
        self.bump(break_wait);
    }

    /// Makes a waiting M return `Wake::Kicked`.
    pub(crate) fn kick(&self, break_wait: impl FnOnce()) {
        self.kick.store(true, Ordering::Release);
        self.bump(break_wait);
    }

    fn bump(&self, break_wait: impl FnOnce()) {
        self.seq.fetch_add(1, Ordering::Release);
        futex_wake(&self.seq);
        // Pairs with the fence in `enter_poll`: either we see `in_poll`
        // or the poller sees our P or kick before it blocks.
        sync::fence(Ordering::SeqCst);
        if self.in_poll.load(Ordering::SeqCst) {
            break_wait();
        }
    }

    /// A P or a kick is waiting to be taken.
    fn pending(&self) -> bool {
        !self.p.load(Ordering::SeqCst).is_null() || self.kick.load(Ordering::SeqCst)
    }

    /// The M is about to block in the netpoller: announces it (wakers
    /// break the wait from now on), then says whether a P or a kick came
    /// first, in which case it must not block.
    pub(crate) fn enter_poll(&self) -> bool {
        self.in_poll.store(true, Ordering::SeqCst);
        // Pairs with the fence in `bump`: either the waker sees `in_poll`
        // and breaks the wait, or we see its P or kick here.
        sync::fence(Ordering::SeqCst);
        self.pending()
    }

    /// The M is back from the netpoller (before anything is handed out,
    /// so a hand-off to it does not break a wait for nothing).
    pub(crate) fn leave_poll(&self) {
        self.in_poll.store(false, Ordering::SeqCst);
    }

    /// Waits until handed a value, kicked, or `deadline` (monotonic ns)
    /// passes. With `poll`, the M may wait in the netpoller instead:
    /// `poll(timeout)` does (through `enter_poll` and `leave_poll`) and
    /// returns None if it did not, else how many waiters it woke.
    pub(crate) fn wait(
        &self,
        deadline: Option<u64>,
        mut poll: Option<&mut dyn FnMut(Option<u64>) -> Option<usize>>,
    ) -> Wake<NonNull<T>> {
        loop {
            let seen = self.seq.load(Ordering::Acquire);
            if let Some(p) = self.take_p() {
                return Wake::P(p, self.spinning.swap(false, Ordering::Relaxed));
            }
            if self.kick.swap(false, Ordering::Acquire) {
                return Wake::Kicked;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = clock::now();
                    if now >= d {
                        return Wake::Timeout;
                    }
                    Some(d - now)
                }
            };
            if let Some(poll) = poll.as_deref_mut() {
                match poll(timeout) {
                    Some(0) => continue,
                    Some(_) => return Wake::Polled,
                    None => {}
                }
            }
            futex_wait(&self.seq, seen, timeout);
        }
    }

    fn take_p(&self) -> Option<NonNull<T>> {
        NonNull::new(self.p.swap(ptr::null_mut(), Ordering::Acquire))
    }
}

/// In lines of its own: its M writes `in_g` on every switch, and two
/// handles allocated one after the other would otherwise share a line.
#[repr(align(64))]
pub(crate) struct MHandle {
    /// P hand-off and kicks.
    handoff: Handoff<P>,
    /// Kernel thread id of the M (0 until it starts), for rt_tgsigqueueinfo.
    pub(crate) tid: AtomicI32,
    /// Running a G (not the scheduler): what sysmon may preempt.
    pub(crate) in_g: AtomicBool,
    /// Preemption requested by sysmon: 0 none, `PREEMPT`, or `RETAKE`
    /// (preempt, or else give up the P).
    pub(crate) preempt_req: AtomicU8,
    /// The P schedule tick the request is for: a request that arrives
    /// after the P moved on (another G runs now) is stale and ignored.
    pub(crate) preempt_tick: AtomicU32,
    /// A SIGURG is on its way (at most one pending per M).
    pub(crate) signal_pending: AtomicBool,
    /// Parked in the preemption path, waiting to resume its G.
    pub(crate) preempt_waiting: AtomicBool,
    /// Its P was retaken while its G was blocked: the G runs without a P
    /// and must be stopped (queued for a P) once back in its own code.
    pub(crate) retaken: AtomicBool,
    /// Next handle in `Shared::allm` (written once, before publication).
    pub(crate) next_all: AtomicPtr<MHandle>,
    /// sysmon's own back-off for signalling this M while its P is
    /// retaken: failed attempts so far, and when to try next (ns).
    pub(crate) retaken_attempts: AtomicU32,
    pub(crate) retaken_next_signal: AtomicU64,
    /// When the M last resumed a preempted G (monotonic ns, and its
    /// thread's CPU time), and for which slice (`slice_key`: P id and
    /// tick; `NO_SLICE` before the first): sysmon measures that slice
    /// from it (see `slice_started`).
    slice_start: AtomicU64,
    slice_cpu_start: AtomicU64,
    slice_of: AtomicU64,
    /// This M's trace buffers (written by the M's thread alone).
    pub(crate) trace: crate::trace::Writer,
}

/// `MHandle::slice_of` before any stamp.
const NO_SLICE: u64 = u64::MAX;

/// A stamp's CPU time when only the wall-clock start was taken.
pub(crate) const NO_CPU: u64 = u64::MAX;

/// A slice's identity: the P it runs on and the P's tick. Ticks alone
/// would not do: an M moves between Ps, whose ticks may coincide.
fn slice_key(p: usize, tick: u32) -> u64 {
    ((p as u64) << 32) | u64::from(tick)
}

/// `MHandle::preempt_req` levels.
pub(crate) const PREEMPT: u8 = 1;
pub(crate) const RETAKE: u8 = 2;

impl MHandle {
    pub(crate) fn new() -> MHandle {
        MHandle {
            handoff: Handoff::new(),
            tid: AtomicI32::new(0),
            in_g: AtomicBool::new(false),
            preempt_req: AtomicU8::new(0),
            preempt_tick: AtomicU32::new(0),
            signal_pending: AtomicBool::new(false),
            preempt_waiting: AtomicBool::new(false),
            retaken: AtomicBool::new(false),
            next_all: AtomicPtr::new(ptr::null_mut()),
            retaken_attempts: AtomicU32::new(0),
            retaken_next_signal: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            slice_cpu_start: AtomicU64::new(0),
            slice_of: AtomicU64::new(NO_SLICE),
            trace: crate::trace::Writer::new(),
        }
    }

    /// The M resumes a preempted G at `now` (its thread having used
    /// `cpu` ns of CPU, or `NO_CPU` when not taken) on P `p`, whose tick
    /// is now `tick`: the slice starts here, not when the P was handed
    /// over (the thread may wait long for a CPU in between). Also the
    /// first slice after an M takes a P (`M::execute`). Written by the M
    /// alone; lock-free and allocation-free (the preemption path).
    pub(crate) fn stamp_slice(&self, p: usize, tick: u32, now: u64, cpu: u64) {
        self.slice_start.store(now, Ordering::Relaxed);
        self.slice_cpu_start.store(cpu, Ordering::Relaxed);
        self.slice_of.store(slice_key(p, tick), Ordering::Release);
    }

    /// For sysmon: when the slice of P `p` at `tick` began (monotonic ns,
    /// and thread CPU ns unless only the wall-clock time was stamped), if
    /// this M stamped it. The values read may belong to a later stamp
    /// than the key (separate stores): only ever later, never earlier,
    /// so a slice is never cut short by it.
    pub(crate) fn slice_started(&self, p: usize, tick: u32) -> Option<(u64, Option<u64>)> {
        (self.slice_of.load(Ordering::Acquire) == slice_key(p, tick)).then(|| {
            let cpu = self.slice_cpu_start.load(Ordering::Relaxed);
            (
                self.slice_start.load(Ordering::Relaxed),
                (cpu != NO_CPU).then_some(cpu),
            )
        })
    }

    /// Hands `p` to the M (which must be waiting for one or about to).
    pub(crate) fn give(&self, p: PPtr, spinning: bool) {
        self.handoff.give(p.0, spinning, crate::netpoll::break_wait);
    }

    /// Makes a waiting M return `Wake::Kicked`.
    pub(crate) fn kick(&self) {
        self.handoff.kick(crate::netpoll::break_wait);
    }

    /// Waits until handed a P, kicked, or `deadline` (monotonic ns) passes.
    /// With `polled`, the M may wait in the netpoller instead (when green
    /// threads wait for I/O and no other M does); the green threads whose
    /// fds become ready are added to `polled` for the caller to queue.
    pub(crate) fn wait(&self, deadline: Option<u64>, polled: Option<&mut ReadyList>) -> Wake {
        let h = &self.handoff;
        let woke = match polled {
            Some(ready) => h.wait(
                deadline,
                Some(&mut |timeout| {
                    crate::netpoll::block(timeout, || h.enter_poll(), || h.leave_poll(), ready)
                }),
            ),
            None => h.wait(deadline, None),
        };
        match woke {
            Wake::P(p, spinning) => Wake::P(PPtr(p), spinning),
            Wake::Kicked => Wake::Kicked,
            Wake::Timeout => Wake::Timeout,
            Wake::Polled => Wake::Polled,
        }
    }
}
