//! `greenrt::scope`: std::thread::scope's semantics for green threads —
//! borrowing, joining at the end, panic propagation, nesting, spawning
//! from other threads, and cancellation at runtime shutdown.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use common::{block_on, expect_panic, guarded, panic_text, runtime};

#[test]
fn scoped_green_threads_borrow_and_mutate_the_callers_data() {
    block_on(2, || {
        let mut data = vec![1u64; 1000];
        let factor = 3u64;
        let sum = AtomicUsize::new(0);
        greenrt::scope(|s| {
            for chunk in data.chunks_mut(100) {
                let sum = &sum;
                s.spawn(move || {
                    for x in chunk.iter_mut() {
                        *x *= factor;
                        greenrt::yield_now();
                    }
                    sum.fetch_add(chunk.iter().sum::<u64>() as usize, Ordering::Relaxed);
                });
            }
        });
        assert!(data.iter().all(|&x| x == 3));
        assert_eq!(sum.load(Ordering::Relaxed), 3000);
    });
}

#[test]
fn every_scoped_green_thread_is_joined_when_the_scope_ends() {
    block_on(2, || {
        let finished = AtomicUsize::new(0);
        let r = greenrt::scope(|s| {
            for i in 0..20u64 {
                let finished = &finished;
                // Not joined: the scope must wait for them.
                s.spawn(move || {
                    greenrt::sleep(Duration::from_millis(i % 5 * 5));
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            "the scope's value"
        });
        assert_eq!(r, "the scope's value");
        assert_eq!(finished.load(Ordering::SeqCst), 20);
    });
}

#[test]
fn join_returns_results_that_borrow_from_the_environment() {
    block_on(2, || {
        let words = [String::from("alpha"), String::from("beta")];
        let longest = greenrt::scope(|s| {
            let hs: Vec<_> = words.iter().map(|w| s.spawn(move || w.as_str())).collect();
            let got: Vec<&str> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.into_iter().max_by_key(|w| w.len()).unwrap()
        });
        assert_eq!(longest, "alpha");
    });
}

#[test]
fn an_unjoined_panic_propagates_after_all_have_finished() {
    block_on(2, || {
        let slow_done = AtomicBool::new(false);
        let msg = expect_panic("scope with a panicking green thread", || {
            greenrt::scope(|s| {
                s.spawn(|| panic!("boom in a scoped green thread"));
                s.spawn(|| {
                    greenrt::sleep(Duration::from_millis(50));
                    slow_done.store(true, Ordering::SeqCst);
                });
            })
        });
        assert_eq!(msg, "a scoped green thread panicked");
        assert!(
            slow_done.load(Ordering::SeqCst),
            "scope unwound before its slow green thread finished"
        );
    });
}

#[test]
fn a_joined_panic_is_the_joiners_to_handle() {
    block_on(2, || {
        let r = greenrt::scope(|s| {
            let h = s.spawn(|| -> u32 { panic!("caught by join") });
            let err = h.join().unwrap_err();
            panic_text(&*err)
        });
        assert_eq!(r, "caught by join");
    });
}

#[test]
fn a_panic_in_the_scope_closure_resumes_after_all_have_finished() {
    block_on(2, || {
        let done = AtomicUsize::new(0);
        let msg = expect_panic("panicking scope closure", || {
            greenrt::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        greenrt::sleep(Duration::from_millis(30));
                        done.fetch_add(1, Ordering::SeqCst);
                    });
                }
                panic!("the scope closure panicked");
            })
        });
        assert_eq!(msg, "the scope closure panicked");
        assert_eq!(done.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn nested_scopes_and_spawning_from_scoped_green_threads() {
    block_on(2, || {
        let count = AtomicUsize::new(0);
        greenrt::scope(|outer| {
            for _ in 0..4 {
                outer.spawn(|| {
                    // Spawn into the same scope from inside it.
                    outer.spawn(|| count.fetch_add(1, Ordering::SeqCst));
                    greenrt::scope(|inner| {
                        for _ in 0..4 {
                            inner.spawn(|| count.fetch_add(10, Ordering::SeqCst));
                        }
                    });
                });
            }
        });
        assert_eq!(count.load(Ordering::SeqCst), 4 + 4 * 40);
    });
}

#[test]
fn a_plain_os_thread_may_spawn_into_the_scope() {
    block_on(2, || {
        let count = AtomicUsize::new(0);
        greenrt::scope(|s| {
            std::thread::scope(|os| {
                os.spawn(|| {
                    let hs: Vec<_> = (0..8).map(|i| s.spawn(move || i * 2)).collect::<Vec<_>>();
                    let total: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
                    count.fetch_add(total as usize, Ordering::SeqCst);
                });
            });
            // Spawned from the OS thread, not joined: the scope joins it.
            std::thread::scope(|os| {
                os.spawn(|| {
                    s.spawn(|| {
                        greenrt::sleep(Duration::from_millis(20));
                        count.fetch_add(1000, Ordering::SeqCst);
                    });
                });
            });
        });
        assert_eq!(count.load(Ordering::SeqCst), 56 + 1000);
    });
}

#[test]
fn results_are_dropped_before_the_scope_returns() {
    struct Noisy<'a>(&'a AtomicUsize);
    impl Drop for Noisy<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    block_on(2, || {
        let dropped = AtomicUsize::new(0);
        greenrt::scope(|s| {
            for _ in 0..10 {
                // Results never joined: dropped with the scope.
                s.spawn(|| Noisy(&dropped));
            }
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
    });
}

#[test]
fn handles_report_finished_and_ids_and_builder_names() {
    block_on(1, || {
        greenrt::scope(|s| {
            let h = greenrt::task::Builder::new()
                .name("scoped-worker")
                .spawn_scoped(s, || greenrt::task::current_name().unwrap())
                .unwrap();
            let id = h.id();
            while !h.is_finished() {
                greenrt::yield_now();
            }
            assert!(format!("{h:?}").contains("finished: true"));
            assert_ne!(Some(id), greenrt::task::current_id());
            assert_eq!(h.join().unwrap(), "scoped-worker");
            assert!(format!("{s:?}").starts_with("Scope"));
        });
    });
}

#[test]
fn waiting_parks_only_the_green_thread() {
    // One worker: if the scope's wait blocked it, the children would never
    // run.
    block_on(1, || {
        let n = AtomicUsize::new(0);
        greenrt::scope(|s| {
            for _ in 0..100 {
                s.spawn(|| {
                    greenrt::yield_now();
                    n.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(n.load(Ordering::SeqCst), 100);
    });
}

#[test]
fn many_scoped_green_threads() {
    block_on(2, || {
        let v: Vec<usize> = (0..2000).collect();
        let total = AtomicUsize::new(0);
        greenrt::scope(|s| {
            for x in &v {
                let total = &total;
                s.spawn(move || total.fetch_add(*x, Ordering::Relaxed));
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 1999 * 2000 / 2);
    });
}

#[test]
fn scope_outside_a_green_thread_panics_like_spawn() {
    let msg = expect_panic("scope on a plain thread", || greenrt::scope(|_| ()));
    assert!(
        msg.contains("greenrt::scope called outside a green thread"),
        "{msg}"
    );
}

/// What the cancellation test records: scoped green threads still running
/// when the scope's borrowed data was dropped (must be zero).
static RUNNING_AT_ENV_DROP: StdMutex<Option<usize>> = StdMutex::new(None);

#[test]
fn a_cancelled_scope_waits_for_its_green_threads_before_unwinding() {
    struct Env<'a>(&'a AtomicUsize);
    impl Drop for Env<'_> {
        fn drop(&mut self) {
            *RUNNING_AT_ENV_DROP.lock().unwrap() = Some(self.0.load(Ordering::SeqCst));
        }
    }
    struct Running<'a>(&'a AtomicUsize);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            // Unwinding with Cancelled: still using the borrowed counter,
            // and slowly (blocking the OS thread, as an unwinding green
            // thread's sleep does).
            greenrt::sleep(Duration::from_millis(20));
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    guarded(|| {
        let rt = runtime(2);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let owner = rt.spawn(move || {
            let running = Box::new(AtomicUsize::new(0));
            let _env = Env(&running);
            greenrt::scope(|s| {
                for _ in 0..4 {
                    running.fetch_add(1, Ordering::SeqCst);
                    let running = &*running;
                    s.spawn(move || {
                        let _r = Running(running);
                        greenrt::sleep(Duration::from_secs(3600));
                    });
                }
                started_tx.send(()).unwrap();
            });
        });
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        rt.shutdown_timeout(Duration::from_secs(10));
        let payload = owner.join().unwrap_err();
        assert!(payload.downcast_ref::<greenrt::Cancelled>().is_some());
        assert_eq!(
            *RUNNING_AT_ENV_DROP.lock().unwrap(),
            Some(0),
            "the scope's data was dropped while scoped green threads still ran"
        );
    });
}
