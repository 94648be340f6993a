//! A G's park/wake hand-shake (`ParkState`), kept apart from the G so
//! that the loom tests drive this very code (docs/DESIGN.md, "Model
//! checking").

use std::sync::atomic::Ordering;

use crate::sys::sync::{AtomicBool, AtomicU8};

use super::g::{PARKED, RUNNABLE, RUNNING};

/// A G's park/wake hand-shake: its state word (which also carries the
/// wake-up token) and its cancel mark. A type of its own so that the loom
/// tests drive this very code (docs/DESIGN.md, "Model checking").
///
/// One word for state and token (tokio keeps its task state in one word
/// too): a wake-up is one compare-and-swap, parking is one, and starting
/// to run is one swap, where state and token in two words took five
/// serialising instructions per park and wake.
///
/// Every transition a waker or the scheduler makes is a read-modify-write
/// on the word, even a waker's "nothing to do" (a CAS to the same value):
/// the word's modification order then orders each waker against the G's
/// owner, so whoever comes second sees what the first published before
/// (a plain load on either side would allow the store-buffering outcome
/// in which the waker sees RUNNABLE while the starting G misses the
/// condition the waker had just set, and the G parks forever).
#[repr(C)]
pub(crate) struct ParkState {
    state: AtomicU8,
    /// Set when its runtime shuts down: every blocking call of the G
    /// unwinds with [`crate::Cancelled`] from then on.
    cancelled: AtomicBool,
}

/// Running, with a wake-up token pending (an `unpark` came while it ran):
/// its next park returns at once.
pub(crate) const NOTIFIED: u8 = 4;

impl ParkState {
    pub(crate) fn new() -> ParkState {
        ParkState {
            state: AtomicU8::new(RUNNABLE),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Marks the G cancelled (see [`crate::Cancelled`]). The canceller
    /// then wakes the G, whose read-modify-write on the state word
    /// releases this store to whoever sees the wake-up.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the G's runtime cancelled it.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Sets RUNNING (a swap, acquiring what any waker released while the
    /// G was queued: see the type's doc), or RUNNABLE or DEAD (stores by
    /// the G's M after it switched out; a token they overwrite is moot,
    /// the G is queued or gone).
    pub(crate) fn set_state(&self, s: u8) {
        debug_assert!(s != PARKED && s != NOTIFIED);
        if s == RUNNING {
            self.state.swap(RUNNING, Ordering::AcqRel);
        } else {
            self.state.store(s, Ordering::Release);
        }
    }

    /// Called by the running G: consumes a pending wake-up token, if set.
    /// Without one, a plain load: the park that follows is a CAS.
    pub(crate) fn take_token(&self) -> bool {
        self.state.load(Ordering::Relaxed) == NOTIFIED
            && self
                .state
                .compare_exchange(NOTIFIED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Called by the scheduler after the G switched away to park: returns
    /// true if an `unpark` came first (a token is pending), in which case
    /// the G is RUNNABLE again and the caller must schedule it.
    pub(crate) fn finish_park(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(s) => {
                debug_assert_eq!(s, NOTIFIED, "parking a G that is not running");
                self.state.store(RUNNABLE, Ordering::Relaxed);
                true
            }
        }
    }

    /// Wakes the G: leaves a token if it runs, makes it RUNNABLE if it is
    /// parked; returns true in the latter case, when the caller must queue
    /// it. A G already RUNNABLE (or notified, or dead) is left as it is,
    /// through a CAS all the same (see the type's doc): it will look at
    /// its condition when it runs.
    pub(crate) fn wake_token(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let new = match s {
                RUNNING => NOTIFIED,
                PARKED => RUNNABLE,
                other => other,
            };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return s == PARKED,
                Err(now) => s = now,
            }
        }
    }
}
