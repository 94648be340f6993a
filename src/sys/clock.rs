//! The monotonic clock, in nanoseconds: the runtime's one time base.

use std::time::Duration;

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
