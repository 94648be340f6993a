//! Container-aware workers: how many of the runtime's Ps may run green
//! threads at once (the *active limit*), following the process's CPU
//! quota and affinity (docs/DESIGN.md, "Container-aware workers").
//!
//! The runtime makes as many Ps as it could ever use (the affinity count,
//! or `Builder::workers`) and lets only those with an id below the limit
//! run. A P at or above it is *parked*: off the idle list, so no idle M
//! is handed it, `wakep` does not count it and no spinning M holds it to
//! steal into. An M that finds itself holding one (the limit fell while
//! it ran) gives it up at its next pass through the scheduler
//! (`M::shed_parked_p`), moving the P's queued green threads to the
//! global queue, as Go's `procresize` does with the Ps it destroys.
//! Raising the limit puts parked Ps back on the idle list and wakes an M.
//! Nothing is restarted; Ps are never freed, so a raised limit finds them
//! as they were.
//!
//! The errand thread re-reads the quota every `QUOTA_POLL_INTERVAL` (Go's
//! sysmon does it once a second too); sysmon itself may not: reading
//! files allocates.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::m::M;
use super::p::PPtr;
use super::shared::Shared;
use crate::sys::cgroup;

/// How often the errand thread re-reads the quota: as often as Go's
/// sysmon (`sysmonUpdateGOMAXPROCS`). One read (procfs's cgroup and
/// mountinfo files, the quota files, the affinity mask) took about 120 µs
/// on the 2-core test machine, on a thread that runs no green threads:
/// about 0.01% of one CPU.
pub(crate) const QUOTA_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `quota_milli` when no quota limits the process (or none is read).
const NO_QUOTA: u64 = u64::MAX;

/// Where the worker count's quota comes from, when it follows one.
#[derive(Clone, Debug)]
pub(crate) struct QuotaSource {
    /// File-system root the cgroup files are read below (`/`, or a
    /// test's fake tree).
    pub(crate) root: PathBuf,
    /// How often the errand thread re-reads it.
    pub(crate) every: Duration,
    /// Bound the limit by the current affinity count too (not when the
    /// worker count was given: then the Ps are the bound).
    pub(crate) follow_affinity: bool,
}

/// The active limit and what it was computed from.
pub(crate) struct CpuLimit {
    /// Ps with an id below this may run green threads. Written under
    /// `Shared::sched` only (with the idle and parked lists in step);
    /// read anywhere, Relaxed, as a hint that the writer's lists correct.
    active: AtomicUsize,
    /// The quota last read, in thousandths of a CPU (`NO_QUOTA`: none).
    quota_milli: AtomicU64,
    pub(crate) source: Option<QuotaSource>,
}

impl CpuLimit {
    pub(crate) fn new(active: usize, quota: Option<f64>, source: Option<QuotaSource>) -> CpuLimit {
        CpuLimit {
            active: AtomicUsize::new(active),
            quota_milli: AtomicU64::new(to_milli(quota)),
            source,
        }
    }

    /// The current limit.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether P `id` is parked (at or above the limit).
    #[inline]
    pub(crate) fn excludes(&self, id: usize) -> bool {
        id >= self.active.load(Ordering::Relaxed)
    }

    /// The quota last read, in CPUs.
    pub(crate) fn quota(&self) -> Option<f64> {
        match self.quota_milli.load(Ordering::Relaxed) {
            NO_QUOTA => None,
            m => Some(m as f64 / 1000.0),
        }
    }
}

fn to_milli(quota: Option<f64>) -> u64 {
    quota.map_or(NO_QUOTA, |q| {
        (q * 1000.0).round().min((NO_QUOTA - 1) as f64) as u64
    })
}

/// The worker set-up `Builder::build` decides: `(ps, active, quota,
/// source)`. `fixed` is `Builder::workers` or `GREENRT_WORKERS`: then
/// that many Ps, all active, no tracking, unless a (test's) cgroup root
/// was given. Otherwise one P per CPU of the affinity mask, the limit
/// following the quota by Go's rule (`cgroup::workers_for`).
pub(crate) fn decide(
    fixed: Option<usize>,
    cgroup_root: Option<PathBuf>,
    every: Option<Duration>,
) -> (usize, usize, Option<f64>, Option<QuotaSource>) {
    let (ps, follow_affinity) = match (fixed, &cgroup_root) {
        (Some(n), None) => return (n, n, None, None),
        (Some(n), Some(_)) => (n, false),
        (None, _) => (affinity(), true),
    };
    let source = QuotaSource {
        root: cgroup_root.unwrap_or_else(|| PathBuf::from("/")),
        every: every.unwrap_or(QUOTA_POLL_INTERVAL),
        follow_affinity,
    };
    // Unreadable or malformed: run as if unlimited (as Go does).
    let quota = cgroup::read_cpu_quota(&source.root).ok().flatten();
    (ps, cgroup::workers_for(quota, ps), quota, Some(source))
}

fn affinity() -> usize {
    cgroup::affinity_count()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Shared {
    /// Re-reads the quota (and the affinity count) and applies the limit
    /// they give. An unreadable or malformed quota keeps the last limit.
    /// The errand thread's, every `QuotaSource::every`.
    pub(crate) fn refresh_cpu_limit(self: &Arc<Self>) {
        let Some(src) = &self.cpu_limit.source else {
            return;
        };
        let Ok(quota) = cgroup::read_cpu_quota(&src.root) else {
            return;
        };
        let ps = self.cfg.workers;
        let bound = match src.follow_affinity {
            true => ps.min(cgroup::affinity_count().unwrap_or(ps)),
            false => ps,
        };
        self.cpu_limit
            .quota_milli
            .store(to_milli(quota), Ordering::Relaxed);
        self.set_active_workers(cgroup::workers_for(quota, bound));
    }

    /// Lets `n` Ps (ids `0..n`, at least 1, at most all) run green threads:
    /// parks the idle Ps at or above `n` and puts the parked ones below it
    /// back on the idle list, then wakes an M for them. Held Ps above it
    /// are given up by their Ms (`M::shed_parked_p`). Takes `sched`;
    /// allocates nothing under it.
    pub(crate) fn set_active_workers(self: &Arc<Self>, n: usize) {
        let n = n.clamp(1, self.cfg.workers);
        let unparked = {
            let mut s = self.sched.lock();
            if self.is_shutdown() || self.cpu_limit.active() == n {
                return;
            }
            self.cpu_limit.active.store(n, Ordering::Relaxed);
            let s = &mut *s;
            let mut parked = 0;
            let mut i = 0;
            while i < s.pidle.len() {
                // An idle P with queued Gs (one handed on at a blocking
                // call, its M not started yet) stays listed: its M gives
                // it up after moving them (`shed_parked_p`).
                if id(s.pidle[i]) >= n && idle_p_is_empty(s.pidle[i]) {
                    s.parked.push(s.pidle.swap_remove(i));
                    parked += 1;
                } else {
                    i += 1;
                }
            }
            self.npidle.fetch_sub(parked, Ordering::SeqCst);
            let mut unparked = 0;
            let mut i = 0;
            while i < s.parked.len() {
                if id(s.parked[i]) < n {
                    s.pidle.push(s.parked.swap_remove(i));
                    unparked += 1;
                } else {
                    i += 1;
                }
            }
            self.npidle.fetch_add(unparked, Ordering::SeqCst);
            unparked
        };
        if unparked > 0 {
            // One spinning M; each that finds work starts the next
            // (`reset_spinning`), and sysmon's errands wake more for
            // waiting preempted Gs.
            self.wakep();
        }
    }
}

/// The id of a P on the idle or parked list (immutable, so readable by
/// whoever holds `sched`, which owns the listed Ps).
fn id(p: PPtr) -> usize {
    // SAFETY: a listed P belongs to the list, which the caller holds
    // under `sched`; `id` never changes.
    unsafe { p.get() }.id
}

fn idle_p_is_empty(p: PPtr) -> bool {
    // SAFETY: as in `id`: nobody else touches a listed P's `runnext`
    // (thieves only steal from its queue, through its `Stealer`).
    unsafe { p.get() }.is_empty()
}

impl M {
    /// If this M holds a parked P (the limit fell below it), gives it up:
    /// its queued Gs (and one `switch_direct` left for the scheduler) go
    /// to the global queue, the P to the parked list, and an idle P's M
    /// is woken for the Gs. The M is left without a P: `find_runnable`
    /// then takes an idle one or sleeps. Returns whether it did.
    pub(super) fn shed_parked_p(&self) -> bool {
        let Some(pp) = self.p.get() else {
            return false;
        };
        // SAFETY: the M owns its current P.
        let p = unsafe { pp.get() };
        if !self.rt.cpu_limit.excludes(p.id) {
            return false;
        }
        // File operations its Gs queued on the P's io_uring ring: submit
        // them now (otherwise the ring's pending entries would wait for
        // sysmon or an idle M's poll).
        crate::netpoll::uring::submit_pending();
        let mut moved = p.drain();
        moved.extend(self.take_handover());
        let was_spinning = self.spinning.replace(false);
        if was_spinning {
            self.rt.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        let any = !moved.is_empty();
        for g in moved {
            self.rt.injector.push(g);
        }
        let p = self.take_p().expect("checked: the M holds a P");
        self.rt.put_idle_p(p);
        if any || was_spinning {
            self.rt.wakep();
        }
        true
    }
}
