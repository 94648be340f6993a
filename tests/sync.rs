//! greenrt::sync::Mutex: std-like semantics and lost-wake-up stress
//! (Condvar and WaitGroup are in sync_condvar.rs).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, TryLockError};
use std::time::Duration;

use common::{block_on, guarded, runtime};
use greenrt::sync::Mutex;

// ---------------------------------------------------------------------------
// Mutex

/// `tasks` green threads each add 1 to a counter `iters` times, yielding
/// inside the critical section; checks mutual exclusion and the total.
fn mutex_contention(tasks: usize, iters: usize) {
    let m = Arc::new(Mutex::new(0usize));
    let inside = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..tasks)
        .map(|_| {
            let (m, inside) = (m.clone(), inside.clone());
            greenrt::spawn(move || {
                for i in 0..iters {
                    let mut g = m.lock().unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders inside the lock"
                    );
                    let v = *g;
                    if i % 2 == 0 {
                        greenrt::yield_now();
                    }
                    *g = v + 1;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                    if i % 5 == 0 {
                        greenrt::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*m.lock().unwrap(), tasks * iters);
}

#[test]
fn mutex_contention_with_yields_one_worker() {
    block_on(1, || mutex_contention(100, 200));
}

#[test]
fn mutex_contention_with_yields_two_workers() {
    block_on(2, || mutex_contention(100, 200));
}

#[test]
fn mutex_shared_between_os_threads_and_green_threads() {
    let total = guarded(|| {
        let rt = runtime(2);
        let m = Arc::new(Mutex::new(0u64));
        let os: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let mut g = m.lock().unwrap();
                        let v = *g;
                        std::thread::yield_now();
                        *g = v + 1;
                    }
                })
            })
            .collect();
        let green: Vec<_> = (0..20)
            .map(|_| {
                let m = m.clone();
                rt.spawn(move || {
                    for _ in 0..300 {
                        let mut g = m.lock().unwrap();
                        let v = *g;
                        greenrt::yield_now();
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in os {
            t.join().unwrap();
        }
        for g in green {
            g.join().unwrap();
        }
        let v = *m.lock().unwrap();
        v
    });
    assert_eq!(total, 3 * 2000 + 20 * 300);
}

#[test]
fn mutex_blocked_green_thread_does_not_block_its_worker() {
    // One worker: while A holds the lock across a sleep, B blocks on it;
    // C must still run (B parks, it does not spin the worker forever).
    // Cooperative, so that preemption cannot rescue a spinning B.
    common::block_on_cooperative(1, || {
        let m = Arc::new(Mutex::new(()));
        let c_ran = Arc::new(AtomicBool::new(false));
        let (m1, c1) = (m.clone(), c_ran.clone());
        let a = greenrt::spawn(move || {
            let _g = m1.lock().unwrap();
            greenrt::sleep(Duration::from_millis(100));
            c1.load(Ordering::SeqCst)
        });
        greenrt::yield_now(); // A takes the lock and sleeps
        let m2 = m.clone();
        let b = greenrt::spawn(move || drop(m2.lock().unwrap()));
        greenrt::yield_now(); // B blocks on the lock
        assert!(!b.is_finished(), "B got a lock that A holds");
        let c2 = c_ran.clone();
        let c = greenrt::spawn(move || c2.store(true, Ordering::SeqCst));
        c.join().unwrap();
        b.join().unwrap();
        assert!(
            a.join().unwrap(),
            "C did not run while B waited for the lock"
        );
    });
}

#[test]
fn mutex_is_poisoned_by_a_panicking_green_thread() {
    block_on(2, || {
        let m = Arc::new(Mutex::new(vec![1, 2, 3]));
        let m2 = m.clone();
        let h = greenrt::spawn(move || {
            let mut g = m2.lock().unwrap();
            g.push(4);
            greenrt::yield_now();
            panic!("poison it");
        });
        assert!(h.join().is_err());
        assert!(m.is_poisoned());
        let err = m
            .lock()
            .expect_err("lock() of a poisoned mutex must be Err");
        assert_eq!(*err.into_inner(), vec![1, 2, 3, 4]);
        match m.try_lock() {
            Err(TryLockError::Poisoned(p)) => assert_eq!(p.into_inner().len(), 4),
            other => panic!("try_lock on a poisoned mutex: {:?}", other.map(|g| g.len())),
        }
        m.clear_poison();
        assert!(!m.is_poisoned());
        assert_eq!(m.lock().unwrap().len(), 4);

        // A panic without the lock held does not poison.
        let m3 = m.clone();
        let h = greenrt::spawn(move || {
            drop(m3.lock().unwrap());
            panic!("lock already released");
        });
        assert!(h.join().is_err());
        assert!(!m.is_poisoned());
        let m = Arc::try_unwrap(m).expect("sole owner");
        assert_eq!(m.into_inner().unwrap(), vec![1, 2, 3, 4]);
    });
}

#[test]
fn mutex_poisoning_is_right_while_another_green_thread_unwinds() {
    // Green thread A panics and, while unwinding, blocks (a destructor
    // sleeps). Meanwhile green thread B, on the same worker, takes a
    // *different* mutex and panics while holding it: that mutex must be
    // poisoned, and A's unwinding must not make B look "already panicking".
    struct SleepOnDrop;
    impl Drop for SleepOnDrop {
        fn drop(&mut self) {
            greenrt::sleep(Duration::from_millis(200));
        }
    }
    let (poisoned, b_saw_panicking) = block_on(1, || {
        let m = Arc::new(Mutex::new(0));
        let a = greenrt::spawn(|| {
            let _s = SleepOnDrop;
            panic!("A unwinds slowly");
        });
        let m2 = m.clone();
        let b = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(50)); // A is now asleep mid-unwind
            let panicking_before = std::thread::panicking();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _g = m2.lock().unwrap();
                panic!("B panics holding the lock");
            }));
            assert!(r.is_err());
            panicking_before
        });
        let b_saw = b.join().unwrap();
        assert!(a.join().is_err());
        (m.is_poisoned(), b_saw)
    });
    assert!(
        poisoned && !b_saw_panicking,
        "mutex poisoned: {poisoned} (expected true); std::thread::panicking() in the innocent green \
         thread: {b_saw_panicking} (expected false) — the OS thread's panic count of a green thread \
         that parked mid-unwind leaks into other green threads on that worker"
    );
}

#[test]
fn green_thread_blocking_in_a_destructor_while_unwinding_does_not_stall_others() {
    // One worker. B holds a mutex across a sleep. A panics, and a
    // destructor run by the unwinding locks that mutex: A has to wait for
    // B, and B needs the worker to wake up and unlock. A blocked (even
    // while unwinding) must let B run, as an OS thread would.
    struct LockOnDrop(Arc<Mutex<u32>>);
    impl Drop for LockOnDrop {
        fn drop(&mut self) {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
        }
    }
    let value = common::with_timeout(Duration::from_secs(20), || {
        runtime(1).block_on(|| {
            let m = Arc::new(Mutex::new(0u32));
            let (m1, m2) = (m.clone(), m.clone());
            let b = greenrt::spawn(move || {
                let mut g = m1.lock().unwrap();
                greenrt::sleep(Duration::from_millis(100));
                *g += 10;
            });
            greenrt::yield_now(); // B takes the lock and sleeps
            let a = greenrt::spawn(move || {
                let _d = LockOnDrop(m2);
                panic!("A unwinds through a destructor that locks");
            });
            assert!(a.join().is_err());
            b.join().unwrap();
            let v = *m.lock().unwrap();
            v
        })
    });
    assert_eq!(value, 11);
}

#[test]
fn mutex_try_lock_would_block_while_held() {
    block_on(2, || {
        let m = Arc::new(Mutex::new(5));
        let (tx, rx) = greenrt::sync::mpsc::channel::<()>();
        let (held_tx, held_rx) = greenrt::sync::mpsc::channel::<()>();
        let m2 = m.clone();
        let holder = greenrt::spawn(move || {
            let g = m2.lock().unwrap();
            held_tx.send(()).unwrap();
            rx.recv().unwrap();
            drop(g);
        });
        held_rx.recv().unwrap();
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(*m.try_lock().expect("free again"), 5);
    });
}
