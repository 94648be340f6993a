//! A locking global allocator in the main executable (tracking and
//! profiling allocators; jemalloc's arena locks when statically linked)
//! is preemptible code: a green thread can be preempted holding its lock.
//! Everything that must run for that green thread to get a P back —
//! sysmon, the handler's retake, the hand-off to a spare or to the
//! preempted green thread's M, and that M's way back into the green
//! thread — must then neither allocate nor wait for that lock.
//!
//! This binary's allocator takes a std Mutex around every call (and works
//! a little while holding it, so preemptions land inside), and aborts the
//! process if it is ever called while `greenrt::preempt::in_critical_path`
//! says the runtime must not allocate.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{serial, with_timeout};

struct Tracking;

static LOCK: Mutex<()> = Mutex::new(());
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

fn critical_abort() -> ! {
    let msg = b"allocation on a greenrt critical path (see preempt::in_critical_path)\n";
    // SAFETY: write(2) of a static buffer to stderr; then abort.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort()
}

impl Tracking {
    /// Book-keeping under the lock, long enough for preemptions to land
    /// while it is held.
    fn account(&self, delta: isize) {
        if greenrt::preempt::in_critical_path() {
            critical_abort();
        }
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut x = 0u64;
        for i in 0..64u64 {
            x = black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        black_box(x);
        CALLS.fetch_add(1, SeqCst);
        if delta >= 0 {
            LIVE_BYTES.fetch_add(delta as usize, SeqCst);
        } else {
            LIVE_BYTES.fetch_sub((-delta) as usize, SeqCst);
        }
    }
}

/// The same allocator behind greenrt's `NoPreempt` wrapper: switched on
/// by `WRAPPED_ON` for the tests of the wrapper.
static WRAPPED: greenrt::preempt::NoPreempt<Inner> = greenrt::preempt::NoPreempt(Inner);
static WRAPPED_ON: AtomicBool = AtomicBool::new(false);

struct Inner;

// SAFETY: forwards to `Tracking`'s own implementation.
unsafe impl GlobalAlloc for Inner {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { Tracking.raw_alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { Tracking.raw_dealloc(ptr, layout) }
    }
}

impl Tracking {
    /// # Safety
    /// GlobalAlloc::alloc's contract.
    unsafe fn raw_alloc(&self, layout: Layout) -> *mut u8 {
        self.account(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    /// # Safety
    /// GlobalAlloc::dealloc's contract.
    unsafe fn raw_dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.account(-(layout.size() as isize));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged
// (directly or through `NoPreempt`); the book-keeping allocates nothing.
// The wrapper is switched only while no allocation is live across the
// switch that would be freed differently: both paths free with System.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WRAPPED_ON.load(SeqCst) {
            // SAFETY: the caller's contract, forwarded.
            unsafe { WRAPPED.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { self.raw_alloc(layout) }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WRAPPED_ON.load(SeqCst) {
            // SAFETY: as above; both paths free with System.
            unsafe { WRAPPED.dealloc(ptr, layout) }
        } else {
            // SAFETY: as above.
            unsafe { self.raw_dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Four green threads allocate in a loop for `dur` under a 200 µs
/// quantum; all must get through, and preemptions must have happened
/// (else the test proves nothing).
fn allocating_green_threads_make_progress(workers: usize, dur: Duration) {
    let _serial = serial();
    with_timeout(Duration::from_secs(60), move || {
        let before = greenrt::preempt::stats();
        let rt = greenrt::Builder::new()
            .workers(workers)
            .preempt_quantum(Duration::from_micros(200))
            .build()
            .unwrap();
        let rounds = Arc::new(AtomicU64::new(0));
        let r = rounds.clone();
        rt.block_on(move || {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let r = r.clone();
                    greenrt::spawn(move || {
                        let start = Instant::now();
                        let mut keep = Vec::new();
                        while start.elapsed() < dur {
                            let v: Vec<u64> = Vec::with_capacity(16 + i);
                            keep.push(black_box(v));
                            if keep.len() > 64 {
                                keep.clear();
                            }
                            r.fetch_add(1, SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        drop(rt);
        let stats = greenrt::preempt::stats().since(&before);
        eprintln!(
            "{workers} worker(s): {} rounds, {stats:?}",
            rounds.load(SeqCst)
        );
        assert!(
            rounds.load(SeqCst) > 1000,
            "the green threads made progress"
        );
        assert!(
            stats.preemptions > 10,
            "preemptions happened (else this proves nothing): {stats:?}"
        );
    });
}

#[test]
fn preemption_with_a_locking_allocator_does_not_deadlock_one_worker() {
    allocating_green_threads_make_progress(1, Duration::from_secs(1));
}

#[test]
fn preemption_with_a_locking_allocator_does_not_deadlock_two_workers() {
    allocating_green_threads_make_progress(2, Duration::from_secs(1));
}

/// With the allocator wrapped in `NoPreempt`, no green thread is ever
/// preempted holding its lock, so even runtime calls that allocate while
/// holding their worker (spawning, channels, timers) cannot stall behind
/// a preempted holder: a single worker keeps going.
#[test]
fn no_preempt_wrapped_locking_allocator_keeps_runtime_calls_going() {
    let _serial = serial();
    WRAPPED_ON.store(true, SeqCst);
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            WRAPPED_ON.store(false, SeqCst);
        }
    }
    let _off = Off;
    with_timeout(Duration::from_secs(60), || {
        let before = greenrt::preempt::stats();
        let rt = greenrt::Builder::new()
            .workers(1)
            .preempt_quantum(Duration::from_micros(200))
            .build()
            .unwrap();
        let done = rt.block_on(|| {
            let start = Instant::now();
            let mut hs = Vec::new();
            for i in 0..4u64 {
                hs.push(greenrt::spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_millis(800) {
                        // spawn + join + channel + timer: all allocate in
                        // the runtime.
                        let (tx, rx) = greenrt::sync::mpsc::channel();
                        let h = greenrt::spawn(move || {
                            tx.send(vec![i; 8]).unwrap();
                        });
                        let _ = rx.recv_timeout(Duration::from_secs(5));
                        h.join().unwrap();
                        let v: Vec<u64> = (0..32).collect();
                        n += black_box(v).len() as u64 / 32;
                    }
                    n
                }));
            }
            // And one that computes without blocking, so preemption has
            // work to do.
            hs.push(greenrt::spawn(move || {
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(800) {
                    x = black_box(x.wrapping_add(1));
                }
                0
            }));
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        drop(rt);
        let stats = greenrt::preempt::stats().since(&before);
        eprintln!("wrapped, 1 worker: {done} rounds, {stats:?}");
        assert!(done > 100, "the green threads made progress");
        assert!(stats.preemptions > 10, "preemptions happened: {stats:?}");
    });
}

#[test]
fn no_preempt_allocator_wrapper_holds_off_preemption_inside_calls() {
    // The wrapper must be usable as a global allocator type (checked at
    // compile time) and forward calls.
    static WRAPPED: greenrt::preempt::NoPreempt<System> = greenrt::preempt::NoPreempt(System);
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a valid layout; the block is freed with the same layout.
    unsafe {
        let p = WRAPPED.alloc(layout);
        assert!(!p.is_null());
        WRAPPED.dealloc(p, layout);
    }
}
