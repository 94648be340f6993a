//! P: a scheduling context — local run queue, "next" slot, stack pool.
//!
//! Exactly `workers` Ps exist. An M must hold a P to run Gs; a P is owned
//! by at most one M at a time, so its Cells need no synchronisation. Other
//! Ms reach a P only through its `Stealer` and its timer queue, both kept
//! in `Shared` and thread-safe.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use crossbeam_deque::{Injector, Worker};

use super::g::GRef;
use super::metrics::Batch;
use crate::stack::StackCache;

/// After this many consecutive Gs taken from the LIFO "next" slot, the
/// queue head runs first, so two Gs waking each other cannot starve it...
///
/// Long enough that Gs handing work to each other (a channel's two ends)
/// keep their stacks, G headers and channel in cache for many round trips
/// before the queue's next pair gets its turn: at 8, 1 000 ping-ponging
/// pairs per worker missed the 1 MiB L2 about 3 times per round trip
/// (callgrind's cache simulation), at 64 about 1.2 times. (At 1 024,
/// bounded by the 50 µs below instead, `ping_pong_sustained` ran about
/// 15% faster, but `tests/net_fairness.rs` failed 2 of 6 full-suite runs
/// under two busy loops, against 0 of 3 at 64: reverted.)
const MAX_LIFO_STREAK: u32 = 64;
/// ... but only while the streak is quick: its age is checked at its
/// [`SLOW_STREAK_CHECK`]th G and every as many after (the clock is read
/// at the first check, and later only when the time-stamp counter cannot
/// rule the deadline out), and a streak that took longer than this since
/// that first reading ends there. Go lets the
/// next slot inherit the time slice (up to 10 ms); tokio stops at 3 Gs. A
/// pair computing between hand-offs keeps the queue waiting for at most 16
/// of its turns, while one that only hands off (64 of them take a few
/// microseconds) keeps its caches, and streaks shorter than 8 never read
/// the clock.
const SLOW_STREAK_NS: u64 = 50_000;
/// How often (in Gs from the next slot) a streak's age is checked: a
/// clock read costs about as much as a quick hand-off.
const SLOW_STREAK_CHECK: u32 = 8;
/// Gs a P's queue holds before the older half moves to the global queue
/// (Go's `runqput`/`runqputslow`, and tokio's local queue, have the same
/// bound). See [`P::put`].
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 256;
/// Stacks cached per P (beyond them, the runtime's pool; `stack::pool`).
const STACK_CACHE_PER_P: usize = 64;

/// In lines of its own: its M writes the queue slot, streak and random
/// state all the time, and the Ps are allocated one after the other.
#[repr(align(64))]
pub(crate) struct P {
    pub(crate) id: usize,
    pub(crate) runq: Worker<GRef>,
    runnext: Cell<Option<GRef>>,
    lifo_streak: Cell<u32>,
    /// The current streak's clock: when it reached its first check, and
    /// the last clock reading with the time-stamp counter then (monotonic
    /// ns, ns, ticks; see `streak_is_quick`).
    streak_clock: Cell<(u64, u64, u64)>,
    pub(crate) stacks: RefCell<StackCache>,
    rng: Cell<u64>,
    /// This P's metrics, batched (see `metrics`).
    pub(crate) batch: Batch,
    /// The fourth word of this P's last start or stop record, less its
    /// kind: the P and the number of starts and stops traced on it so
    /// far, which orders them whichever M wrote them (see
    /// `scheduler::tracing`, `trace::Word3::next_mark`).
    pub(crate) trace_mark: Cell<u64>,
    /// The M that took this P last (for the trace's hand-off events).
    pub(crate) last_m: Cell<*const super::handoff::MHandle>,
    /// Set when the P was retaken from its M (blocked where it may not
    /// be preempted; the handler's `retake_p`), cleared by the M that
    /// takes it next, which records the retake in a trace (the handler
    /// itself writes nothing).
    pub(crate) retaken: Cell<bool>,
}

impl P {
    pub(crate) fn new(id: usize, runq: Worker<GRef>) -> P {
        P {
            id,
            runq,
            runnext: Cell::new(None),
            lifo_streak: Cell::new(0),
            streak_clock: Cell::new((0, 0, 0)),
            stacks: RefCell::new(StackCache::new(STACK_CACHE_PER_P)),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ),
            batch: Batch::default(),
            trace_mark: Cell::new(crate::trace::Word3::first_mark(id as u16)),
            last_m: Cell::new(std::ptr::null()),
            retaken: Cell::new(false),
        }
    }

    /// Queues `g`; with `next`, into the LIFO slot (the previous occupant
    /// moves to the queue's tail).
    ///
    /// The queue is bounded: when it holds [`LOCAL_QUEUE_CAPACITY`] Gs,
    /// its older half and `g` go to `global`, which this P serves only
    /// every 61st tick while it has local work. With thousands of
    /// runnable Gs (a server under load) this P then cycles through a few
    /// hundred of them while the rest wait: their stacks, sockets and
    /// kernel buffers stay in cache, and throughput is much higher than
    /// with one long round-robin over all of them. Tail latency pays for
    /// it; no G starves, since the global queue is served every 61 ticks
    /// and by idle Ms.
    pub(crate) fn put(&self, g: GRef, next: bool, global: &Injector<GRef>) {
        let g = if next {
            match self.runnext.replace(Some(g)) {
                Some(old) => old,
                None => return,
            }
        } else {
            g
        };
        if self.free_slots() > 0 {
            self.runq.push(g);
            return;
        }
        for _ in 0..LOCAL_QUEUE_CAPACITY / 2 {
            match self.runq.pop() {
                Some(old) => global.push(old),
                None => break,
            }
        }
        global.push(g);
    }

    /// How many more Gs the local queue takes before it overflows.
    pub(crate) fn free_slots(&self) -> usize {
        LOCAL_QUEUE_CAPACITY.saturating_sub(self.runq.len())
    }

    /// No G queued here.
    pub(crate) fn is_empty(&self) -> bool {
        let next = self.runnext.take();
        let empty = next.is_none() && self.runq.is_empty();
        self.runnext.set(next);
        empty
    }

    /// Next G from this P: the LIFO slot first (bounded streak), then the
    /// queue head.
    pub(crate) fn pop(&self) -> Option<GRef> {
        if let Some(g) = self.runnext.take() {
            let streak = self.lifo_streak.get();
            if streak < MAX_LIFO_STREAK && self.streak_is_quick(streak) {
                self.lifo_streak.set(streak + 1);
                return Some(g);
            }
            self.runq.push(g);
        }
        self.lifo_streak.set(0);
        self.runq.pop()
    }

    /// Whether a streak that has taken `streak` Gs from the next slot may
    /// go on (see [`SLOW_STREAK_NS`]).
    fn streak_is_quick(&self, streak: u32) -> bool {
        if streak == 0 || streak % SLOW_STREAK_CHECK != 0 {
            return true;
        }
        let tsc = crate::trace::ticks();
        if streak == SLOW_STREAK_CHECK {
            let now = crate::sys::clock::now();
            self.streak_clock.set((now, now, tsc));
            return true;
        }
        let (start, ns, then) = self.streak_clock.get();
        let deadline = start.saturating_add(SLOW_STREAK_NS);
        // The time-stamp counter ticks at least once a nanosecond (see
        // `M::timer_may_be_due`): the last clock reading plus the ticks
        // since bounds the time from above, so while that bound is before
        // the deadline the streak is quick without a clock read (a
        // counter that went back, another CPU's, reads the clock). Each
        // read moves the bound closer by the counter's rate in GHz: a
        // streak of bare hand-offs, which runs to its deadline, reads the
        // clock a few times, not at every check (those reads were 3% of a
        // channel ping-pong's time).
        let bound = ns.saturating_add(tsc.checked_sub(then).unwrap_or(u64::MAX));
        if bound < deadline {
            return true;
        }
        let now = crate::sys::clock::now();
        self.streak_clock.set((start, now, tsc));
        now < deadline
    }

    /// Drains every queued G (used at shutdown).
    pub(crate) fn drain(&self) -> Vec<GRef> {
        let mut out: Vec<GRef> = self.runnext.take().into_iter().collect();
        while let Some(g) = self.runq.pop() {
            out.push(g);
        }
        out
    }

    /// xorshift64*: cheap randomness for victim selection.
    pub(crate) fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A P handed between Ms. Ownership is exclusive: whoever holds the PPtr
/// may use the P.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PPtr(pub(crate) NonNull<P>);

// SAFETY: a P is used by one M at a time, and every hand-over is a
// synchronising transfer: through the idle list under `Shared::sched`, or
// lock-free through `MHandle::give` (Release store of the pointer) and
// `take_p` (Acquire swap), so the receiver sees everything the giver did.
unsafe impl Send for PPtr {}

impl PPtr {
    /// The P itself.
    ///
    /// # Safety
    /// The caller must own this P (hold it as its current P), and not keep
    /// the reference past giving the P away.
    pub(crate) unsafe fn get<'a>(self) -> &'a P {
        // SAFETY: Ps are leaked boxes freed only when the runtime drops
        // (after every M is gone), so the pointer is valid; the caller's
        // ownership makes its non-atomic fields ours.
        unsafe { self.0.as_ref() }
    }
}
