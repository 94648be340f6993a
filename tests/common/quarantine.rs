//! A global allocator for tests that look for writes into freed memory:
//! while enabled, a freed block is filled with a poison byte and kept out
//! of circulation (quarantined) instead of freed; `corrupted_and_release`
//! then finds quarantined blocks that are no longer all poison.
//!
//! Included by the test files that install it (`#[path]`), each with
//! `#[global_allocator] static ALLOC: Quarantine = Quarantine;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// What a quarantined block is filled with.
pub const POISON: u8 = 0x5a;
/// Blocks kept in quarantine; beyond that, frees go through.
const SLOTS: usize = 1 << 20;

pub struct Quarantine;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LOCK: AtomicBool = AtomicBool::new(false);
static USED: AtomicUsize = AtomicUsize::new(0);
static mut BLOCKS: [(usize, usize, usize); SLOTS] = [(0, 0, 0); SLOTS];

/// Starts quarantining freed blocks.
pub fn enable() {
    ENABLED.store(true, SeqCst);
}

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, SeqCst, SeqCst)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn unlock() {
    LOCK.store(false, SeqCst);
}

// SAFETY: forwards to the system allocator; a quarantined block is
// poisoned and recorded instead of freed (freed later by
// `corrupted_and_release` with its own layout).
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ENABLED.load(SeqCst) {
            lock();
            let i = USED.load(SeqCst);
            if i < SLOTS {
                // SAFETY: the block is ours to poison (the caller freed
                // it); BLOCKS is only touched under LOCK.
                unsafe {
                    std::ptr::write_bytes(ptr, POISON, layout.size());
                    (*std::ptr::addr_of_mut!(BLOCKS))[i] =
                        (ptr as usize, layout.size(), layout.align());
                }
                USED.store(i + 1, SeqCst);
                unlock();
                return;
            }
            unlock();
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Stops quarantining; returns how many quarantined blocks were at least
/// `min_size` bytes and how many (of any size) hold a byte that is not
/// poison; frees them all.
pub fn corrupted_and_release(min_size: usize) -> (usize, usize) {
    ENABLED.store(false, SeqCst);
    lock();
    let n = USED.swap(0, SeqCst);
    let (mut big, mut bad) = (0, 0);
    for i in 0..n {
        // SAFETY: under LOCK; entries below USED are quarantined blocks.
        let (p, size, align) = unsafe { (*std::ptr::addr_of!(BLOCKS))[i] };
        // SAFETY: the block is still allocated (quarantined), `size` long.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
        if size >= min_size {
            big += 1;
        }
        if bytes.iter().any(|&b| b != POISON) {
            bad += 1;
        }
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, align)) };
    }
    unlock();
    (big, bad)
}
