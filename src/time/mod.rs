//! Time for green threads: `sleep`.
//!
//! A sleeping green thread parks; its wake-up is an entry in the timer
//! queue of the P it slept on (`scheduler::timers`).

use std::time::Duration;

use crate::scheduler;
pub(crate) use crate::sys::clock::{deadline_after, now};

/// Puts the current green thread to sleep for at least `dur`.
///
/// Only the green thread waits: its worker runs other green threads
/// meanwhile. `sleep(Duration::ZERO)` yields.
///
/// # Panics
/// When called outside a green thread (use `std::thread::sleep` there).
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
    let deadline = deadline_after(dur);
    while now() < deadline {
        scheduler::add_timer(deadline, g.clone());
        scheduler::park(scheduler::BlockReason::Timer);
    }
}
