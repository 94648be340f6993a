//! The M:N scheduler: work stealing, yielding, fairness, worker count.

mod common;

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{block_on, block_on_cooperative, child_tag, describe, run_child, spin_for};
use greenrt::sync::mpsc;

#[test]
fn work_stealing_runs_tasks_on_both_workers() {
    let ids = block_on(2, || {
        let seen = Arc::new(StdMutex::new(HashSet::new()));
        // All spawned from one green thread, so they start on its worker's
        // queue: the other worker only gets them by stealing.
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let seen = seen.clone();
                greenrt::spawn(move || {
                    spin_for(Duration::from_millis(1));
                    seen.lock().unwrap().insert(std::thread::current().id());
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let ids = seen.lock().unwrap().clone();
        ids
    });
    // Ms are not Ps: an M handing its P on (blocking hand-off, a spare M
    // after a preemption) means more OS threads than workers may show up.
    // One thread only would mean nothing was stolen.
    assert!(
        ids.len() >= 2,
        "expected the 200 tasks to run on both workers, saw only {ids:?}"
    );
}

#[test]
fn green_threads_run_on_worker_threads_not_the_caller() {
    let caller = std::thread::current().id();
    let (main_tid, name) = block_on(1, || {
        (
            std::thread::current().id(),
            std::thread::current().name().map(str::to_owned),
        )
    });
    assert_ne!(main_tid, caller);
    // The test body runs on a helper thread; the worker is not that one either.
    assert_ne!(name.as_deref(), Some("test-body"));
}

#[test]
fn yield_now_interleaves_two_green_threads_on_one_worker() {
    let log = block_on_cooperative(1, || {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let hs: Vec<_> = ['a', 'b']
            .into_iter()
            .map(|who| {
                let log = log.clone();
                greenrt::spawn(move || {
                    for i in 0..10 {
                        log.lock().unwrap().push((who, i));
                        greenrt::yield_now();
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
    assert_eq!(log.len(), 20);
    for w in log.windows(2) {
        assert_ne!(
            w[0].0, w[1].0,
            "yield_now did not let the other green thread run: {log:?}"
        );
    }
    for who in ['a', 'b'] {
        let mine: Vec<_> = log.iter().filter(|e| e.0 == who).map(|e| e.1).collect();
        assert_eq!(mine, (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn yielding_green_threads_all_make_progress_on_one_worker() {
    // Eight green threads that only ever yield: each must get turns, and
    // in round-robin fashion no one runs far ahead of the others.
    let counts = block_on_cooperative(1, || {
        let counters: Arc<Vec<AtomicUsize>> =
            Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let max_skew = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (counters, stop, max_skew) = (counters.clone(), stop.clone(), max_skew.clone());
                greenrt::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let mine = counters[i].fetch_add(1, Ordering::SeqCst) + 1;
                        let min = counters
                            .iter()
                            .map(|c| c.load(Ordering::SeqCst))
                            .min()
                            .unwrap();
                        max_skew.fetch_max(mine - min.min(mine), Ordering::SeqCst);
                        if mine >= 2000 {
                            stop.store(true, Ordering::SeqCst);
                        }
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let c: Vec<usize> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        (c, max_skew.load(Ordering::SeqCst))
    });
    let (c, skew) = counts;
    assert!(
        c.iter().all(|&n| n >= 1900),
        "some green thread was starved: {c:?}"
    );
    assert!(
        skew <= 2,
        "yield_now is not round-robin on one worker (skew {skew}): {c:?}"
    );
}

#[test]
fn green_threads_beyond_the_local_queue_are_not_starved() {
    // A P's queue holds 256 Gs; the rest wait in the global queue, which a
    // busy P serves only every 61st tick. Thousands of green threads that
    // keep yielding until all of them have started must still all start:
    // if the global queue starved behind the local one, this would hang
    // (and fail on the timeout).
    const N: usize = 3000;
    let started = block_on_cooperative(1, || {
        let started = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let started = started.clone();
                greenrt::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    while started.load(Ordering::SeqCst) < N {
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        started.load(Ordering::SeqCst)
    });
    assert_eq!(started, N);
}

#[test]
fn ping_pong_pair_does_not_starve_a_queued_green_thread() {
    // Two green threads that keep waking each other go through the LIFO
    // "next" slot; a third, runnable one sitting in the queue must still
    // get the worker (it is the one that ends the ping-pong).
    let rounds = block_on(1, || {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (a_tx, a_rx) = mpsc::channel::<()>();
        let (b_tx, b_rx) = mpsc::channel::<()>();
        let (s1, r1) = (stop.clone(), rounds.clone());
        let a = greenrt::spawn(move || {
            while !s1.load(Ordering::SeqCst) {
                b_tx.send(()).unwrap();
                if a_rx.recv().is_err() {
                    break;
                }
                r1.fetch_add(1, Ordering::SeqCst);
            }
            // Dropping b_tx ends b's loop.
        });
        let b = greenrt::spawn(move || {
            while b_rx.recv().is_ok() {
                if a_tx.send(()).is_err() {
                    break;
                }
            }
        });
        let (s3, r3) = (stop.clone(), rounds.clone());
        let c = greenrt::spawn(move || {
            // Wait (runnable, in the queue) until the ping-pong is going.
            while r3.load(Ordering::SeqCst) < 100 {
                greenrt::yield_now();
            }
            s3.store(true, Ordering::SeqCst);
        });
        c.join().unwrap();
        a.join().unwrap();
        b.join().unwrap();
        rounds.load(Ordering::SeqCst)
    });
    assert!(rounds >= 100);
}

#[test]
fn blocking_on_the_runtime_from_several_os_threads_at_once() {
    let rt = Arc::new(common::runtime(2));
    let results = common::guarded(move || {
        let ts: Vec<_> = (0..6u64)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    rt.block_on(move || {
                        let hs: Vec<_> = (0..100u64)
                            .map(|i| {
                                greenrt::spawn(move || {
                                    greenrt::yield_now();
                                    t * 100 + i
                                })
                            })
                            .collect();
                        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                    })
                })
            })
            .collect();
        ts.into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (t, r) in results.iter().enumerate() {
        let t = t as u64;
        assert_eq!(*r, (0..100u64).map(|i| t * 100 + i).sum::<u64>());
    }
}

#[test]
fn green_thread_migrates_between_workers_and_keeps_its_state() {
    // A green thread may resume on another worker after blocking; its
    // stack (locals) must come along intact.
    let (tids, sum) = block_on(2, || {
        let busy = Arc::new(AtomicBool::new(true));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let busy = busy.clone();
                greenrt::spawn(move || {
                    while busy.load(Ordering::SeqCst) {
                        spin_for(Duration::from_micros(200));
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        let h = greenrt::spawn(|| {
            let mut tids = HashSet::new();
            let mut local = [0u64; 64];
            for round in 0..400u64 {
                for (i, slot) in local.iter_mut().enumerate() {
                    *slot += round * i as u64;
                }
                tids.insert(std::thread::current().id());
                if round % 2 == 0 {
                    greenrt::yield_now();
                } else {
                    greenrt::sleep(Duration::from_micros(100));
                }
            }
            (tids.len(), local.iter().sum::<u64>())
        });
        let r = h.join().unwrap();
        busy.store(false, Ordering::SeqCst);
        for h in hogs {
            h.join().unwrap();
        }
        r
    });
    let expected: u64 = (0..400u64).sum::<u64>() * (0..64u64).sum::<u64>();
    assert_eq!(
        sum, expected,
        "a green thread's stack was corrupted across switches"
    );
    eprintln!("green thread ran on {tids} distinct worker thread(s)");
}

/// Counts how many of `n` green threads run at the same moment: each
/// busy-spins (never yielding) for `hold`, so only as many as there are
/// workers can be in the loop together. Only meaningful on a cooperative
/// runtime: preemption interleaves spinners inside the window.
fn max_parallelism(n: usize, hold: Duration) -> usize {
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (inside, max) = (inside.clone(), max.clone());
            greenrt::spawn(move || {
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                let start = Instant::now();
                while start.elapsed() < hold {
                    max.fetch_max(inside.load(Ordering::SeqCst), Ordering::SeqCst);
                    std::hint::spin_loop();
                }
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    max.load(Ordering::SeqCst)
}

/// True if `n` green threads all manage to run at the same time: each
/// arrives and spins (never yielding) until all have arrived or `limit`.
fn all_run_together(n: usize, limit: Duration) -> bool {
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let arrived = arrived.clone();
            greenrt::spawn(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                while arrived.load(Ordering::SeqCst) < n {
                    if start.elapsed() > limit {
                        return false;
                    }
                    std::hint::spin_loop();
                }
                true
            })
        })
        .collect();
    hs.into_iter()
        .map(|h| h.join().unwrap())
        .fold(true, |a, b| a & b)
}

#[test]
fn workers_setting_bounds_parallelism() {
    let (two, max) = block_on_cooperative(2, || {
        (
            all_run_together(2, Duration::from_secs(20)),
            max_parallelism(4, Duration::from_millis(100)),
        )
    });
    assert!(
        two,
        "two workers never ran two green threads at the same time"
    );
    assert!(max <= 2, "{max} green threads ran at once on 2 workers");
    let max = block_on_cooperative(1, || max_parallelism(3, Duration::from_millis(50)));
    assert_eq!(max, 1, "green threads ran in parallel on a single worker");
}

#[test]
fn greenrt_workers_env_sets_default_worker_count() {
    const NAME: &str = "greenrt_workers_env_sets_default_worker_count";
    match child_tag().as_deref() {
        Some("workers3") => {
            let rt = greenrt::Builder::new()
                .build()
                .expect("build with GREENRT_WORKERS=3");
            let (three, max) = rt.block_on(|| {
                (
                    all_run_together(3, Duration::from_secs(20)),
                    max_parallelism(5, Duration::from_millis(100)),
                )
            });
            assert!(three, "GREENRT_WORKERS=3 did not give 3 parallel workers");
            assert!(
                max <= 3,
                "{max} green threads ran at once with GREENRT_WORKERS=3"
            );
            // greenrt::run uses the same default.
            let max = greenrt::run(|| max_parallelism(5, Duration::from_millis(300)));
            assert!(
                (2..=3).contains(&max),
                "greenrt::run: parallelism {max} with GREENRT_WORKERS=3"
            );
            // An explicit workers() overrides the variable.
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert_eq!(
                rt.block_on(|| max_parallelism(3, Duration::from_millis(50))),
                1
            );
            println!("CHILD_OK workers3");
        }
        Some("workers1") => {
            let max = greenrt::run(|| max_parallelism(3, Duration::from_millis(50)));
            assert_eq!(max, 1, "GREENRT_WORKERS=1 ran green threads in parallel");
            println!("CHILD_OK workers1");
        }
        Some("workers_bad") => {
            let v = std::env::var("GREENRT_WORKERS").unwrap();
            let err = greenrt::Builder::new()
                .build()
                .expect_err("invalid GREENRT_WORKERS must fail");
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidInput,
                "GREENRT_WORKERS={v:?}: {err}"
            );
            assert!(
                err.to_string().contains("GREENRT_WORKERS"),
                "the error does not name the variable: {err}"
            );
            // An explicit count does not consult the variable.
            let rt = greenrt::Builder::new()
                .workers(2)
                .build()
                .expect("explicit workers(2)");
            assert_eq!(rt.block_on(|| 5), 5);
            println!("CHILD_OK workers_bad");
        }
        Some(other) => panic!("unknown child tag {other}"),
        None => {
            let cases: [(&str, &str); 4] = [
                ("workers3", "3"),
                ("workers1", "1"),
                ("workers_bad", "0"),
                ("workers_bad", "lots"),
            ];
            for (tag, value) in cases {
                let out = run_child(
                    NAME,
                    tag,
                    // Cooperative: see `common::cooperative_runtime`.
                    &[
                        ("GREENRT_WORKERS", Some(value)),
                        ("GREENRT_PREEMPT", Some("off")),
                    ],
                    Duration::from_secs(120),
                );
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains(&format!("CHILD_OK {tag}")),
                    "child {tag} with GREENRT_WORKERS={value} failed:\n{}",
                    describe(&out)
                );
            }
        }
    }
}

#[test]
fn spawns_from_an_os_thread_while_workers_go_idle_are_not_lost() {
    // Each spawn arrives from outside just as the workers, out of work,
    // are going to sleep: the new green thread must still be run.
    for workers in [1, 2] {
        common::guarded(move || {
            let rt = common::runtime(workers);
            for i in 0..20_000u64 {
                let h = rt.spawn(move || i + 1);
                // Spin (rather than park) so the next spawn follows the
                // end of this one as closely as possible.
                while !h.is_finished() {
                    std::hint::spin_loop();
                }
                for _ in 0..(i % 64) * 8 {
                    std::hint::spin_loop();
                }
                assert_eq!(h.join().unwrap(), i + 1);
            }
        });
    }
}
