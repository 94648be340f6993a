//! Nothing writes to memory the runtime has freed, even while green
//! threads are being preempted as their runtime shuts down.
//!
//! This binary's global allocator quarantines freed blocks: it fills them
//! with a poison byte and keeps them out of circulation, and the test then
//! checks that every quarantined block still holds only poison. A write
//! through a dangling pointer (say, handing a P to an M handle that
//! shutdown already freed) shows up as a changed byte.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::with_timeout;

const POISON: u8 = 0x5a;
/// Blocks kept in quarantine; beyond that, frees go through.
const SLOTS: usize = 1 << 20;

struct Quarantine;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LOCK: AtomicBool = AtomicBool::new(false);
static USED: AtomicUsize = AtomicUsize::new(0);
static mut BLOCKS: [(usize, usize, usize); SLOTS] = [(0, 0, 0); SLOTS];

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
// poisoned and recorded instead of freed (freed later by `release_all`
// with its own layout).
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

#[global_allocator]
static ALLOC: Quarantine = Quarantine;

/// Counts quarantined blocks with a byte that is not poison, then frees
/// them all.
fn corrupted_and_release() -> usize {
    ENABLED.store(false, SeqCst);
    lock();
    let n = USED.swap(0, SeqCst);
    let mut bad = 0;
    for i in 0..n {
        // SAFETY: under LOCK; entries below USED are quarantined blocks.
        let (p, size, align) = unsafe { (*std::ptr::addr_of!(BLOCKS))[i] };
        // SAFETY: the block is still allocated (quarantined), `size` long.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
        if bytes.iter().any(|&b| b != POISON) {
            bad += 1;
        }
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, align)) };
    }
    unlock();
    bad
}

#[test]
fn runtime_drop_during_preemptions_never_writes_freed_memory() {
    with_timeout(Duration::from_secs(120), || {
        let mut corrupted = 0;
        for round in 0..20 {
            ENABLED.store(true, SeqCst);
            let rt = greenrt::Builder::new()
                .workers(2)
                .preempt_quantum(Duration::from_micros(200))
                .build()
                .unwrap();
            rt.block_on(|| {
                for _ in 0..6 {
                    // Computing green threads, preempted again and again,
                    // still running when the runtime drops.
                    greenrt::spawn(|| {
                        let start = Instant::now();
                        let mut x = 0u64;
                        while start.elapsed() < Duration::from_millis(40) {
                            x = black_box(x.wrapping_add(1));
                        }
                    });
                }
                greenrt::sleep(Duration::from_millis(5));
            });
            drop(rt);
            let bad = corrupted_and_release();
            if bad > 0 {
                eprintln!("round {round}: {bad} freed blocks written to");
            }
            corrupted += bad;
        }
        assert_eq!(corrupted, 0, "writes to freed memory over 20 runtime drops");
    });
}
