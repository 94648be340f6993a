//! Shutdown with green threads that were preempted, print, spin without
//! preemption or never started: the drop returns in time, locks (stdout)
//! are released, and a second runtime works afterwards.
//!
//! Every test holds `SERIAL`: they time drops.

mod common;
mod shutdown_util;

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child_tag;
use common::preemption::{add_twos, child_ok, ms, preemptive, tsc, tsc_ticks};
use shutdown_util::{
    exclusive, is_cancelled, runtime, timed_drop, wait_parked, Dropped, DROP_LIMIT, FOREVER,
};

#[test]
fn green_thread_holding_stdout_lock_releases_it_at_shutdown() {
    exclusive(|| {
        let rt = runtime(1);
        let parked = Arc::new(AtomicUsize::new(0));
        let p = parked.clone();
        rt.spawn(move || {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"");
            p.fetch_add(1, SeqCst);
            greenrt::sleep(FOREVER);
            drop(out);
        });
        wait_parked(&parked, 1);
        let took = timed_drop(rt);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        // The main thread can print: the lock was released by the unwind.
        let mut out = std::io::stdout().lock();
        out.write_all(b"").unwrap();
        out.flush().unwrap();
    });
}

#[test]
fn preempted_printing_green_threads_do_not_hang_drop() {
    // Three green threads on one worker take stdout's lock over and over
    // (and are preempted inside it); the drop must resume them, and the
    // main thread must be able to print afterwards.
    exclusive(|| {
        let before = greenrt::preempt::stats();
        let rt = greenrt::Builder::new()
            .workers(1)
            .preempt_quantum(Duration::from_micros(200))
            .build()
            .unwrap();
        let rounds = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let r = rounds.clone();
            rt.spawn(move || loop {
                {
                    let mut out = std::io::stdout().lock();
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_micros(300) {
                        let _ = out.write_all(b"");
                    }
                }
                r.fetch_add(1, SeqCst);
                greenrt::yield_now();
            });
        }
        let start = Instant::now();
        while greenrt::preempt::stats().since(&before).preemptions < 20
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = timed_drop(rt);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        assert!(rounds.load(SeqCst) > 0);
        let mut out = std::io::stdout().lock();
        out.write_all(b"").unwrap();
    });
}

#[test]
fn dropping_a_runtime_with_preempted_hogs_returns() {
    const NAME: &str = "dropping_a_runtime_with_preempted_hogs_returns";
    if child_tag().as_deref() != Some("drop") {
        let out = child_ok(NAME, "drop", &[]);
        println!(
            "{}",
            out.lines().find(|l| l.starts_with("drop:")).unwrap_or("")
        );
        return;
    }
    let rt = preemptive(2, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    rt.block_on(move || {
        for _ in 0..4 {
            let stop = stop2.clone();
            greenrt::spawn(move || {
                let end = tsc() + tsc_ticks(Duration::from_secs(20));
                while !stop.load(SeqCst) && tsc() < end {
                    black_box(add_twos(black_box(1000)));
                }
            });
        }
        greenrt::sleep(Duration::from_millis(50));
    });
    let t = Instant::now();
    drop(rt);
    let took = t.elapsed();
    stop.store(true, SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    // On a line of its own: the test runner's "test … " prefix is on the
    // current one, and the parent looks for a line starting with "drop:".
    println!();
    println!(
        "drop: dropping the runtime with 4 running hogs took {:.1} ms",
        ms(took)
    );
    assert!(
        took < Duration::from_secs(5),
        "dropping a runtime waited {took:?} for CPU-bound green threads that preemption \
         should have parked"
    );
    println!("CHILD_OK drop");
}

#[test]
fn spinning_green_thread_without_preemption_is_detached_not_waited_for() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(1)
            .preemption(false)
            .build()
            .unwrap();
        let go = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (g, s, d) = (go.clone(), stop.clone(), dropped.clone());
        let h = rt.spawn(move || {
            let _d = Dropped(d);
            g.store(true, SeqCst);
            while !s.load(SeqCst) {
                std::hint::spin_loop();
            }
            // Detached, it unwinds at its next blocking call.
            greenrt::sleep(FOREVER);
        });
        while !go.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = Instant::now();
        rt.shutdown_timeout(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(took < DROP_LIMIT, "shutdown took {took:?}");
        assert_eq!(dropped.load(SeqCst), 0, "still running, detached");
        stop.store(true, SeqCst);
        let payload = h.join().expect_err("cancelled at its next blocking call");
        assert!(is_cancelled(&*payload));
        assert_eq!(dropped.load(SeqCst), 1);
    });
}

#[test]
fn unstarted_green_threads_are_cancelled_without_running() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(1)
            .preemption(false)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let parked = Arc::new(AtomicUsize::new(0));
        let p = parked.clone();
        // The worker is busy in a blocking std call while the others are
        // queued behind it, and shutdown comes first.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        rt.spawn(move || {
            p.fetch_add(1, SeqCst);
            let _ = rx.recv_timeout(Duration::from_millis(300));
        });
        wait_parked(&parked, 1);
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let (r, d) = (ran.clone(), Dropped(dropped.clone()));
                rt.spawn(move || {
                    let _d = d;
                    r.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let took = timed_drop(rt);
        drop(tx);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        assert_eq!(dropped.load(SeqCst), 10, "every closure dropped");
        assert_eq!(ran.load(SeqCst), 0, "none started after the shutdown began");
        for h in hs {
            assert!(is_cancelled(&*h.join().unwrap_err()));
        }
    });
}

#[test]
fn second_runtime_works_after_a_cancelling_drop() {
    exclusive(|| {
        let rt = runtime(2);
        let parked = Arc::new(AtomicUsize::new(0));
        let p = parked.clone();
        rt.spawn(move || {
            p.fetch_add(1, SeqCst);
            greenrt::sleep(FOREVER)
        });
        wait_parked(&parked, 1);
        drop(rt);
        let rt = runtime(2);
        let sum = rt.block_on(|| {
            let hs: Vec<_> = (0..100u64).map(|i| greenrt::spawn(move || i)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert_eq!(sum, 4950);
    });
}
