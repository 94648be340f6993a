//! A parked green thread owns its own reference (the one its M ran it
//! with), which the waker that makes it runnable hands to the run queue;
//! the channel wakes its waiters through bare pointers (see
//! `scheduler::park::StackWaker`). These tests check the two ways that
//! could go wrong: a green thread's memory never freed (the reference
//! kept), and a waiter that leaves while its waker still wakes it (a
//! receive timing out as a send completes it).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use common::{serial, with_timeout};
use greenrt::sync::mpsc;

/// Counts the bytes live in the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `rounds` batches of 200 green threads that each park on a channel
/// (woken by a send, by a timer, or running on) and exit.
fn park_and_exit(rt: &greenrt::Runtime, rounds: usize) {
    for _ in 0..rounds {
        rt.block_on(|| {
            let mut joins = Vec::new();
            let mut senders = Vec::new();
            for i in 0..200u64 {
                let (tx, rx) = mpsc::sync_channel::<u64>(0);
                joins.push(greenrt::spawn(move || match i % 3 {
                    0 => rx.recv().unwrap(),
                    1 => rx.recv_timeout(Duration::from_micros(50)).unwrap_or(0),
                    _ => {
                        greenrt::sleep(Duration::from_micros(20));
                        rx.recv().unwrap()
                    }
                }));
                senders.push(tx);
            }
            greenrt::yield_now();
            for (i, tx) in senders.into_iter().enumerate() {
                if i % 3 != 1 {
                    tx.send(i as u64).unwrap();
                }
            }
            for j in joins {
                j.join().unwrap();
            }
        });
    }
}

#[test]
fn green_threads_that_parked_are_freed_when_they_exit() {
    let _s = serial();
    with_timeout(Duration::from_secs(60), || {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        // Warm up every cache that keeps memory (stack pool, queues,
        // timer wheels, thread-locals), then measure.
        park_and_exit(&rt, 20);
        let before = LIVE.load(Relaxed);
        park_and_exit(&rt, 100);
        let grown = LIVE.load(Relaxed) - before;
        // 20 000 green threads parked and exited: a leaked G (its cell
        // holds the closure, the result slot and the header, hundreds of
        // bytes) would grow the heap by megabytes.
        assert!(
            grown < 256 * 1024,
            "the heap grew by {grown} bytes over 20 000 parked green threads"
        );
    });
}

#[test]
fn receives_timing_out_as_sends_complete_them_lose_nothing() {
    let _s = serial();
    with_timeout(Duration::from_secs(60), || {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            const MESSAGES: u64 = 20_000;
            let (tx, rx) = mpsc::sync_channel::<u64>(0);
            let receiver = greenrt::spawn(move || {
                let (mut sum, mut got, mut timeouts) = (0u64, 0u64, 0u64);
                while got < MESSAGES {
                    match rx.recv_timeout(Duration::from_micros(1)) {
                        Ok(x) => {
                            sum += x;
                            got += 1;
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => timeouts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (sum, timeouts)
            });
            for x in 0..MESSAGES {
                tx.send(x).unwrap();
            }
            let (sum, timeouts) = receiver.join().unwrap();
            assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
            eprintln!("{timeouts} receives timed out");
        });
    });
}
