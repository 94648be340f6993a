//! greenrt::sleep and the timer machinery.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{block_on, block_on_cooperative, guarded, runtime, spin_for};

/// 1000 green threads sleep 50 ms at once; returns (shortest individual
/// sleep, total wall time).
fn thousand_sleepers() -> (Duration, Duration) {
    let start = Instant::now();
    let hs: Vec<_> = (0..1000)
        .map(|_| {
            greenrt::spawn(|| {
                let t = Instant::now();
                greenrt::sleep(Duration::from_millis(50));
                t.elapsed()
            })
        })
        .collect();
    let min = hs.into_iter().map(|h| h.join().unwrap()).min().unwrap();
    (min, start.elapsed())
}

#[test]
fn thousand_concurrent_sleepers_finish_together_one_worker() {
    let (min, total) = block_on(1, thousand_sleepers);
    assert!(
        min >= Duration::from_millis(50),
        "a green thread slept only {min:?}"
    );
    // Sequential sleeping would take 1000 × 50 ms = 50 s.
    assert!(
        total < Duration::from_secs(3),
        "1000 concurrent 50 ms sleeps took {total:?}"
    );
}

#[test]
fn thousand_concurrent_sleepers_finish_together_two_workers() {
    let (min, total) = block_on(2, thousand_sleepers);
    assert!(
        min >= Duration::from_millis(50),
        "a green thread slept only {min:?}"
    );
    assert!(
        total < Duration::from_secs(3),
        "1000 concurrent 50 ms sleeps took {total:?}"
    );
}

#[test]
fn sleep_lasts_at_least_the_requested_time() {
    block_on(2, || {
        for ms in [1u64, 5, 20, 120] {
            let d = Duration::from_millis(ms);
            let t = Instant::now();
            greenrt::sleep(d);
            let took = t.elapsed();
            assert!(took >= d, "sleep({d:?}) returned after {took:?}");
            assert!(
                took < d + Duration::from_secs(5),
                "sleep({d:?}) took {took:?}"
            );
        }
        let t = Instant::now();
        greenrt::sleep(Duration::from_nanos(1));
        assert!(t.elapsed() >= Duration::from_nanos(1));
    });
}

#[test]
fn sleep_does_not_block_the_worker() {
    // One worker: while a green thread sleeps, others must run.
    // Cooperative, so that a retake of a blocked worker cannot hide an
    // OS-level sleep.
    let (progress_seen, took) = block_on_cooperative(1, || {
        let progress = Arc::new(AtomicUsize::new(0));
        let p1 = progress.clone();
        let sleeper = greenrt::spawn(move || {
            let t = Instant::now();
            greenrt::sleep(Duration::from_millis(200));
            (p1.load(Ordering::SeqCst), t.elapsed())
        });
        greenrt::yield_now(); // the sleeper starts sleeping
        let p2 = progress.clone();
        let worker = greenrt::spawn(move || {
            for _ in 0..100 {
                p2.fetch_add(1, Ordering::SeqCst);
                greenrt::yield_now();
            }
        });
        worker.join().unwrap();
        sleeper.join().unwrap()
    });
    assert_eq!(
        progress_seen, 100,
        "the other green thread did not run while one slept"
    );
    assert!(took >= Duration::from_millis(200));
}

#[test]
fn sleepers_wake_in_deadline_order() {
    let order = block_on(1, || {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let hs: Vec<_> = [450u64, 50, 250]
            .into_iter()
            .map(|ms| {
                let log = log.clone();
                greenrt::spawn(move || {
                    greenrt::sleep(Duration::from_millis(ms));
                    log.lock().unwrap().push(ms);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(order, vec![50, 250, 450]);
}

#[test]
fn sleeper_wakes_while_the_worker_is_saturated_with_yielders() {
    // One worker kept busy by green threads that only yield: the timer of
    // a sleeping green thread must still fire (timers are not starved).
    let took = block_on(1, || {
        let stop = Arc::new(AtomicBool::new(false));
        let yielders: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                greenrt::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        let s = stop.clone();
        let sleeper = greenrt::spawn(move || {
            let t = Instant::now();
            greenrt::sleep(Duration::from_millis(100));
            s.store(true, Ordering::SeqCst);
            t.elapsed()
        });
        let took = sleeper.join().unwrap();
        for y in yielders {
            y.join().unwrap();
        }
        took
    });
    assert!(took >= Duration::from_millis(100));
    assert!(
        took < Duration::from_secs(10),
        "the sleeper was starved for {took:?}"
    );
}

#[test]
fn sleeper_wakes_while_the_other_workers_spin() {
    // Two workers, one of them hogged by a green thread that never yields:
    // timers must still be served by the other worker.
    let took = block_on(2, || {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let hog = greenrt::spawn(move || {
            let t = Instant::now();
            while !s.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(30) {
                std::hint::spin_loop();
            }
        });
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            greenrt::sleep(Duration::from_millis(30));
            worst = worst.max(t.elapsed());
        }
        stop.store(true, Ordering::SeqCst);
        hog.join().unwrap();
        worst
    });
    assert!(took >= Duration::from_millis(30));
    assert!(
        took < Duration::from_secs(10),
        "a 30 ms sleep took {took:?} next to a spinning worker"
    );
}

#[test]
fn sleep_zero_yields_to_other_green_threads() {
    let log = block_on_cooperative(1, || {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let hs: Vec<_> = ['x', 'y']
            .into_iter()
            .map(|who| {
                let log = log.clone();
                greenrt::spawn(move || {
                    for _ in 0..5 {
                        log.lock().unwrap().push(who);
                        greenrt::sleep(Duration::ZERO);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(log.len(), 10);
    assert!(
        log.windows(2).all(|w| w[0] != w[1]),
        "sleep(0) did not yield: {log:?}"
    );
}

#[test]
fn sleeps_from_an_idle_runtime_wake_up() {
    // Every worker is idle (parked) when the timer is due: an idle worker
    // must wake for it. Repeated, with the runtime going idle in between.
    let rt = Arc::new(runtime(2));
    guarded(move || {
        for i in 0..5u64 {
            std::thread::sleep(Duration::from_millis(20)); // let the workers go idle
            let took = rt.block_on(move || {
                let t = Instant::now();
                greenrt::sleep(Duration::from_millis(10 + i * 10));
                t.elapsed()
            });
            assert!(took >= Duration::from_millis(10 + i * 10));
        }
        // Many sleepers spawned from outside while idle.
        let hs: Vec<_> = (0..50u64)
            .map(|i| {
                rt.spawn(move || {
                    greenrt::sleep(Duration::from_millis(i % 7 * 5 + 1));
                    i
                })
            })
            .collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, (0..50).sum::<u64>());
    });
}

#[test]
fn timed_waits_and_sleeps_mixed_under_load() {
    // Sleeps of many lengths, with CPU work in between, on two workers.
    let ok = block_on(2, || {
        let hs: Vec<_> = (0..300u64)
            .map(|i| {
                greenrt::spawn(move || {
                    let d = Duration::from_millis(i % 13 * 3);
                    for _ in 0..3 {
                        spin_for(Duration::from_micros(50));
                        let t = Instant::now();
                        greenrt::sleep(d);
                        if t.elapsed() < d {
                            return false;
                        }
                    }
                    true
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(ok, 300, "some sleeps returned early");
}

#[test]
fn sleeper_wakes_on_time_when_a_hog_arrives_while_workers_idle() {
    // The sleeper's timer is watched by an idle worker; then a green
    // thread that never yields arrives and takes a worker (perhaps that
    // very watcher). The other, idle, worker must still fire the timer.
    guarded(|| {
        for offset_ms in [0u64, 2, 5, 10, 20, 40] {
            let rt = runtime(2);
            let stop = Arc::new(AtomicBool::new(false));
            let sleeper = rt.spawn(|| {
                let t = Instant::now();
                greenrt::sleep(Duration::from_millis(60));
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(offset_ms));
            let st = stop.clone();
            let hog = rt.spawn(move || {
                let t = Instant::now();
                while !st.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
                    std::hint::spin_loop();
                }
            });
            let slept = sleeper.join().unwrap();
            stop.store(true, Ordering::SeqCst);
            hog.join().unwrap();
            assert!(slept >= Duration::from_millis(60));
            assert!(
                slept < Duration::from_secs(2),
                "hog arriving after {offset_ms} ms delayed a 60 ms sleep to {slept:?}"
            );
        }
    });
}

/// Waits until `greenrt::metrics().armed_timers()` is `n` (or 10 s pass);
/// returns the last count seen.
fn armed_settles_at(n: usize) -> usize {
    let start = Instant::now();
    loop {
        let armed = greenrt::metrics().armed_timers();
        if armed == n || start.elapsed() > Duration::from_secs(10) {
            return armed;
        }
        greenrt::yield_now();
    }
}

#[test]
fn a_wait_that_ends_early_disarms_its_timer() {
    block_on(2, || {
        let long = Duration::from_secs(600);
        assert_eq!(greenrt::metrics().armed_timers(), 0);

        // recv_timeout answered in time.
        let (tx, rx) = greenrt::sync::mpsc::channel::<u32>();
        let waiter = greenrt::spawn(move || rx.recv_timeout(long));
        assert_eq!(
            armed_settles_at(1),
            1,
            "the waiting recv_timeout has no timer"
        );
        tx.send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(7));
        assert_eq!(
            armed_settles_at(0),
            0,
            "recv_timeout's timer outlived the wait"
        );

        // Condvar::wait_timeout notified in time.
        let pair = Arc::new((
            greenrt::sync::Mutex::new(false),
            greenrt::sync::Condvar::new(),
        ));
        let p2 = pair.clone();
        let waiter = greenrt::spawn(move || {
            let (lock, cv) = &*p2;
            let mut ready = lock.lock().unwrap();
            while !*ready {
                let (g, result) = cv.wait_timeout(ready, long).unwrap();
                assert!(!result.timed_out());
                ready = g;
            }
        });
        assert_eq!(
            armed_settles_at(1),
            1,
            "the waiting wait_timeout has no timer"
        );
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        waiter.join().unwrap();
        assert_eq!(
            armed_settles_at(0),
            0,
            "wait_timeout's timer outlived the wait"
        );

        // join_timeout of a green thread that finishes in time.
        let (go_tx, go_rx) = greenrt::sync::mpsc::channel::<()>();
        let worker = greenrt::spawn(move || go_rx.recv().unwrap());
        let joiner = greenrt::spawn(move || worker.join_timeout(long).is_ok());
        assert_eq!(
            armed_settles_at(1),
            1,
            "the waiting join_timeout has no timer"
        );
        go_tx.send(()).unwrap();
        assert!(joiner.join().unwrap());
        assert_eq!(
            armed_settles_at(0),
            0,
            "join_timeout's timer outlived the wait"
        );

        // Many at once, on both workers, then a sleep that runs out.
        let (senders, waiters): (Vec<_>, Vec<_>) = (0..1000)
            .map(|_| {
                let (tx, rx) = greenrt::sync::mpsc::channel::<()>();
                (tx, greenrt::spawn(move || rx.recv_timeout(long)))
            })
            .unzip();
        for (tx, w) in senders.into_iter().zip(waiters) {
            tx.send(()).unwrap();
            assert_eq!(w.join().unwrap(), Ok(()));
        }
        greenrt::sleep(Duration::from_millis(5));
        assert_eq!(
            armed_settles_at(0),
            0,
            "timers left armed by 1000 early wake-ups"
        );
    });
}

/// A fired timer marks its green thread so the wait's end skips the
/// wheel; the mark must not outlive that wait: the same green thread's
/// next timed wait, ended early, still disarms its own timer.
#[test]
fn a_wait_after_a_fired_timer_still_disarms_its_timer() {
    block_on(2, || {
        let long = Duration::from_secs(600);
        let (tx, rx) = greenrt::sync::mpsc::channel::<u32>();
        let (slept_tx, slept_rx) = greenrt::sync::mpsc::channel::<()>();
        let waiter = greenrt::spawn(move || {
            // Timers that fire: a sleep, and a recv_timeout that runs out.
            greenrt::sleep(Duration::from_millis(2));
            assert!(rx.recv_timeout(Duration::from_millis(2)).is_err());
            slept_tx.send(()).unwrap();
            // Then one answered in time.
            rx.recv_timeout(long)
        });
        slept_rx.recv().unwrap();
        assert_eq!(
            armed_settles_at(1),
            1,
            "the waiting recv_timeout has no timer"
        );
        tx.send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(7));
        assert_eq!(
            armed_settles_at(0),
            0,
            "the wait after a fired timer left its own timer armed"
        );
    });
}
