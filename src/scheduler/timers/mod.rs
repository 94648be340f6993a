//! Timers: one hierarchical timing wheel per P (`wheel`), holding the Gs
//! to unpark. A G arms a timer on its P's wheel before it parks and
//! disarms it when the wait ends (`Armed`'s drop), so a wait that ended
//! early leaves nothing behind. Ms fire expired timers in batches
//! whenever they look for work (`find`), and one idle M, the watcher,
//! sleeps until the earliest (see `idle::stop_m`).

mod wheel;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_deque::Injector;
use parking_lot::Mutex;

use super::g::GRef;
use super::m;
use super::p::P;
use super::shared::Shared;
pub(crate) use wheel::TICK_NS;
use wheel::{Key, Wheel};

/// One P's timers.
#[derive(Default)]
pub(crate) struct TimerQueue {
    wheel: Mutex<Wheel<GRef>>,
    /// When the wheel next has work (monotonic ns; u64::MAX if none),
    /// readable without the lock: a timer fires, or a slot cascades.
    next: AtomicU64,
    /// Timers armed, for the metrics.
    armed: AtomicUsize,
}

impl TimerQueue {
    /// Arms a timer that readies `g` once the clock passes `when`; returns
    /// its key and when the wheel will fire it (`when`'s tick's end).
    fn add(&self, when: u64, g: GRef) -> (Key, u64) {
        let mut w = self.wheel.lock();
        let key = w.insert(when, g);
        self.publish(&w);
        (key, wheel::fire_time(when))
    }

    /// Disarms `key` if it has not fired.
    fn cancel(&self, key: Key) {
        let mut w = self.wheel.lock();
        let g = w.remove(key);
        if g.is_some() {
            self.publish(&w);
        }
        drop(w);
        // Never the last reference (the waiting G holds one), but no drop
        // under the lock all the same.
        drop(g);
    }

    /// Stores what lock-free readers see after a change.
    fn publish(&self, w: &Wheel<GRef>) {
        self.next.store(w.next_due(), Ordering::SeqCst);
        self.armed.store(w.len(), Ordering::Relaxed);
    }

    pub(crate) fn next(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    pub(crate) fn armed(&self) -> usize {
        self.armed.load(Ordering::Relaxed)
    }

    /// Readies, onto `p`'s queue, every G whose timer expired by `now`;
    /// returns how many.
    pub(crate) fn run_expired(&self, now: u64, p: &P, global: &Injector<GRef>) -> usize {
        let mut w = self.wheel.lock();
        let mut readied = 0;
        w.poll(now, |g| {
            // Under the lock, with the node released: the G's `Armed`
            // may now end without the lock (see `G::timer_fired`).
            g.timer_fired.store(true, Ordering::Release);
            if let Some(g) = g.wake() {
                if super::tracing::on(&g.rt) {
                    super::tracing::runnable(&g);
                }
                // The queue's tail, in deadline order: a batch must not
                // push its predecessors out of `runnext` one by one.
                p.put(g, false, global);
                readied += 1;
            }
        });
        self.publish(&w);
        readied
    }

    /// Removes every entry (shutdown).
    pub(crate) fn drain(&self) -> Vec<GRef> {
        let mut w = self.wheel.lock();
        let gs = w.drain();
        self.publish(&w);
        gs
    }
}

/// An armed timer; dropping it disarms it if it has not fired (the wait
/// ended early, or unwinds).
pub(crate) struct Armed<'a> {
    queue: &'a TimerQueue,
    key: Key,
    /// The arming G's `timer_fired`.
    fired: &'a AtomicBool,
}

impl Armed<'_> {
    /// Whether the wheel fired this timer: its deadline has passed (a
    /// timer fires only once the clock is past its tick), and it is
    /// disarmed already.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        // Fired: its node went back to the wheel when it fired. The mark
        // was set under the wheel's lock, and a G arms one timer at a
        // time (cleared in `add_timer` before the next), so a stale mark
        // from an earlier timer cannot be seen here.
        if self.fired() {
            return;
        }
        let _np = crate::preempt::no_preempt();
        self.queue.cancel(self.key);
    }
}

/// Arms a timer that unparks `g` once the clock passes `when` (monotonic
/// ns), on the current P's wheel (or P 0's when called off the runtime's
/// Ms), until the returned guard drops. Only `g` itself arms its timers,
/// one at a time (a wait's guard drops before the next wait arms).
pub(crate) fn add_timer(when: u64, g: &GRef) -> Armed<'_> {
    let _np = crate::preempt::no_preempt();
    let rt = &g.rt;
    let mut id = 0;
    if let Some(m) = m::current_m() {
        if m.has_p() && Arc::ptr_eq(&m.rt, rt) {
            id = m.p().id;
        }
    }
    let queue = &rt.timers[id];
    // Before the node is listed: the wheel's lock orders this before the
    // poll that may fire it (and any earlier timer's mark was seen, or
    // its poll serialised with our disarm, before this store).
    g.timer_fired.store(false, Ordering::Relaxed);
    let (key, fires_at) = queue.add(when, g.clone());
    rt.timer_added(fires_at);
    Armed {
        queue,
        key,
        fired: &g.timer_fired,
    }
}

impl Shared {
    /// A timer that fires at `when` was added: make sure some idle M will
    /// wake for it in time.
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

    /// Timers armed over all Ps.
    pub(crate) fn armed_timers(&self) -> usize {
        self.timers.iter().map(|t| t.armed()).sum()
    }
}
