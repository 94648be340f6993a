//! Time: the monotonic clock, per-P timer queues, and `sleep`.
//!
//! A sleeping green thread parks; its wake-up is an entry in the timer
//! queue of the P it slept on. Ms run expired timers whenever they look for
//! work, and an idle M sleeps exactly until the earliest timer (see
//! `Shared::stop_m`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::scheduler::{self, GRef};

/// Nanoseconds on CLOCK_MONOTONIC (the clock behind `std::time::Instant`).
pub(crate) fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The monotonic deadline `d` from now, saturating far in the future.
pub(crate) fn deadline_after(d: Duration) -> u64 {
    now().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct Entry {
    when: u64,
    seq: u64,
    g: GRef,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

/// One P's timers: a min-heap of (deadline, G to unpark).
///
/// Entries are never cancelled: a G that stopped waiting early gets a
/// spurious unpark later, which every park site tolerates.
pub(crate) struct TimerQueue {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    /// Earliest deadline, readable without the lock (u64::MAX if none).
    next: AtomicU64,
}

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            next: AtomicU64::new(u64::MAX),
        }
    }
}

impl TimerQueue {
    pub(crate) fn add(&self, when: u64, g: GRef) {
        let mut h = self.heap.lock();
        let seq = h.1;
        h.1 += 1;
        h.0.push(Reverse(Entry { when, seq, g }));
        if when < self.next.load(Ordering::Relaxed) {
            self.next.store(when, Ordering::SeqCst);
        }
    }

    pub(crate) fn next(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Pops every entry due at `now` and passes its G to `fire`.
    pub(crate) fn run_expired(&self, now: u64, mut fire: impl FnMut(GRef)) {
        let mut h = self.heap.lock();
        while let Some(Reverse(top)) = h.0.peek() {
            if top.when > now {
                break;
            }
            let Reverse(e) = h.0.pop().expect("peeked");
            fire(e.g);
        }
        let next = h.0.peek().map_or(u64::MAX, |Reverse(e)| e.when);
        self.next.store(next, Ordering::SeqCst);
    }

    /// Removes every entry (shutdown).
    pub(crate) fn drain(&self) -> Vec<GRef> {
        let mut h = self.heap.lock();
        self.next.store(u64::MAX, Ordering::SeqCst);
        std::mem::take(&mut h.0)
            .into_iter()
            .map(|Reverse(e)| e.g)
            .collect()
    }
}

/// Puts the current green thread to sleep for at least `dur`.
///
/// Only the green thread waits: its worker runs other green threads
/// meanwhile. `sleep(Duration::ZERO)` yields.
///
/// # Panics
/// When called outside a green thread (use `std::thread::sleep` there).
pub fn sleep(dur: Duration) {
    let Some(g) = scheduler::current_g() else {
        panic!(
            "greenrt::sleep called outside a green thread (use greenrt::run or Runtime::block_on)"
        );
    };
    if std::thread::panicking() {
        // Unwinding: keep the OS thread (see `scheduler::blocks_green`),
        // but let another M run this worker's green threads meanwhile.
        let _section = scheduler::BlockingSection::enter();
        return std::thread::sleep(dur);
    }
    if dur.is_zero() {
        drop(g);
        return scheduler::yield_now();
    }
    let deadline = deadline_after(dur);
    while now() < deadline {
        scheduler::add_timer(deadline, g.clone());
        scheduler::park();
    }
}
