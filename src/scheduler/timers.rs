//! Timers: one queue per P, a min-heap of (deadline, G to unpark). Ms run
//! expired timers whenever they look for work (`find`), and one idle M,
//! the watcher, sleeps exactly until the earliest (see `idle::stop_m`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::g::GRef;
use super::m;
use super::shared::Shared;

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

/// Arms a timer that unparks `g` at `when` (monotonic ns), on the current
/// P's timer queue (or P 0's when called off the runtime's Ms).
pub(crate) fn add_timer(when: u64, g: GRef) {
    let _np = crate::preempt::no_preempt();
    let rt = g.rt.clone();
    let mut id = 0;
    if let Some(m) = m::current_m() {
        if m.has_p() && Arc::ptr_eq(&m.rt, &rt) {
            id = m.p().id;
        }
    }
    rt.timers[id].add(when, g);
    rt.timer_added(when);
}

impl Shared {
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

    /// Earliest timer over all Ps (u64::MAX if none).
    pub(crate) fn next_timer(&self) -> u64 {
        self.timers
            .iter()
            .map(|t| t.next())
            .min()
            .unwrap_or(u64::MAX)
    }
}
