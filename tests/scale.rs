//! Issue 18 at CI scale: 200 000 green threads, spawned with the default
//! API as a user would, on 2 workers.
//!
//! - 200 000 sleepers (1 s each) all finish within a generous bound, none
//!   early, and leave no timer armed.
//! - 200 000 green threads parked on a `Condvar` cost under 8 KiB of RSS
//!   each (one stack page plus the G is about 4.5 KiB).
//!
//! The two take `serial()`: one measures time, the other the process's
//! RSS, and neither should see the other's green threads.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{runtime, serial, with_timeout};

const COUNT: usize = 200_000;
/// Generous: about 3 s in a release build on 2 busy cores.
const LIMIT: Duration = Duration::from_secs(60);

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line")
}

#[test]
fn two_hundred_thousand_sleepers_finish() {
    let _serial = serial();
    let (took, early, armed) = with_timeout(LIMIT + Duration::from_secs(30), || {
        runtime(2).block_on(|| {
            let start = Instant::now();
            let early = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = greenrt::sync::mpsc::sync_channel::<()>(1);
            for _ in 0..COUNT {
                let (early, done, tx) = (early.clone(), done.clone(), tx.clone());
                greenrt::spawn(move || {
                    let t = Instant::now();
                    greenrt::sleep(Duration::from_secs(1));
                    if t.elapsed() < Duration::from_secs(1) {
                        early.fetch_add(1, Ordering::Relaxed);
                    }
                    if done.fetch_add(1, Ordering::AcqRel) + 1 == COUNT {
                        tx.send(()).unwrap();
                    }
                });
            }
            rx.recv().unwrap();
            let took = start.elapsed();
            (
                took,
                early.load(Ordering::Relaxed),
                greenrt::metrics().armed_timers(),
            )
        })
    });
    assert_eq!(early, 0, "sleeps ended early");
    assert_eq!(armed, 0, "timers left armed after every sleep ended");
    assert!(took < LIMIT, "{COUNT} sleepers took {took:?}");
    eprintln!("{COUNT} sleepers of 1 s: {took:?}");
}

#[test]
fn a_parked_green_thread_costs_under_8_kib_of_rss() {
    let _serial = serial();
    let per_g = with_timeout(LIMIT, || {
        let rt = runtime(2);
        let base = status_kib("VmRSS");
        let rss = rt.block_on(|| {
            let gate = Arc::new((
                greenrt::sync::Mutex::new((0usize, false)),
                greenrt::sync::Condvar::new(),
            ));
            let done = Arc::new(AtomicUsize::new(0));
            for _ in 0..COUNT {
                let (gate, done) = (gate.clone(), done.clone());
                greenrt::spawn(move || {
                    let (lock, cv) = &*gate;
                    let mut g = lock.lock().unwrap();
                    g.0 += 1;
                    while !g.1 {
                        g = cv.wait(g).unwrap();
                    }
                    drop(g);
                    done.fetch_add(1, Ordering::AcqRel);
                });
            }
            while gate.0.lock().unwrap().0 < COUNT {
                greenrt::sleep(Duration::from_millis(2));
            }
            let rss = status_kib("VmRSS");
            gate.0.lock().unwrap().1 = true;
            gate.1.notify_all();
            while done.load(Ordering::Acquire) < COUNT {
                greenrt::sleep(Duration::from_millis(2));
            }
            rss
        });
        rss.saturating_sub(base) as f64 * 1024.0 / COUNT as f64
    });
    eprintln!("RSS per parked green thread: {:.0} bytes", per_g);
    assert!(
        per_g < 8192.0,
        "RSS per parked green thread {per_g:.0} bytes"
    );
}
