//! G: a green thread — its stack, saved context, state and identity.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use super::shared::Shared;
use crate::context;
use crate::stack::Stack;
use crate::task::local::LocalMap;

/// Waiting in a run queue (or about to be put in one).
pub(crate) const RUNNABLE: u8 = 0;
/// Running on an M.
pub(crate) const RUNNING: u8 = 1;
/// Parked; `unpark` makes it runnable again.
pub(crate) const PARKED: u8 = 2;
/// Finished; its stack has been released.
pub(crate) const DEAD: u8 = 3;

/// A shared handle to a G. Run queues, timers and wait queues hold these.
pub(crate) type GRef = Arc<G>;

pub(crate) struct G {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) rt: Arc<Shared>,
    state: AtomicU8,
    /// A wake-up token, as for `std::thread::park`: set by `unpark`,
    /// consumed by `park`.
    notified: AtomicBool,
    /// Saved stack pointer while the G is not running.
    pub(crate) sp: UnsafeCell<*mut u8>,
    /// Top of the stack; the parent slot lives just below it.
    pub(crate) top: *mut u8,
    /// Guard page range, kept outside `stack` so the SIGSEGV handler can
    /// read it without touching the Option.
    pub(crate) guard: (usize, usize),
    stack: UnsafeCell<Option<Stack>>,
    entry: UnsafeCell<Option<Box<dyn FnOnce() + Send>>>,
    pub(crate) locals: UnsafeCell<LocalMap>,
}

// SAFETY: the UnsafeCell fields are only touched by the M that currently
// runs (or last ran and then released, with a release/acquire hand-over
// through the run queues and `state`) this G.
unsafe impl Send for G {}
// SAFETY: as above; shared access from other threads goes through atomics.
unsafe impl Sync for G {}

impl G {
    pub(crate) fn new(
        rt: Arc<Shared>,
        id: u64,
        name: Option<Box<str>>,
        stack: Stack,
        entry: Box<dyn FnOnce() + Send>,
    ) -> GRef {
        let top = stack.top();
        let guard = stack.guard();
        let g = Arc::new(G {
            id,
            name,
            rt,
            state: AtomicU8::new(RUNNABLE),
            notified: AtomicBool::new(false),
            sp: UnsafeCell::new(std::ptr::null_mut()),
            top,
            guard,
            stack: UnsafeCell::new(Some(stack)),
            entry: UnsafeCell::new(Some(entry)),
            locals: UnsafeCell::new(LocalMap::default()),
        });
        let arg = Arc::as_ptr(&g) as *mut u8;
        // SAFETY: the stack is ours, fresh or pooled, and large enough.
        let sp = unsafe { context::prepare(top, super::m::g_entry, arg) };
        // SAFETY: nobody else can see the G yet.
        unsafe { *g.sp.get() = sp };
        g
    }

    pub(crate) fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::SeqCst);
    }

    /// Takes the entry closure. Only the G itself calls this, once.
    ///
    /// # Safety
    /// Must be called on the G's own stack, while it runs.
    pub(crate) unsafe fn take_entry(&self) -> Option<Box<dyn FnOnce() + Send>> {
        (*self.entry.get()).take()
    }

    /// Takes the stack of a G that has exited.
    ///
    /// # Safety
    /// The G must be DEAD and no longer running on its stack.
    pub(crate) unsafe fn take_stack(&self) -> Option<Stack> {
        (*self.stack.get()).take()
    }

    /// Consumes the wake-up token, if set.
    pub(crate) fn take_token(&self) -> bool {
        self.notified.swap(false, Ordering::SeqCst)
    }

    /// Called by the scheduler after the G switched away to park: returns
    /// true if an `unpark` raced with the park, in which case the G is
    /// RUNNABLE again and the caller must schedule it.
    pub(crate) fn finish_park(&self) -> bool {
        self.state.store(PARKED, Ordering::SeqCst);
        self.notified.load(Ordering::SeqCst)
            && self
                .state
                .compare_exchange(PARKED, RUNNABLE, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// Wakes the G: sets its token and, if it is parked, makes it runnable.
    pub(crate) fn unpark(self: &Arc<Self>) {
        if self.wake_token() {
            super::ready(self.clone());
        }
    }

    /// Sets the wake-up token; returns true if the G was parked and is now
    /// RUNNABLE, in which case the caller must queue it.
    pub(crate) fn wake_token(&self) -> bool {
        self.notified.store(true, Ordering::SeqCst);
        self.state
            .compare_exchange(PARKED, RUNNABLE, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// The display name used in messages.
    pub(crate) fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("<unnamed>")
    }
}
