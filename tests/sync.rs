//! greenrt::sync::{Mutex, Condvar, WaitGroup}: std-like semantics and
//! lost-wake-up stress.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, TryLockError};
use std::time::{Duration, Instant};

use common::{block_on, expect_panic, guarded, runtime};
use greenrt::sync::{Condvar, Mutex, WaitGroup};

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

// ---------------------------------------------------------------------------
// Condvar

#[test]
fn condvar_wait_timeout_times_out() {
    let (timed_out, took, value) = block_on(2, || {
        let m = Mutex::new(17);
        let cv = Condvar::new();
        let g = m.lock().unwrap();
        let start = Instant::now();
        let (g, res) = cv.wait_timeout(g, Duration::from_millis(100)).unwrap();
        (res.timed_out(), start.elapsed(), *g)
    });
    assert!(timed_out, "nobody notified, yet the wait did not time out");
    assert!(
        took >= Duration::from_millis(100),
        "timed out early, after {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(value, 17);

    // The same from an OS thread.
    let m = Mutex::new(());
    let cv = Condvar::new();
    let start = Instant::now();
    let (_g, res) = cv
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(50))
        .unwrap();
    assert!(res.timed_out());
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn condvar_wait_timeout_reports_a_notification() {
    let (timed_out, flag, took) = block_on(2, || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(50));
            *p2.0.lock().unwrap() = true;
            p2.1.notify_one();
        });
        let (m, cv) = &*pair;
        let start = Instant::now();
        let mut g = m.lock().unwrap();
        let mut timed_out = false;
        while !*g {
            let (g2, r) = cv.wait_timeout(g, Duration::from_secs(30)).unwrap();
            g = g2;
            timed_out |= r.timed_out();
        }
        (timed_out, *g, start.elapsed())
    });
    assert!(flag);
    assert!(!timed_out, "a notified wait reported a timeout");
    assert!(took < Duration::from_secs(10), "notification took {took:?}");
}

#[test]
fn condvar_wait_timeout_while_gives_up_or_succeeds() {
    block_on(1, || {
        let m = Mutex::new(0);
        let cv = Condvar::new();
        let start = Instant::now();
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(60), |v| *v == 0)
            .unwrap();
        assert!(r.timed_out());
        assert_eq!(*g, 0);
        assert!(start.elapsed() >= Duration::from_millis(60));
        drop(g);

        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(60), |v| *v != 0)
            .unwrap();
        assert!(
            !r.timed_out(),
            "condition already false: no waiting, no timeout"
        );
        drop(g);
    });
}

#[test]
fn condvar_notify_all_wakes_every_waiter() {
    let woke = block_on(2, || {
        let state = Arc::new((Mutex::new((false, 0usize)), Condvar::new()));
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let state = state.clone();
                greenrt::spawn(move || {
                    let (m, cv) = &*state;
                    let mut g = m.lock().unwrap();
                    g.1 += 1;
                    cv.notify_all(); // tell the main thread one more waits
                    let g = cv.wait_while(g, |s| !s.0).unwrap();
                    assert!(g.0);
                })
            })
            .collect();
        let (m, cv) = &*state;
        let mut g = cv.wait_while(m.lock().unwrap(), |s| s.1 < 50).unwrap();
        g.0 = true;
        drop(g);
        cv.notify_all();
        let n = hs.len();
        for h in hs {
            h.join().unwrap();
        }
        n
    });
    assert_eq!(woke, 50);
}

/// A bounded queue built from Mutex + two Condvars; producers and
/// consumers hammer it with notify_one, where any lost wake-up hangs.
fn condvar_queue_stress(producers: u64, consumers: u64, per: u64, cap: usize) {
    struct Q {
        m: Mutex<(VecDeque<u64>, u64)>,
        not_empty: Condvar,
        not_full: Condvar,
    }
    let q = Arc::new(Q {
        m: Mutex::new((VecDeque::new(), 0)),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let total = producers * per;
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            let q = q.clone();
            greenrt::spawn(move || {
                for i in 0..per {
                    let mut g = q
                        .not_full
                        .wait_while(q.m.lock().unwrap(), |s| s.0.len() >= cap)
                        .unwrap();
                    g.0.push_back(p * per + i);
                    drop(g);
                    q.not_empty.notify_one();
                }
            })
        })
        .collect();
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let q = q.clone();
            greenrt::spawn(move || {
                let mut sum = 0u64;
                loop {
                    let mut g = q
                        .not_empty
                        .wait_while(q.m.lock().unwrap(), |s| s.0.is_empty() && s.1 < total)
                        .unwrap();
                    let Some(v) = g.0.pop_front() else {
                        break; // everything consumed
                    };
                    g.1 += 1;
                    let all_done = g.1 == total;
                    drop(g);
                    q.not_full.notify_one();
                    if all_done {
                        q.not_empty.notify_all(); // release the other consumers
                    }
                    sum += v;
                }
                sum
            })
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let sum: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(sum, total * (total - 1) / 2);
}

#[test]
fn condvar_producer_consumer_stress_one_worker() {
    block_on(1, || condvar_queue_stress(8, 8, 5000, 4));
}

#[test]
fn condvar_producer_consumer_stress_two_workers() {
    block_on(2, || condvar_queue_stress(8, 8, 5000, 4));
}

#[test]
fn condvar_between_an_os_thread_and_a_green_thread() {
    guarded(|| {
        let rt = runtime(2);
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let p2 = pair.clone();
        // Green thread waits for odd values, the OS thread for even ones.
        let green = rt.spawn(move || {
            let (m, cv) = &*p2;
            for _ in 0..1000 {
                let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 0).unwrap();
                *g += 1;
                cv.notify_all();
            }
        });
        let (m, cv) = &*pair;
        for _ in 0..1000 {
            let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 1).unwrap();
            *g += 1;
            cv.notify_all();
        }
        green.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 2000);
    });
}

// ---------------------------------------------------------------------------
// WaitGroup

#[test]
fn waitgroup_waits_for_every_done() {
    block_on(2, || {
        let wg = WaitGroup::new();
        let finished = Arc::new(AtomicUsize::new(0));
        for i in 0..100u64 {
            wg.add(1);
            let (wg, finished) = (wg.clone(), finished.clone());
            greenrt::spawn(move || {
                greenrt::sleep(Duration::from_millis(i % 10));
                finished.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(
            finished.load(Ordering::SeqCst),
            100,
            "wait returned before every done"
        );
        // A zero count does not block.
        wg.wait();
    });
}

#[test]
fn waitgroup_add_n_and_os_thread_waiter() {
    guarded(|| {
        let rt = runtime(2);
        let wg = WaitGroup::new();
        wg.add(10);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let (wg, done) = (wg.clone(), done.clone());
            let _ = rt.spawn(move || {
                greenrt::sleep(Duration::from_millis(20));
                done.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        wg.wait(); // from an OS thread
        assert_eq!(done.load(Ordering::SeqCst), 10);
    });
}

#[test]
fn waitgroup_done_more_than_add_panics() {
    let wg = WaitGroup::new();
    wg.add(1);
    wg.done();
    let msg = expect_panic("extra done()", || wg.done());
    assert!(!msg.is_empty());
    // The count stayed at zero (did not wrap): the group still works.
    guarded(move || {
        wg.wait();
        wg.add(1);
        wg.done();
        wg.wait();
    });
}

/// Rounds of: several waiters (green and OS) wait while a batch of green
/// threads call done; every round must complete.
fn waitgroup_stress(rt: &greenrt::Runtime, rounds: usize, batch: usize) {
    for round in 0..rounds {
        let wg = WaitGroup::new();
        wg.add(batch);
        let released = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (wg, released) = (wg.clone(), released.clone());
                rt.spawn(move || {
                    wg.wait();
                    released.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let workers: Vec<_> = (0..batch)
            .map(|i| {
                let wg = wg.clone();
                rt.spawn(move || {
                    if i % 3 == 0 {
                        greenrt::yield_now();
                    }
                    wg.done();
                })
            })
            .collect();
        wg.wait();
        for w in waiters {
            w.join().unwrap();
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(released.load(Ordering::SeqCst), 4, "round {round}");
    }
}

#[test]
fn waitgroup_stress_one_worker() {
    guarded(|| waitgroup_stress(&runtime(1), 300, 50));
}

#[test]
fn waitgroup_stress_two_workers() {
    guarded(|| waitgroup_stress(&runtime(2), 300, 50));
}

#[test]
fn condvar_notify_racing_with_the_wait_is_not_lost() {
    // An OS thread polls (never waits) and notifies the moment it sees the
    // green thread's turn end: the notify often lands between the waiter
    // releasing the mutex and going to sleep, where it must not be lost.
    const ROUNDS: u32 = 100_000;
    const GREEN: u8 = 0;
    const OS: u8 = 1;
    guarded(|| {
        let rt = runtime(1);
        let pair = Arc::new((Mutex::new(GREEN), Condvar::new()));
        let p2 = pair.clone();
        let green = rt.spawn(move || {
            let (m, cv) = &*p2;
            for _ in 0..ROUNDS {
                let mut turn = cv.wait_while(m.lock().unwrap(), |t| *t != GREEN).unwrap();
                *turn = OS;
            }
        });
        let (m, cv) = &*pair;
        let mut rounds = 0;
        while rounds < ROUNDS {
            let mut turn = m.lock().unwrap();
            if *turn == OS {
                *turn = GREEN;
                drop(turn);
                cv.notify_one();
                rounds += 1;
            } else {
                drop(turn);
                std::hint::spin_loop();
            }
        }
        green.join().unwrap();
    });
}

#[test]
fn waitgroup_done_racing_with_the_wait_is_not_lost() {
    // The OS thread calls done() the instant the green thread announces it
    // is about to wait.
    const ROUNDS: usize = 50_000;
    guarded(|| {
        let rt = runtime(1);
        let wg = WaitGroup::new();
        let go = Arc::new(AtomicUsize::new(usize::MAX));
        let dones = Arc::new(AtomicUsize::new(0));
        let (wg2, go2, dones2) = (wg.clone(), go.clone(), dones.clone());
        let green = rt.spawn(move || {
            for i in 0..ROUNDS {
                wg2.add(1);
                go2.store(i, Ordering::SeqCst);
                wg2.wait();
                assert_eq!(
                    dones2.load(Ordering::SeqCst),
                    i + 1,
                    "wait returned before done"
                );
            }
        });
        for i in 0..ROUNDS {
            while go.load(Ordering::SeqCst) != i {
                std::hint::spin_loop();
            }
            dones.fetch_add(1, Ordering::SeqCst);
            wg.done();
        }
        green.join().unwrap();
    });
}
