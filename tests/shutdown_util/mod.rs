//! Helpers shared by the shutdown test files (shutdown.rs,
//! shutdown_preempted.rs): the serial lock and time limits, fd/VM counts,
//! drop counting and timing.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{serial, with_timeout};

pub const LIMIT: Duration = Duration::from_secs(120);
/// Each drop must return within this (the default timeout is 1 s).
pub const DROP_LIMIT: Duration = Duration::from_secs(2);
pub const BIG_STACK: usize = 16 << 20;
pub const FOREVER: Duration = Duration::from_secs(3600);

pub fn exclusive<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let _serial = serial();
    with_timeout(LIMIT, f)
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// The process's virtual size in bytes (/proc/self/statm, first field).
pub fn virtual_size() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("statm's first field");
    pages * 4096
}

pub fn runtime(workers: usize) -> greenrt::Runtime {
    greenrt::Builder::new()
        .workers(workers)
        .build()
        .expect("build a runtime")
}

/// Counts its drops: proof that a green thread's stack was unwound.
pub struct Dropped(pub Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Waits until `n` green threads have checked in at `parked` (each just
/// before its blocking call), then a little longer so they are inside it.
pub fn wait_parked(parked: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while parked.load(SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {} of {n} green threads got going",
            parked.load(SeqCst)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
}

/// Drops `rt` and returns how long that took.
pub fn timed_drop(rt: greenrt::Runtime) -> Duration {
    let start = Instant::now();
    drop(rt);
    start.elapsed()
}

pub fn is_cancelled(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.downcast_ref::<greenrt::Cancelled>().is_some()
}
