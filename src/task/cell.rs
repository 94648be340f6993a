//! The one allocation behind a spawned green thread: the G header, the
//! closure, and the joiner's result slot.
//!
//! Spawning allocates once (like a tokio task cell) instead of separately
//! for the G, the boxed closure and the result: fewer mallocs, and fewer
//! cross-thread frees when another worker runs and finishes the G.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{addr_of_mut, NonNull};

use super::join::Packet;
use super::local;
use crate::scheduler::{cell_cache, GBodyVTable, GRef, G};

#[repr(C)]
pub(crate) struct Cell<F, T> {
    /// First field: a `GRef` points at the header and the cell at once.
    header: G,
    f: UnsafeCell<Option<F>>,
    packet: Packet<T>,
}

impl<F, T> Cell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// The cell, allocated (from this thread's `cell_cache`) and built in
    /// place: a reference to its G, and where its joiner finds the result
    /// (valid while a `GRef` to the G lives). Building a few hundred bytes
    /// on the stack and copying them into the allocation cost 8% of a
    /// chain of spawns' time. `header` makes the G header from the cell's
    /// vtable, called where it is written so that it is built in place too.
    ///
    /// # Safety
    /// `header` must return `G::new(.., vtable, ..)` with the vtable given.
    #[inline(always)]
    pub(crate) unsafe fn make(
        header: impl FnOnce(&'static GBodyVTable) -> G,
        f: F,
    ) -> (GRef, NonNull<Packet<T>>) {
        let p = cell_cache::alloc(Layout::new::<Self>())
            .cast::<Self>()
            .as_ptr();
        // SAFETY: `p` is a new allocation, uniquely ours, sized and aligned
        // for a `Cell<F, T>` (`cell_cache::alloc`'s contract); each field
        // is written once, through raw pointers (no reference to
        // uninitialised memory). The header, first in this repr(C) struct,
        // carries this type's vtable (our caller's contract) and one
        // reference, which the GRef takes over.
        unsafe {
            addr_of_mut!((*p).header).write(header(Self::vtable()));
            addr_of_mut!((*p).f).write(UnsafeCell::new(Some(f)));
            addr_of_mut!((*p).packet).write(Packet::new());
            let packet = NonNull::new_unchecked(addr_of_mut!((*p).packet));
            (GRef::from_new(NonNull::new_unchecked(p.cast())), packet)
        }
    }

    fn vtable() -> &'static GBodyVTable {
        &GBodyVTable {
            start: Self::start,
            abandon: Self::abandon,
            destroy: Self::destroy,
        }
    }

    /// # Safety
    /// `g` is the header of a live `Cell<F, T>`, with the provenance of the
    /// cell (a `GRef`'s pointer), and the cell outlives `'a`.
    unsafe fn from_header<'a>(g: NonNull<G>) -> &'a Self {
        // SAFETY: the header is the cell's first field (repr(C)), and the
        // pointer covers the whole live cell (the caller's contract).
        unsafe { g.cast::<Self>().as_ref() }
    }

    fn take_f(&self) -> Option<F> {
        // SAFETY: only `start` (run once for the G: on it, or by the
        // scheduler before it ever ran) and `abandon` (at shutdown, when no
        // M runs it) call this, never at the same time, so this `&mut`
        // to `f` is the only reference to it while it lives.
        unsafe { (*self.f.get()).take() }
    }

    /// [`GBodyVTable::start`].
    ///
    /// # Safety
    /// `g` is a `GRef`'s pointer to the header of a live `Cell<F, T>`.
    unsafe fn start(g: NonNull<G>, start_error: Option<io::Error>) {
        // SAFETY: the caller's contract.
        let cell = unsafe { Self::from_header(g) };
        let Some(f) = cell.take_f() else { return };
        let result = match start_error {
            // Cancelled before it ever ran: it never will.
            None if cell.header.is_cancelled() => {
                drop(f);
                Err(Box::new(super::Cancelled::new()) as _)
            }
            None => {
                let r = catch_unwind(AssertUnwindSafe(f));
                // Task-locals die before the joiner wakes, as thread-locals
                // do before std's `join` returns.
                // SAFETY: `start(None)` runs on the G itself (`g_entry`),
                // and the closure, the only user of `with`, has returned.
                unsafe { local::clear(&cell.header) };
                r
            }
            Some(e) => {
                drop(f);
                Err(Box::new(format!("greenrt: the green thread could not start: {e}")) as _)
            }
        };
        cell.packet.complete(result);
    }

    /// [`GBodyVTable::abandon`].
    ///
    /// # Safety
    /// `g` is a `GRef`'s pointer to the header of a live `Cell<F, T>`.
    unsafe fn abandon(g: NonNull<G>) -> bool {
        // SAFETY: the caller's contract.
        let cell = unsafe { Self::from_header(g) };
        let f = cell.take_f();
        let started = f.is_none();
        drop(f);
        cell.packet.abandon();
        started
    }

    /// [`GBodyVTable::destroy`].
    ///
    /// # Safety
    /// `g` is the header of a `Cell<F, T>` made by `make` that nothing
    /// references any more.
    unsafe fn destroy(g: NonNull<G>) {
        let p = g.cast::<Self>();
        // SAFETY: the cell is fully built and unreferenced (the caller's
        // contract): drop it in place, once.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            std::ptr::drop_in_place(p.as_ptr())
        }));
        if dropped.is_err() {
            // The result (or a panic payload) panicked in its destructor.
            // As std does for a thread's result: nothing can take the
            // panic (the last reference may be dropped by a worker's
            // scheduler, which must not unwind), so abort, saying why.
            eprintln!("greenrt: a green thread's result panicked on drop; aborting");
            std::process::abort();
        }
        // SAFETY: the cell is dropped; give its memory back to where `new`
        // took it from, with the same layout.
        unsafe { cell_cache::free(p.cast(), Layout::new::<Self>()) };
    }
}
