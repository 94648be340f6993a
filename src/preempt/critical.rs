//! Marks the parts of the runtime that must neither allocate nor take a
//! lock user code could hold: everything that has to run for a preempted
//! green thread to get a P back (see docs/DESIGN.md, "The preemption
//! path"). The mark is a per-thread depth, readable from a global
//! allocator, which is how the tests prove these paths never allocate.

use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor: reading it never
    // allocates or registers anything, so an allocator and the signal
    // handler may touch it.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True while the calling thread runs a part of greenrt that must neither
/// allocate nor take a lock that user code could hold: sysmon's loop, the
/// SIGURG handler, the preemption path, and handing a P to a preempted
/// green thread's M. A preempted green thread may hold the global
/// allocator's lock (a locking allocator linked into the program is
/// preemptible code), and these paths are what give it its worker back.
///
/// For allocator authors and tests: an allocator may assert that this is
/// false. greenrt's own tests install one that aborts when it is true.
pub fn in_critical_path() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// While alive, the calling thread is in a critical path.
pub(crate) struct Critical(());

impl Critical {
    #[inline]
    pub(crate) fn enter() -> Critical {
        DEPTH.with(|d| d.set(d.get() + 1));
        Critical(())
    }
}

impl Drop for Critical {
    #[inline]
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}
