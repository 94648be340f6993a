//! Blocking the caller, whether it is a green thread or an OS thread.
//!
//! Every blocking primitive in greenrt (sync, join, timers) parks through
//! here, so the same channel or mutex works between green threads, between
//! OS threads, and across the two.
//!
//! It is also the one interface through which a lower layer (the
//! netpoller) reaches up into the scheduler: to park (`block`, `Waker`),
//! to hand back the green threads a poll made runnable (`ReadyList`), to
//! block an OS thread with its P handed on (`BlockingSection`,
//! `blocks_green`), and to hint that an idle P's M should poll
//! (`wakep_if_local_work`).

use std::thread::{self, Thread};

use super::timers::add_timer;
pub(crate) use super::GRef;
use super::{current_g, park};
use crate::sys::clock;

pub(crate) use super::blocking::BlockingSection;
pub(crate) use super::BlockReason;
pub(crate) use super::{blocks_green, current_p_id, wakep_if_local_work};

/// Green threads made runnable by a lower layer (the netpoller), for the
/// scheduler to queue: Go's gList returned by netpoll.
pub(crate) type ReadyList = Vec<GRef>;

/// Wakes one blocked caller: a green thread or an OS thread.
#[derive(Clone)]
pub(crate) enum Waker {
    Green(GRef),
    Os(Thread),
}

impl Waker {
    /// A waker for the caller.
    pub(crate) fn current() -> Waker {
        // As `block` will: a green thread that may switch parks; one that
        // is unwinding or locked to its OS thread blocks that thread.
        match current_g() {
            Some(g) if blocks_green() => Waker::Green(g),
            _ => Waker::Os(thread::current()),
        }
    }

    /// Wakes the waiter the way the netpoller does (Go's netpollready):
    /// an OS thread at once; a green thread by taking its wake token and
    /// adding it to `ready`, which the scheduler then queues in one batch
    /// (`scheduler::inject`, or the polling M's own P). Lower layers wake
    /// green threads this way without calling up into the scheduler.
    pub(crate) fn ready_into(self, ready: &mut ReadyList) {
        match self {
            Waker::Green(g) => {
                if g.wake_token() {
                    ready.push(g);
                }
            }
            Waker::Os(t) => t.unpark(),
        }
    }

    /// Wakes the waiter, handing this reference to the run queue rather
    /// than cloning one: the woken G's reference count is not touched.
    pub(crate) fn wake_by_value(self) {
        match self {
            Waker::Green(g) => g.unpark_owned(),
            Waker::Os(t) => t.unpark(),
        }
    }
}

/// The running green thread, if the caller is one that may park (see
/// `blocks_green`).
pub(crate) fn current_green() -> Option<GRef> {
    if blocks_green() {
        current_g()
    } else {
        None
    }
}

/// Parks the running green thread until it is woken, like `block(None)`,
/// but a cancelled one does not unwind: returns whether it is cancelled.
/// For waits that must end before the green thread may leave (an
/// in-flight file operation writes into its memory). May return
/// spuriously.
pub(crate) fn block_through_cancel(reason: BlockReason) -> bool {
    super::park_through_cancel(reason)
}

/// Unwinds with [`crate::Cancelled`] if the running green thread's
/// runtime cancelled it (after a `block_through_cancel` wait ended).
pub(crate) fn unwind_if_cancelled() {
    if super::current_is_cancelled() {
        super::unwind_cancelled();
    }
}

/// Blocks the caller until it is woken or `deadline` (monotonic ns) passes;
/// `reason` says what for (in a trace). May return spuriously: callers
/// loop on their own condition.
///
/// Always inlined (and `park` into it): a parked green thread's stack
/// should hold as few frames as possible, since a wake-up reloads every
/// line of them (see `NetFd::io`).
#[inline(always)]
pub(crate) fn block(deadline: Option<u64>, reason: BlockReason) {
    if blocks_green() {
        if let Some(when) = deadline {
            if when <= clock::now() {
                return;
            }
            let g = current_g().expect("on a green thread");
            // Disarmed as the wait ends, whatever ended it.
            let _timer = add_timer(when, &g);
            return park(reason);
        }
        park(reason);
    } else {
        block_os_thread(deadline);
    }
}

/// `block` for an OS thread, or a green thread that may not switch (it
/// is unwinding): blocks the OS thread, handing its P to another M
/// meanwhile.
#[cold]
#[inline(never)]
fn block_os_thread(deadline: Option<u64>) {
    // A green thread locked to its OS thread waits here and is cancelled
    // as a parked one is: shutdown marks it, then unparks every M's
    // thread (`cancel_all`), so either we see the mark now or the
    // unpark ends the wait below. (An unwinding one does not unwind again.)
    unwind_if_cancelled();
    {
        let _section = super::BlockingSection::enter();
        match deadline {
            None => thread::park(),
            Some(when) => {
                let now = clock::now();
                if when > now {
                    thread::park_timeout(std::time::Duration::from_nanos(when - now));
                }
            }
        }
    }
    unwind_if_cancelled();
}
