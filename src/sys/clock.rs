//! The monotonic clock, in nanoseconds: the runtime's one time base.

use std::time::{Duration, Instant};

/// Nanoseconds on CLOCK_MONOTONIC (the clock behind `std::time::Instant`).
pub(crate) fn now() -> u64 {
    // CLOCK_MONOTONIC always exists on Linux.
    read(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// The monotonic deadline `d` from now, saturating far in the future.
pub(crate) fn deadline_after(d: Duration) -> u64 {
    now().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The monotonic deadline of `at`, a `std::time::Instant` (which reads
/// the same clock): its distance from `Instant::now()` added to `now()`.
/// A past instant is now; one too far ahead saturates.
pub(crate) fn deadline_at(at: Instant) -> u64 {
    deadline_after(at.saturating_duration_since(Instant::now()))
}

/// CPU time this thread has used, in nanoseconds (a system call: thread
/// CPU clocks are not in the vDSO). Async-signal-safe.
pub(crate) fn thread_cpu_now() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0)
}

/// CPU time thread `tid` of this process has used, in nanoseconds; None
/// if there is no such thread. Its clock id is what
/// `pthread_getcpuclockid` makes of a thread id (the kernel's
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`): the same clock as the
/// thread's own `CLOCK_THREAD_CPUTIME_ID`.
pub(crate) fn thread_cpu(tid: libc::pid_t) -> Option<u64> {
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    const CPUCLOCK_PERTHREAD: libc::clockid_t = 4;
    if tid <= 0 {
        return None;
    }
    read((!tid << 3) | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD)
}

/// Clock `id` in nanoseconds; None if the kernel does not know it.
fn read(id: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; an unknown clock id is an error, not UB.
    let r = unsafe { libc::clock_gettime(id, &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
