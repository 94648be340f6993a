//! `JoinHandle`: waiting for a green thread's result.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;

use crate::scheduler::park::{block, Waker};

/// Where a green thread leaves its result for the joiner.
pub(crate) struct Packet<T> {
    done: AtomicBool,
    result: UnsafeCell<Option<thread::Result<T>>>,
    waiter: Mutex<Option<Waker>>,
}

// SAFETY: `result` is written once (by the green thread as it finishes,
// or by `abandon` for a G that will never run) before `done` is set
// (Release), and read only by the single joiner after it sees `done`
// (Acquire); a `T` crosses threads that way, hence T: Send.
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Packet<T> {
        Packet {
            done: AtomicBool::new(false),
            result: UnsafeCell::new(None),
            waiter: Mutex::new(None),
        }
    }

    pub(crate) fn complete(&self, r: thread::Result<T>) {
        let _np = crate::preempt::no_preempt();
        // SAFETY: `complete` runs once per packet: when the G finishes, or
        // from `abandon` for a G that never will (the scheduler guarantees
        // the two exclude each other). The joiner reads `result` only after
        // `done` is set below, so no other reference to it exists now.
        unsafe { *self.result.get() = Some(r) };
        self.done.store(true, Ordering::Release);
        if let Some(w) = self.waiter.lock().take() {
            w.wake_by_value();
        }
    }
}

impl<T> Packet<T> {
    /// The G will never finish (its runtime shut down first): wake the
    /// joiner with a [`Cancelled`](super::Cancelled) error.
    pub(crate) fn abandon(&self) {
        if !self.done.load(Ordering::Acquire) {
            self.complete(Err(Box::new(super::Cancelled::new())));
        }
    }
}

/// Where a `JoinHandle` finds its packet (inside the G's spawn cell).
pub(crate) trait JoinSlot<T>: Send + Sync {
    fn packet(&self) -> &Packet<T>;
}

/// An owned permission to join a green thread (wait for it to finish).
///
/// Dropping the handle detaches the green thread. Like
/// `std::thread::JoinHandle`, `join` returns `Err` with the panic payload
/// if the green thread panicked; the runtime itself is unaffected.
pub struct JoinHandle<T> {
    slot: Arc<dyn JoinSlot<T>>,
    id: u64,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(slot: Arc<dyn JoinSlot<T>>, id: u64) -> JoinHandle<T> {
        JoinHandle { slot, id }
    }

    /// Waits for the green thread to finish and returns its result. Works
    /// from green threads (parks only the caller) and from OS threads.
    pub fn join(self) -> thread::Result<T> {
        self.wait();
        let p = self.slot.packet();
        // SAFETY: `wait` saw `done` with Acquire, so the single write to
        // `result` happened before and nothing writes it again; `join`
        // takes `self`, so this is the only access from the joiner's side.
        unsafe { (*p.result.get()).take() }.expect("greenrt: green thread result taken twice")
    }

    /// Blocks until the green thread has finished, keeping the handle (so
    /// a caller whose wait unwinds — a cancelled green thread — still
    /// holds it and can join in its unwinding).
    pub(crate) fn wait(&self) {
        let _np = crate::preempt::no_preempt();
        let p = self.slot.packet();
        if !p.done.load(Ordering::Acquire) {
            {
                let mut w = p.waiter.lock();
                if !p.done.load(Ordering::Acquire) {
                    *w = Some(Waker::current());
                }
            }
            while !p.done.load(Ordering::Acquire) {
                block(None);
            }
        }
    }

    /// True once the green thread has finished (returned or panicked).
    pub fn is_finished(&self) -> bool {
        self.slot.packet().done.load(Ordering::Acquire)
    }

    /// The green thread's id (as `task::current_id` reports it inside).
    pub fn id(&self) -> u64 {
        self.id
    }
}
