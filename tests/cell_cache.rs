//! A finished green thread's memory is reused by the next spawn on its
//! worker (`scheduler::cell_cache`), and `GREENRT_CELL_CACHE=off` sends
//! it back to the allocator instead.
//!
//! This binary's global allocator counts allocations. The environment is
//! process-wide: this binary has a single test, which sets the variable
//! before building each runtime, with no runtime running meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SPAWNS: usize = 2_000;

/// Allocations made by SPAWNS spawn-and-join rounds on one worker (each
/// green thread ends before the next is spawned).
fn allocations_for_spawns(cache: &str) -> usize {
    std::env::set_var("GREENRT_CELL_CACHE", cache);
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    let n = rt.block_on(|| {
        // Warm up: stacks, the M's first cells.
        for _ in 0..10 {
            greenrt::spawn(|| ()).join().unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for i in 0..SPAWNS {
            let payload = [i as u8; 100];
            let got = greenrt::spawn(move || payload[99]).join().unwrap();
            assert_eq!(got, i as u8);
        }
        ALLOCATIONS.load(Ordering::Relaxed) - before
    });
    std::env::remove_var("GREENRT_CELL_CACHE");
    n
}

/// The same, spawned and joined from this OS thread (`Runtime::spawn`):
/// cells come from this thread's own cache, which the worker's batches
/// refill.
fn allocations_for_spawns_from_a_thread() -> usize {
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    for _ in 0..10 {
        rt.spawn(|| ()).join().unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..SPAWNS {
        let payload = [i as u8; 100];
        let got = rt.spawn(move || payload[99]).join().unwrap();
        assert_eq!(got, i as u8);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn finished_green_threads_memory_is_reused_unless_the_cache_is_off() {
    let cached = allocations_for_spawns("on");
    let uncached = allocations_for_spawns("off");
    let from_thread = allocations_for_spawns_from_a_thread();
    eprintln!(
        "allocations for {SPAWNS} spawns: cache on {cached}, off {uncached}, \
         from an OS thread {from_thread}"
    );
    // Off: one cell allocated per spawn, at least.
    assert!(
        uncached >= SPAWNS,
        "{uncached} allocations for {SPAWNS} spawns with the cache off"
    );
    // On: the cell of each finished green thread serves the next spawn.
    assert!(
        cached < SPAWNS / 10,
        "{cached} allocations for {SPAWNS} spawns with the cache on"
    );
    // Spawning from an OS thread: the worker hands finished cells back in
    // batches through the depot (bounded by the batches before the first
    // reaches it, and the run queue's own blocks).
    assert!(
        from_thread < SPAWNS / 4,
        "{from_thread} allocations for {SPAWNS} spawns from an OS thread"
    );
    // A bad value fails the build, naming the variable.
    std::env::set_var("GREENRT_CELL_CACHE", "sometimes");
    let err = greenrt::Builder::new().workers(1).build().unwrap_err();
    assert!(err.to_string().contains("GREENRT_CELL_CACHE"), "{err}");
    std::env::remove_var("GREENRT_CELL_CACHE");
}
