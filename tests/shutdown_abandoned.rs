//! A green thread abandoned at shutdown (woken to unwind, but queued
//! behind a green thread that never gives up its worker, so it never
//! runs again) leaves its stack mapped: frames that never unwound may
//! still be listed somewhere else — here a wait-queue entry in a
//! `Mutex` that an OS thread holds and unlocks after the runtime is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::sync::Mutex;

#[test]
fn a_lock_waiter_abandoned_at_shutdown_leaves_nothing_dangling() {
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(false)
        .build()
        .unwrap();
    let lock = Arc::new(Mutex::new(0u64));
    // An OS thread holds the lock until told to let go.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let mut guard = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            *guard += 1;
        })
    };
    held_rx.recv().unwrap();
    let stop_hog = Arc::new(AtomicBool::new(false));
    let waiter_parked = Arc::new(AtomicBool::new(false));
    {
        let (lock, parked) = (lock.clone(), waiter_parked.clone());
        rt.spawn(move || {
            parked.store(true, Ordering::SeqCst);
            // Parks with a wait-queue entry on this green thread's stack.
            let mut guard = lock.lock().unwrap();
            *guard += 10;
        });
    }
    while !waiter_parked.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    {
        // Never blocks and cannot be preempted: the only worker is its
        // until the test lets it go, so the waiter, woken to unwind, stays
        // queued and is abandoned.
        let stop = stop_hog.clone();
        rt.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
    }
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown_timeout(Duration::from_millis(100));
    // The runtime is gone; the lock's holder lets go, which hands the
    // lock to (or wakes) the first listed waiter.
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    stop_hog.store(true, Ordering::Relaxed);
    // The abandoned waiter never took the lock.
    assert_eq!(*lock.lock().unwrap(), 1);
}
