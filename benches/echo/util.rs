//! Latency percentiles and small helpers shared by the echo bench's modes.

use std::time::Duration;

use crate::common::{median, open_fds};

/// p50, p99 and max of one sample's round trips, in µs.
#[derive(Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Of `latencies` (sorted here); None if there are none.
    pub fn of(latencies: &mut [Duration]) -> Option<Percentiles> {
        latencies.sort_unstable();
        let max = *latencies.last()?;
        let n = latencies.len();
        let pct = |p: f64| latencies[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Some(Percentiles {
            p50: us(pct(0.50)),
            p99: us(pct(0.99)),
            max: us(max),
        })
    }

    /// Each percentile's median over samples (so one sample disturbed by
    /// another process moves none of them).
    pub fn median_of(samples: &[Percentiles]) -> Percentiles {
        let field = |f: fn(&Percentiles) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
        Percentiles {
            p50: field(|p| p.p50),
            p99: field(|p| p.p99),
            max: field(|p| p.max),
        }
    }

    /// "p50 / p99 / max" in ms.
    pub fn fmt_ms(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2}",
            self.p50 / 1e3,
            self.p99 / 1e3,
            self.max / 1e3
        )
    }
}

pub fn fmt_size(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// Reports fds left open by a cell; returns whether there were none.
pub fn check_fds(cell: &str, before: usize) -> bool {
    let after = open_fds();
    if after != before {
        println!("WARNING: {cell}: {before} fds open before the cell, {after} after");
    }
    after == before
}

/// Raises the soft limit on open files to the hard limit: 1 000
/// connections are 2 000 fds in this process.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and then write from.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The positional arguments (criterion's filter): a cell runs if there
/// are none or its name contains one of them.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}
