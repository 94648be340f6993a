//! Cancellation: what a green thread unwinds with when its runtime shuts
//! down (see `Runtime::shutdown_timeout`).

use std::fmt;

/// The unwind payload of a cancelled green thread.
///
/// When a [`Runtime`](crate::Runtime) shuts down, every green thread that
/// has not finished is cancelled: a blocked one wakes and unwinds from the
/// blocking call it is in (its destructors run, its sockets close, the
/// `greenrt::sync` locks it holds are released without poisoning), and a
/// running one unwinds at its next blocking call. Every later blocking
/// call of a cancelled green thread unwinds again at once.
/// [`JoinHandle::join`](crate::JoinHandle::join) of such a green thread
/// returns `Err(payload)` with `payload.downcast_ref::<Cancelled>()` being
/// `Some`.
///
/// ```
/// use std::time::Duration;
///
/// let rt = greenrt::Runtime::new().unwrap();
/// let h = rt.spawn(|| greenrt::sleep(Duration::from_secs(3600)));
/// rt.shutdown_timeout(Duration::from_secs(1));
/// let payload = h.join().unwrap_err();
/// assert!(payload.downcast_ref::<greenrt::Cancelled>().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cancelled {}

impl Cancelled {
    pub(crate) fn new() -> Cancelled {
        Cancelled {}
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("green thread cancelled: its runtime shut down")
    }
}

impl std::error::Error for Cancelled {}

/// Whether the calling green thread has been cancelled (its runtime is
/// shutting down). False outside green threads.
pub fn is_cancelled() -> bool {
    crate::scheduler::current_is_cancelled()
}
