//! Sleeping on a green thread: [`sleep`] and [`sleep_until`] (also at the
//! crate root, as `greenrt::sleep`).
//!
//! Only the green thread sleeps: it parks, and its worker runs other green
//! threads until the time is up, so thousands of sleeping green threads
//! cost no OS thread. A sleep never ends early; it ends late by however
//! long the woken green thread then waits for a worker: next to nothing
//! on a runtime with a free worker, around a preemption quantum when every
//! worker is busy with CPU-bound green threads. Both take std's types: `Duration` and a monotonic `std::time::Instant`.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! greenrt::run(|| {
//!     let start = Instant::now();
//!     let sleepers: Vec<_> = (0..1000)
//!         .map(|_| greenrt::spawn(|| greenrt::sleep(Duration::from_millis(20))))
//!         .collect();
//!     for s in sleepers {
//!         s.join().unwrap();
//!     }
//!     // They slept at the same time, not one after another.
//!     assert!(start.elapsed() >= Duration::from_millis(20));
//!     greenrt::sleep_until(start + Duration::from_millis(30));
//!     assert!(start.elapsed() >= Duration::from_millis(30));
//! });
//! ```
//!
//! Both panic outside a green thread (use `std::thread::sleep` there).
//! Waits with a time limit elsewhere in greenrt take the same clock:
//! [`Condvar::wait_timeout`](crate::sync::Condvar::wait_timeout),
//! [`Receiver::recv_timeout`](crate::sync::mpsc::Receiver::recv_timeout)
//! and `recv_deadline`,
//! [`JoinHandle::join_timeout`](crate::JoinHandle::join_timeout), and the
//! sockets' read and write timeouts.

// A sleeping green thread parks; its wake-up is an entry in the timer
// wheel of the P it slept on (`scheduler::timers`).

use std::time::{Duration, Instant};

use crate::scheduler;
pub(crate) use crate::sys::clock::{deadline_after, deadline_at, now};

/// Puts the current green thread to sleep for at least `dur`.
///
/// Only the green thread waits: its worker runs other green threads
/// meanwhile. `sleep(Duration::ZERO)` yields.
///
/// # Panics
/// When called outside a green thread (use `std::thread::sleep` there).
#[track_caller]
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
    // `dur` is not zero, so the deadline is still ahead: no second clock
    // read before the first wait.
    sleep_to(g, deadline_after(dur), true);
}

/// Puts the current green thread to sleep until `deadline` (returns at
/// once, without yielding, if it has passed).
///
/// `Instant` reads CLOCK_MONOTONIC, the clock of the runtime's timers, so
/// the wake-up is never early.
///
/// # Panics
/// When called outside a green thread, as [`sleep`] does.
#[track_caller]
pub fn sleep_until(deadline: Instant) {
    let Some(g) = scheduler::current_g() else {
        panic!(
            "greenrt::sleep_until called outside a green thread (use greenrt::run or Runtime::block_on)"
        );
    };
    if std::thread::panicking() {
        let _section = scheduler::BlockingSection::enter();
        return std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    sleep_to(g, deadline_at(deadline), false);
}

/// Parks `g`, the running green thread, until `deadline` (monotonic ns);
/// `ahead`: the caller knows the deadline has not passed yet.
fn sleep_to(g: scheduler::GRef, deadline: u64, ahead: bool) {
    if !scheduler::park::blocks_green() {
        // Locked to its OS thread (`task::lock_os_thread`): block it.
        drop(g);
        while now() < deadline {
            scheduler::park::block(Some(deadline), scheduler::BlockReason::Timer);
        }
        return;
    }
    if !ahead && now() >= deadline {
        return;
    }
    loop {
        let timer = scheduler::add_timer(deadline, &g);
        scheduler::park(scheduler::BlockReason::Timer);
        // A timer fires only once the clock has passed its deadline: no
        // need to read the clock then.
        if timer.fired() || now() >= deadline {
            return;
        }
    }
}
