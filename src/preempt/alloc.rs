//! `NoPreempt`: a global-allocator wrapper that holds off preemption
//! inside every allocator call.

use std::alloc::{GlobalAlloc, Layout};

use super::NoPreemptScope;

/// Wraps a global allocator so that no green thread is ever preempted
/// inside one of its calls.
///
/// Only code in the main executable is preempted, so the system allocator
/// (glibc's malloc, in libc) never is. An allocator linked into the
/// program is: a green thread can be preempted while it holds the
/// allocator's lock or in the middle of its per-thread cache. greenrt's
/// own hand-off paths never allocate, so that is safe for a *blocking*
/// lock (the others wait, and the preempted green thread gets its turn),
/// but an allocator that *spins* on its lock (or one whose lock another
/// runtime call must take while it holds its worker) can waste whole
/// quanta or stall a worker. Wrap such an allocator:
///
/// ```
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: greenrt::preempt::NoPreempt<System> = greenrt::preempt::NoPreempt(System);
///
/// assert_eq!(greenrt::run(|| vec![1, 2, 3].iter().sum::<i32>()), 6);
/// ```
///
/// Each call costs a thread-local read and two atomic additions.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPreempt<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator,
// which upholds GlobalAlloc's contract; the scope only changes the
// running green thread's no-preempt count and allocates nothing.
unsafe impl<A: GlobalAlloc> GlobalAlloc for NoPreempt<A> {
    /// # Safety
    /// [`GlobalAlloc::alloc`]'s: `layout` has a non-zero size.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _scope = NoPreemptScope::new();
        // SAFETY: our caller guarantees `layout` has a non-zero size
        // (GlobalAlloc::alloc's contract), which is all `A::alloc` asks.
        unsafe { self.0.alloc(layout) }
    }

    /// # Safety
    /// [`GlobalAlloc::dealloc`]'s: `ptr` was allocated by this allocator
    /// with `layout`.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _scope = NoPreemptScope::new();
        // SAFETY: our caller guarantees `ptr` came from this allocator with
        // `layout`; every allocation here is `self.0`'s, so that is exactly
        // what `A::dealloc` asks.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    /// # Safety
    /// [`GlobalAlloc::alloc_zeroed`]'s: `layout` has a non-zero size.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _scope = NoPreemptScope::new();
        // SAFETY: our caller guarantees `layout` has a non-zero size, which
        // is all `A::alloc_zeroed` asks.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    /// # Safety
    /// [`GlobalAlloc::realloc`]'s: `ptr` was allocated by this allocator
    /// with `layout`; `new_size` is non-zero and, rounded up to
    /// `layout.align()`, does not overflow `isize`.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _scope = NoPreemptScope::new();
        // SAFETY: our caller guarantees `ptr` came from this allocator
        // (hence from `self.0`) with `layout`, and that `new_size` is
        // non-zero and does not overflow isize when rounded up to
        // `layout.align()`: exactly `A::realloc`'s contract.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
