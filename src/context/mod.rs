//! Cooperative context switching between stacks.
//!
//! The switch itself is hand-written assembly (`asm/x86_64/switch.S`); this
//! module prepares new stacks so that the first switch into them lands in
//! `greenrt_start`, which calls the green thread's entry function.

use std::arch::global_asm;

global_asm!(
    include_str!("../../asm/x86_64/switch.S"),
    options(att_syntax)
);

extern "C" {
    fn greenrt_switch(save_sp: *mut *mut u8, next_sp: *mut u8);
    fn greenrt_start();
}

/// Entry point of a new context; it must never return.
pub(crate) type EntryFn = extern "C" fn(arg: *mut u8) -> !;

/// Bytes reserved at the top of every green stack: the parent slot (the
/// address of the cell where the M running the green thread keeps the
/// scheduler's stack pointer, read by the CFI of `greenrt_start`) and a
/// padding word for 16-byte alignment.
pub(crate) const TOP_RESERVED: usize = 16;

/// Size of the frame `greenrt_switch` saves (see the layout in switch.S).
const SWITCH_FRAME: usize = 64;

/// Default MXCSR (all exceptions masked, round to nearest) and x87 control
/// word (all exceptions masked, 64-bit precision), as the ABI specifies at
/// process start.
const DEFAULT_FP_CONTROL: u64 = 0x1F80 | (0x037F << 32);

/// Address of the parent slot of a stack whose (16-byte aligned) top is `top`.
pub(crate) fn parent_slot(top: *mut u8) -> *mut *mut u8 {
    top.wrapping_sub(8).cast()
}

/// Lays out a first switch frame below `top` so that switching to the
/// returned stack pointer calls `entry(arg)` on that stack.
///
/// # Safety
/// `top` must be the 16-byte aligned top of a writable stack with room for
/// at least `TOP_RESERVED + 64` bytes below it, which nothing else uses
/// while this runs (the stack's context is not running).
pub(crate) unsafe fn prepare(top: *mut u8, entry: EntryFn, arg: *mut u8) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: the caller guarantees `TOP_RESERVED + SWITCH_FRAME` (80)
    // bytes below `top` belong to the same stack mapping, so the offset
    // pointer stays inside that allocation.
    let sp = unsafe { top.sub(TOP_RESERVED + SWITCH_FRAME) }.cast::<u64>();
    let words: [u64; 8] = [
        DEFAULT_FP_CONTROL,
        0,                                 // r15
        0,                                 // r14
        0,                                 // r13
        entry as *const () as u64,         // r12: entry function
        arg as usize as u64,               // rbx: its argument
        0,                                 // rbp: end of the frame-pointer chain
        greenrt_start as *const () as u64, // return address
    ];
    // SAFETY: `sp..sp + 64` lies in the caller's writable, unused stack
    // range; `sp` is 16-byte aligned (top is, and 80 is a multiple of 16),
    // so 8-aligned for u64; `words` is a local array that cannot overlap it.
    unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), sp, words.len()) };
    // SAFETY: `top - 16` is inside the same stack range the caller vouches
    // for (its top 16 bytes: parent slot and padding word) and 8-aligned,
    // so writing two zeroed u64s there stays in bounds.
    unsafe { top.sub(TOP_RESERVED).cast::<u64>().write_bytes(0, 2) };
    sp.cast()
}

/// Saves the current context's stack pointer into `*save_sp` and resumes
/// the context whose stack pointer is `next_sp`. Returns when some other
/// context switches back to the saved one.
///
/// # Safety
/// `save_sp` must be valid for one pointer-sized write (whoever resumes
/// the saved context reads it from there). `next_sp` must be a context saved by
/// `switch` or made by `prepare`, whose stack is still alive, and which no
/// other thread resumes concurrently.
#[inline(always)]
pub(crate) unsafe fn switch(save_sp: *mut *mut u8, next_sp: *mut u8) {
    // SAFETY: `greenrt_switch` writes the current stack pointer through
    // `save_sp` and loads the frame at `next_sp`; both are exactly this
    // function's caller obligations, forwarded unchanged.
    unsafe { greenrt_switch(save_sp, next_sp) }
}
