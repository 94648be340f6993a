//! sysmon's errands: the work that keeps the runtime supplied but may
//! allocate or take runtime locks, run on a thread of its own.
//!
//! sysmon is what gets a preempted green thread its P back, so it must
//! never wait for anything that green thread could hold — the global
//! allocator above all (a locking allocator in the main executable is
//! preemptible code). So sysmon only reads atomics and sends signals;
//! whatever needs an allocation or a lock it asks of this thread:
//!
//! - `SPARES`: keep a spare M in every spare slot (`Shared::ensure_spares`;
//!   starting a thread allocates), so the preemption path and the
//!   handler's retake can hand a P over without creating one;
//! - `POLL`: poll the netpoller when nobody has for a while (waking green
//!   threads queues them, which may allocate);
//! - `WAKEP`: get an idle P running when preempted green threads wait.
//!
//! Unasked, it trims the runtime's stack pool once a
//! `stack::TRIM_INTERVAL_NS` (`stack::trim_pool`: `MADV_FREE` and
//! `munmap` of idle stacks, batched, here rather than on a worker).
//!
//! With the worker count following the CPU quota, it also re-reads the
//! quota once every `QuotaSource::every` and applies the limit
//! (`Shared::refresh_cpu_limit`; reading files allocates).
//!
//! If this thread blocks behind a preempted green thread, only these
//! errands wait; preemption and hand-off go on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use super::park::ReadyList;
use super::shared::Shared;
use crate::sys::sync::AtomicU32;
use crate::sys::{futex_wait, futex_wake};

/// Fill the spare-M slots.
pub(crate) const SPARES: u32 = 1;
/// Poll the netpoller (it has gone unpolled too long).
pub(crate) const POLL: u32 = 2;
/// Start an M for an idle P: preempted green threads wait.
pub(crate) const WAKEP: u32 = 4;
/// Exit (the runtime has stopped).
const STOP: u32 = 8;

/// How long the errand thread sleeps when nothing is asked of it: a
/// safety net only, every request wakes it.
const IDLE_WAIT_NS: u64 = 100_000_000;

/// The errands asked for, and the futex word the errand thread sleeps on.
#[derive(Default)]
pub(crate) struct Chores {
    pending: AtomicU32,
    seq: AtomicU32,
}

impl Chores {
    /// Asks for `what` (a set of the flags above). Lock-free and
    /// allocation-free: sysmon calls it.
    pub(crate) fn request(&self, what: u32) {
        if self.pending.fetch_or(what, Ordering::AcqRel) & what != what {
            self.seq.fetch_add(1, Ordering::Release);
            futex_wake(&self.seq);
        }
    }

    /// Makes the errand thread exit.
    pub(crate) fn stop(&self) {
        self.request(STOP);
    }
}

/// Starts the errand thread of `rt`.
pub(crate) fn start(rt: Arc<Shared>) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("{}-errands", rt.cfg.thread_name))
        .spawn(move || run(&rt))
}

fn run(rt: &Arc<Shared>) {
    let chores = &rt.chores;
    let mut next_trim = crate::sys::clock::now() + crate::stack::TRIM_INTERVAL_NS;
    let quota_every = rt
        .cpu_limit
        .source
        .as_ref()
        .map(|s| s.every.as_nanos().min(u128::from(u64::MAX / 2)) as u64);
    let mut next_quota = crate::sys::clock::now().saturating_add(quota_every.unwrap_or(u64::MAX));
    loop {
        let seen = chores.seq.load(Ordering::Acquire);
        let what = chores.pending.swap(0, Ordering::AcqRel);
        if what & STOP != 0 {
            return;
        }
        if what & SPARES != 0 {
            rt.ensure_spares();
        }
        if what & POLL != 0 {
            let mut ready = ReadyList::new();
            crate::netpoll::poll_if_stale(crate::sys::clock::now(), &mut ready);
            super::inject_polled(ready);
        }
        if what & WAKEP != 0 {
            rt.wakep();
        }
        let now = crate::sys::clock::now();
        if now >= next_trim {
            crate::stack::trim_pool(&rt.stacks, rt.registry.live());
            next_trim = now + crate::stack::TRIM_INTERVAL_NS;
        }
        if let Some(every) = quota_every.filter(|_| now >= next_quota) {
            rt.refresh_cpu_limit();
            next_quota = crate::sys::clock::now() + every;
        }
        if what == 0 {
            let until_quota = next_quota.saturating_sub(crate::sys::clock::now());
            futex_wait(
                &chores.seq,
                seen,
                Some(IDLE_WAIT_NS.min(until_quota.max(1))),
            );
        }
    }
}
