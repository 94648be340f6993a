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

use std::ptr::NonNull;
use std::thread::{self, Thread};

use super::timers::add_timer;
pub(crate) use super::GRef;
use super::G;
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
                if let Some(parked) = g.wake() {
                    ready.push(parked);
                }
            }
            Waker::Os(t) => t.unpark(),
        }
    }

    /// Starts loading the first line of a green waiter's header (its park
    /// state), which waking it changes.
    #[inline(always)]
    pub(crate) fn prefetch(&self) {
        if let Waker::Green(g) = self {
            crate::sys::prefetch(g.as_ptr());
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

/// A waker that holds no reference to its green thread, for a waiter
/// whose wait record lives on its own stack and is completed under a lock
/// (the channel's slots): the waiter cannot leave its wait while the
/// completer holds its record, so the completer may wake it through a
/// bare pointer. Saves the reference count's two serialising
/// instructions (a clone at the wait, a drop at the park) on every park
/// and wake-up: a parked green thread owns its own reference, which the
/// wake hands to the run queue (`G::park_owned`, `G::wake`).
pub(crate) enum StackWaker {
    Green(NonNull<G>),
    Os(Thread),
}

// SAFETY: the pointer is only followed by `wake`, whose contract keeps
// the G alive; a G is Sync (shared across threads through its atomics).
unsafe impl Send for StackWaker {}

impl StackWaker {
    /// Waits as `block` does, for the waiter this waker was made for
    /// (the caller, still): green or not is known already.
    #[inline(always)]
    pub(crate) fn block(green: bool, deadline: Option<u64>, reason: BlockReason) {
        if green {
            block_green(deadline, reason);
        } else {
            block_os_thread(deadline);
        }
    }

    /// Whether this wakes a green thread.
    pub(crate) fn is_green(&self) -> bool {
        matches!(self, StackWaker::Green(_))
    }

    /// A waker for the caller (green or not, as `block` will wait).
    pub(crate) fn current() -> StackWaker {
        // `blocks_green`, with one look-up of the M for both.
        let green = super::m::current_m()
            .filter(|m| m.locked.get() == 0)
            .and_then(|m| NonNull::new(m.curg.get().cast_mut()))
            .filter(|_| !thread::panicking());
        match green {
            Some(g) => StackWaker::Green(g),
            None => StackWaker::Os(thread::current()),
        }
    }

    /// Wakes the waiter's green thread (its token, or PARKED → RUNNABLE)
    /// now; returns what to finish after the caller's lock is released.
    ///
    /// # Safety
    /// The waiter must still be waiting: it must not be able to return
    /// from its wait (and so exit, freeing its G) until this returns.
    pub(crate) unsafe fn wake(self) -> Woken {
        match self {
            // SAFETY: the caller keeps the waiter, hence its G, alive.
            StackWaker::Green(g) => Woken(unsafe { g.as_ref() }.wake().map(Waker::Green)),
            StackWaker::Os(t) => Woken(Some(Waker::Os(t))),
        }
    }
}

/// A wake-up begun by [`StackWaker::wake`]: the G to queue (made runnable
/// already), the OS thread to unpark, or nothing (the G was running and
/// kept the token).
#[must_use = "a woken G must be queued"]
pub(crate) struct Woken(Option<Waker>);

impl Woken {
    /// Finishes the wake-up: queues the G or unparks the thread.
    pub(crate) fn finish(self) {
        match self.0 {
            Some(Waker::Green(g)) => super::ready(g),
            Some(Waker::Os(t)) => t.unpark(),
            None => {}
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
        block_green(deadline, reason);
    } else {
        block_os_thread(deadline);
    }
}

/// `block` for a caller already known to be a green thread that may park
/// (`blocks_green`; its `StackWaker::current` is `Green`): saves looking
/// that up again on every wait.
#[inline(always)]
pub(crate) fn block_green(deadline: Option<u64>, reason: BlockReason) {
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
