//! The one allocation behind a spawned green thread: the G header, the
//! closure, and the joiner's result slot.
//!
//! Spawning allocates once (like a tokio task cell) instead of separately
//! for the G, the boxed closure and the result: fewer mallocs, and fewer
//! cross-thread frees when another worker runs and finishes the G.

use std::cell::UnsafeCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::join::{JoinSlot, Packet};
use super::local;
use crate::scheduler::{GBody, G};

#[repr(C)]
pub(crate) struct Cell<F, T> {
    /// First field: `GRef` finds the header at the allocation's address.
    header: G,
    f: UnsafeCell<Option<F>>,
    packet: Packet<T>,
}

// SAFETY: `f` is taken exactly once, by `start` (on the G, or on the
// scheduler before the G ever ran) or by `abandon` (at shutdown, when no M
// runs); the packet synchronises itself.
unsafe impl<F: Send, T: Send> Sync for Cell<F, T> {}

impl<F, T> Cell<F, T> {
    /// The cell, allocated and built in place. `Arc::new(Cell { .. })`
    /// built its few hundred bytes on the stack and copied them into the
    /// allocation (twice, through `Box::new`): 8% of a chain of spawns'
    /// time went to those copies. `header` makes the G header, called
    /// where it is written so that it is built in place too.
    #[inline(always)]
    pub(crate) fn new_arc(header: impl FnOnce() -> G, f: F) -> Arc<Cell<F, T>> {
        let mut cell = Arc::<Cell<F, T>>::new_uninit();
        let p = Arc::get_mut(&mut cell)
            .expect("a new Arc is unique")
            .as_mut_ptr();
        // SAFETY: `p` points to the new allocation, uniquely ours and
        // sized and aligned for a `Cell<F, T>`; each field is written
        // once, through raw pointers (no reference to uninitialised
        // memory), so every field is initialised before `assume_init`.
        unsafe {
            std::ptr::addr_of_mut!((*p).header).write(header());
            std::ptr::addr_of_mut!((*p).f).write(UnsafeCell::new(Some(f)));
            std::ptr::addr_of_mut!((*p).packet).write(Packet::new());
            cell.assume_init()
        }
    }

    fn take_f(&self) -> Option<F> {
        // SAFETY: only `start` (run once for the G: on it, or by the
        // scheduler before it ever ran) and `abandon` (at shutdown, when no
        // M runs it) call this, never at the same time, so this `&mut`
        // to `f` is the only reference to it while it lives.
        unsafe { (*self.f.get()).take() }
    }
}

// SAFETY: `header` is the first field of this #[repr(C)] struct.
unsafe impl<F, T> GBody for Cell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn header(&self) -> &G {
        &self.header
    }

    fn start(&self, start_error: Option<io::Error>) {
        let Some(f) = self.take_f() else { return };
        let result = match start_error {
            // Cancelled before it ever ran: it never will.
            None if self.header.is_cancelled() => {
                drop(f);
                Err(Box::new(super::Cancelled::new()) as _)
            }
            None => {
                let r = catch_unwind(AssertUnwindSafe(f));
                // Task-locals die before the joiner wakes, as thread-locals
                // do before std's `join` returns.
                // SAFETY: `start(None)` runs on the G itself (`g_entry`),
                // and the closure, the only user of `with`, has returned.
                unsafe { local::clear(&self.header) };
                r
            }
            Some(e) => {
                drop(f);
                Err(Box::new(format!("greenrt: the green thread could not start: {e}")) as _)
            }
        };
        self.packet.complete(result);
    }

    fn abandon(&self) -> bool {
        let f = self.take_f();
        let started = f.is_none();
        drop(f);
        self.packet.abandon();
        started
    }
}

impl<F: Send, T: Send> JoinSlot<T> for Cell<F, T> {
    fn packet(&self) -> &Packet<T> {
        &self.packet
    }
}
