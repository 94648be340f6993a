//! `JoinHandle`: waiting for a green thread's result.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;

use crate::scheduler::park::{block, BlockReason, Waker};

/// `Packet::state`: the result is written.
const DONE: u8 = 1;
/// `Packet::state`: a joiner's waker is in `waiter`.
const WAITING: u8 = 2;

/// Where a green thread leaves its result for the joiner.
///
/// One state word, no lock (Go's and tokio's join work the same way): the
/// finishing side sets DONE, the joiner sets WAITING after putting its
/// waker in `waiter`, each with one atomic OR. Whoever comes second sees
/// the other's bit: the finisher then takes the waker and wakes it, the
/// joiner returns at once.
pub(crate) struct Packet<T> {
    state: AtomicU8,
    result: UnsafeCell<Option<thread::Result<T>>>,
    /// Written by the joiner while WAITING is clear; taken by the finisher
    /// once it saw WAITING.
    waiter: UnsafeCell<Option<Waker>>,
}

// SAFETY: `result` is written once (by the green thread as it finishes,
// or by `abandon` for a G that will never run) before DONE is set
// (Release), and read only by the single joiner after it sees DONE
// (Acquire); a `T` crosses threads that way, hence T: Send. `waiter` is
// handed over the same way through WAITING (see the type's doc).
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Packet<T> {
        Packet {
            state: AtomicU8::new(0),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
        }
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) & DONE != 0
    }

    pub(crate) fn complete(&self, r: thread::Result<T>) {
        let _np = crate::preempt::no_preempt();
        // SAFETY: `complete` runs once per packet: when the G finishes, or
        // from `abandon` for a G that never will (the scheduler guarantees
        // the two exclude each other). The joiner reads `result` only after
        // DONE is set below, so no other reference to it exists now.
        unsafe { *self.result.get() = Some(r) };
        if self.state.fetch_or(DONE, Ordering::AcqRel) & WAITING != 0 {
            // SAFETY: WAITING was set (Release) after the joiner wrote its
            // waker, and it no longer touches the cell: having set WAITING
            // before our DONE, it only waits for DONE now.
            let waker = unsafe { (*self.waiter.get()).take() };
            if let Some(w) = waker {
                w.wake_by_value();
            }
        }
    }
}

impl<T> Packet<T> {
    /// The G will never finish (its runtime shut down first): wake the
    /// joiner with a [`Cancelled`](super::Cancelled) error.
    pub(crate) fn abandon(&self) {
        if !self.is_done() {
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
    pub fn join(mut self) -> thread::Result<T> {
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
    pub(crate) fn wait(&mut self) {
        let _np = crate::preempt::no_preempt();
        let p = self.slot.packet();
        let state = p.state.load(Ordering::Acquire);
        if state & DONE != 0 {
            return;
        }
        // Waited before (and unwound out of it): take the old waker's
        // registration back first, unless the G finished meanwhile.
        if state & WAITING != 0
            && p.state
                .compare_exchange(WAITING, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        // SAFETY: WAITING is clear, so the finisher does not touch the
        // cell, and `&mut self` makes us its only joiner.
        unsafe { *p.waiter.get() = Some(Waker::current()) };
        if p.state.fetch_or(WAITING, Ordering::AcqRel) & DONE != 0 {
            // Finished before we registered: the finisher saw no WAITING
            // and left the cell alone; the waker is ours to drop.
            // SAFETY: as above.
            drop(unsafe { (*p.waiter.get()).take() });
            return;
        }
        while !p.is_done() {
            block(None, BlockReason::Join);
        }
    }

    /// True once the green thread has finished (returned or panicked).
    pub fn is_finished(&self) -> bool {
        self.slot.packet().is_done()
    }

    /// The green thread's id (as `task::current_id` reports it inside).
    pub fn id(&self) -> u64 {
        self.id
    }
}
