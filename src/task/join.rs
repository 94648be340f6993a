//! `JoinHandle`: waiting for a green thread's result.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::Duration;

use crate::scheduler::park::{block, BlockReason, Waker};
use crate::scheduler::GRef;
use crate::time;

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

/// An owned permission to join a green thread (wait for it to finish).
///
/// Dropping the handle detaches the green thread; its result is then
/// dropped when it finishes, and a result (or panic payload) whose
/// destructor panics aborts the process, as std's does. Like
/// `std::thread::JoinHandle`, `join` returns `Err` with the panic payload
/// if the green thread panicked; the runtime itself is unaffected.
pub struct JoinHandle<T> {
    /// Keeps the G's spawn cell, and so `packet`, alive (only held).
    _cell: GRef,
    /// The result slot inside the cell.
    packet: NonNull<Packet<T>>,
    id: u64,
}

// SAFETY: the handle shares the cell with the green thread, which is what
// an `Arc` of it did before: the packet synchronises itself (see its Sync
// impl) and hands the `T` over once, to the one joiner. `T: Send` is
// required by every spawn, the only way to make a handle.
unsafe impl<T> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only reads the packet's state word (is_finished)
// and the id; taking the result needs the handle itself.
unsafe impl<T> Sync for JoinHandle<T> {}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// # Safety
    /// `packet` is the result slot of `g`'s spawn cell, whose result type
    /// is `T`.
    pub(crate) unsafe fn new(g: GRef, packet: NonNull<Packet<T>>, id: u64) -> JoinHandle<T> {
        JoinHandle {
            _cell: g,
            packet,
            id,
        }
    }

    fn packet(&self) -> &Packet<T> {
        // SAFETY: `_cell` keeps the cell that holds the packet alive (`new`'s
        // contract) for as long as this handle, which the borrow outlives
        // not.
        unsafe { self.packet.as_ref() }
    }

    /// Waits for the green thread to finish and returns its result. Works
    /// from green threads (parks only the caller) and from OS threads.
    pub fn join(mut self) -> thread::Result<T> {
        self.wait();
        let p = self.packet();
        // SAFETY: `wait` saw `done` with Acquire, so the single write to
        // `result` happened before and nothing writes it again; `join`
        // takes `self`, so this is the only access from the joiner's side.
        unsafe { (*p.result.get()).take() }.expect("greenrt: green thread result taken twice")
    }

    /// Waits for the green thread to finish for at most `timeout`: its
    /// result (as [`join`](Self::join)), or the handle back if it is still
    /// running. Works from green threads and OS threads alike.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// greenrt::run(|| {
    ///     let h = greenrt::spawn(|| greenrt::sleep(Duration::from_millis(50)));
    ///     let h = h.join_timeout(Duration::from_millis(1)).unwrap_err();
    ///     assert!(h.join_timeout(Duration::from_secs(60)).unwrap().is_ok());
    /// });
    /// ```
    pub fn join_timeout(mut self, timeout: Duration) -> Result<thread::Result<T>, JoinHandle<T>> {
        if self.wait_until(Some(time::deadline_after(timeout))) {
            Ok(self.join())
        } else {
            Err(self)
        }
    }

    /// Blocks until the green thread has finished, keeping the handle (so
    /// a caller whose wait unwinds — a cancelled green thread — still
    /// holds it and can join in its unwinding).
    pub(crate) fn wait(&mut self) {
        self.wait_until(None);
    }

    /// Blocks until the green thread has finished or `deadline`
    /// (monotonic ns) passes; returns whether it finished. On a timeout
    /// the waker is taken back, so the cell is as if nobody had waited.
    fn wait_until(&mut self, deadline: Option<u64>) -> bool {
        let _np = crate::preempt::no_preempt();
        let p = self.packet();
        let state = p.state.load(Ordering::Acquire);
        if state & DONE != 0 {
            return true;
        }
        // Waited before (and unwound out of it): take the old waker's
        // registration back first, unless the G finished meanwhile.
        if state & WAITING != 0 && !self.unregister() {
            return true;
        }
        // SAFETY: WAITING is clear, so the finisher does not touch the
        // cell, and `&mut self` makes us its only joiner.
        unsafe { *p.waiter.get() = Some(Waker::current()) };
        if p.state.fetch_or(WAITING, Ordering::AcqRel) & DONE != 0 {
            // Finished before we registered: the finisher saw no WAITING
            // and left the cell alone; the waker is ours to drop.
            // SAFETY: as above.
            drop(unsafe { (*p.waiter.get()).take() });
            return true;
        }
        while !p.is_done() {
            if deadline.is_some_and(|d| time::now() >= d) {
                // Finished meanwhile if the waker could not be taken back
                // (the finisher has it, and wakes us spuriously later).
                return !self.unregister();
            }
            block(deadline, BlockReason::Join);
        }
        true
    }

    /// Clears WAITING so the waker in the cell is ours again, and drops
    /// it. Returns false (leaving everything) if the G finished first:
    /// the finisher then owns the waker.
    /// Called only from `wait_until`, which holds `&mut self`.
    fn unregister(&self) -> bool {
        let p = self.packet();
        if p.state
            .compare_exchange(WAITING, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // SAFETY: WAITING is clear and DONE was not set, so the finisher
        // will not touch the cell; our caller's `&mut self` makes us its
        // only joiner.
        drop(unsafe { (*p.waiter.get()).take() });
        true
    }

    /// True once the green thread has finished (returned or panicked).
    pub fn is_finished(&self) -> bool {
        self.packet().is_done()
    }

    /// The green thread's id (as `task::current_id` reports it inside).
    pub fn id(&self) -> u64 {
        self.id
    }
}
