//! greenrt::sync::{Condvar, WaitGroup}: std-like semantics and
//! lost-wake-up stress.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, expect_panic, guarded, runtime};
use greenrt::sync::{Condvar, Mutex, WaitGroup};

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
