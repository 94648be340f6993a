//! Process-wide counters of the copy paths, so tests and benchmarks can
//! tell which path ran (read through `greenrt::io::stats`). Relaxed
//! atomics: they count, they order nothing. Copy loops tally locally and
//! add once per copy, not once per syscall.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) static SPLICED_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static COPIED_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static SPLICE_CALLS: AtomicU64 = AtomicU64::new(0);
pub(crate) static FALLBACKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static SENDFILE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Adds a copy's tallies to the counters when dropped (also on the error
/// paths).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) spliced: u64,
    pub(crate) copied: u64,
    pub(crate) calls: u64,
    pub(crate) sendfile_calls: u64,
}

impl Drop for Tally {
    fn drop(&mut self) {
        for (counter, n) in [
            (&SPLICED_BYTES, self.spliced),
            (&COPIED_BYTES, self.copied),
            (&SPLICE_CALLS, self.calls),
            (&SENDFILE_CALLS, self.sendfile_calls),
        ] {
            if n != 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }
}
