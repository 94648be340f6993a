//! Spawning, joining, panics, runtime construction and the API's misuse
//! checks (dropping runtimes under live green threads: spawn_drop.rs).

mod common;

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use common::{block_on, expect_panic, guarded, panic_text, runtime};
use greenrt::sync::mpsc;

#[test]
fn run_returns_the_main_green_thread_value() {
    let v = guarded(|| {
        greenrt::run(|| {
            assert!(
                greenrt::task::current_id().is_some(),
                "run's closure must be a green thread"
            );
            let hs: Vec<_> = (0..10u64).map(|i| greenrt::spawn(move || i * i)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        })
    });
    assert_eq!(v, 285);
}

#[test]
fn hundred_thousand_green_threads_spawned_then_joined() {
    const N: u64 = 100_000;
    let results = block_on(2, || {
        // Spawn every green thread first, then join them all.
        let handles: Vec<_> = (0..N)
            .map(|i| greenrt::spawn(move || i.wrapping_mul(3) + 1))
            .collect();
        assert_eq!(handles.len() as u64, N);
        handles
            .into_iter()
            .map(|h| h.join().expect("green thread panicked"))
            .collect::<Vec<u64>>()
    });
    assert_eq!(results.len() as u64, N);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(*r, i as u64 * 3 + 1, "wrong result from green thread {i}");
    }
}

#[test]
fn panic_payload_comes_back_through_join_and_runtime_lives_on() {
    #[derive(Debug, PartialEq)]
    struct Custom(u32);

    let rt = runtime(2);
    let rt = Arc::new(rt);
    let rt2 = rt.clone();
    guarded(move || {
        rt2.block_on(|| {
            let n = std::hint::black_box(42);
            let h = greenrt::spawn(move || -> u32 { panic!("boom {n}") });
            let err = h.join().expect_err("join must report the panic");
            assert_eq!(
                err.downcast_ref::<String>().map(String::as_str),
                Some("boom 42")
            );

            let h = greenrt::spawn(|| -> u32 { std::panic::panic_any(Custom(7)) });
            let err = h.join().expect_err("join must report the panic");
            assert_eq!(err.downcast_ref::<Custom>(), Some(&Custom(7)));

            let h = greenrt::spawn(|| -> () { panic!("static str payload") });
            let err = h.join().expect_err("join must report the panic");
            assert_eq!(err.downcast_ref::<&str>(), Some(&"static str payload"));

            // The runtime keeps working: plenty of green threads still run.
            let hs: Vec<_> = (0..1000u32)
                .map(|i| greenrt::spawn(move || i + 1))
                .collect();
            let sum: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, 500_500);
        })
    });
    // And so does the runtime itself, from a fresh block_on.
    let rt3 = rt.clone();
    assert_eq!(
        guarded(move || rt3.block_on(|| greenrt::spawn(|| 5).join().unwrap())),
        5
    );
}

#[test]
fn many_panicking_green_threads_do_not_disturb_others() {
    let (ok, failed) = block_on(2, || {
        let hs: Vec<_> = (0..200u32)
            .map(|i| {
                greenrt::spawn(move || {
                    greenrt::yield_now();
                    if i % 3 == 0 {
                        panic!("green thread {i} fails");
                    }
                    i
                })
            })
            .collect();
        let mut ok = 0u32;
        let mut failed = Vec::new();
        for (i, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(v) => {
                    assert_eq!(v as usize, i);
                    ok += 1;
                }
                Err(p) => failed.push(panic_text(&*p)),
            }
        }
        (ok, failed)
    });
    assert_eq!(ok, 133);
    assert_eq!(failed.len(), 67);
    assert!(failed
        .iter()
        .all(|m| m.starts_with("green thread ") && m.ends_with(" fails")));
}

#[test]
fn block_on_resumes_the_panic_of_its_closure() {
    let rt = Arc::new(runtime(1));
    let rt2 = rt.clone();
    let msg = guarded(move || {
        expect_panic("block_on(panic)", || {
            rt2.block_on(|| -> u8 { panic!("main failed: {}", 9) })
        })
    });
    assert!(
        msg.contains("main failed: 9"),
        "unexpected payload: {msg:?}"
    );
    // The runtime is still usable afterwards.
    let rt3 = rt.clone();
    assert_eq!(guarded(move || rt3.block_on(|| 11)), 11);
}

#[test]
fn runtime_spawn_and_join_from_plain_os_threads() {
    let rt = Arc::new(runtime(2));
    let total = guarded(move || {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    let hs: Vec<_> = (0..500u64)
                        .map(|i| {
                            rt.spawn(move || {
                                assert!(greenrt::task::current_id().is_some());
                                if i % 7 == 0 {
                                    greenrt::yield_now();
                                }
                                t * 1000 + i
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>()
    });
    let expected: u64 = (0..4u64)
        .map(|t| (0..500u64).map(|i| t * 1000 + i).sum::<u64>())
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn nested_spawn_tree_joins_from_green_threads() {
    fn tree(depth: u32, value: u64) -> u64 {
        if depth == 0 {
            return value;
        }
        let l = greenrt::spawn(move || tree(depth - 1, value * 2));
        let r = greenrt::spawn(move || tree(depth - 1, value * 2 + 1));
        l.join().unwrap() + r.join().unwrap()
    }
    for workers in [1, 2] {
        // Leaves of a depth-12 tree rooted at 1 are 4096..8192.
        let sum = block_on(workers, || tree(12, 1));
        assert_eq!(sum, (4096..8192u64).sum::<u64>(), "workers = {workers}");
    }
}

#[test]
fn join_handle_is_finished_tracks_completion() {
    block_on(2, || {
        let (tx, rx) = mpsc::channel::<u32>();
        let h = greenrt::spawn(move || rx.recv().unwrap() * 2);
        greenrt::sleep(Duration::from_millis(20));
        assert!(
            !h.is_finished(),
            "a green thread blocked in recv is not finished"
        );
        tx.send(21).unwrap();
        let mut spins = 0u64;
        while !h.is_finished() {
            greenrt::yield_now();
            spins += 1;
            assert!(spins < 10_000_000, "is_finished never became true");
        }
        assert!(h.is_finished());
        assert_eq!(h.join().unwrap(), 42);

        // A panicked green thread is finished too.
        let h = greenrt::spawn(|| panic!("done by panicking"));
        while !h.is_finished() {
            greenrt::yield_now();
        }
        assert!(h.join().is_err());
    });
}

#[test]
fn dropping_a_join_handle_detaches_the_green_thread() {
    let got = block_on(2, || {
        let (tx, rx) = mpsc::channel();
        let h = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(20));
            tx.send("still ran").unwrap();
        });
        drop(h);
        rx.recv().unwrap()
    });
    assert_eq!(got, "still ran");
}

#[test]
fn task_builder_names_green_threads_and_ids_are_unique() {
    block_on(2, || {
        let h = greenrt::task::Builder::new()
            .name("worker-7")
            .stack_size(64 * 1024)
            .spawn(|| (greenrt::task::current_name(), greenrt::task::current_id()))
            .expect("spawn a named green thread");
        let (name, id) = h.join().unwrap();
        assert_eq!(name.as_deref(), Some("worker-7"));
        assert!(id.is_some());

        let (unnamed, unnamed_id) =
            greenrt::spawn(|| (greenrt::task::current_name(), greenrt::task::current_id()))
                .join()
                .unwrap();
        assert_eq!(unnamed, None, "an unnamed green thread has no name");

        let me = greenrt::task::current_id().expect("main green thread has an id");
        let hs: Vec<_> = (0..200)
            .map(|_| {
                greenrt::spawn(|| {
                    greenrt::yield_now();
                    greenrt::task::current_id().unwrap()
                })
            })
            .collect();
        let mut ids: HashSet<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids.len(), 200, "green thread ids must be unique");
        for other in [me, id.unwrap(), unnamed_id.unwrap()] {
            assert!(
                ids.insert(other),
                "id {other} is shared by two green threads"
            );
        }
    });
    assert_eq!(
        greenrt::task::current_id(),
        None,
        "an OS thread has no green thread id"
    );
    assert_eq!(
        greenrt::task::current_name(),
        None,
        "an OS thread has no green thread name"
    );
}

#[test]
fn spawn_yield_and_sleep_outside_a_green_thread_panic() {
    let msg = expect_panic("greenrt::spawn outside", || greenrt::spawn(|| 1));
    assert!(msg.contains("outside a green thread"), "spawn: {msg:?}");

    let msg = expect_panic("task::Builder::spawn outside", || {
        greenrt::task::Builder::new().spawn(|| 1)
    });
    assert!(
        msg.contains("outside a green thread"),
        "task::Builder::spawn: {msg:?}"
    );

    let msg = expect_panic("greenrt::yield_now outside", greenrt::yield_now);
    assert!(msg.contains("outside a green thread"), "yield_now: {msg:?}");

    let msg = expect_panic("greenrt::sleep outside", || {
        greenrt::sleep(Duration::from_millis(1))
    });
    assert!(msg.contains("outside a green thread"), "sleep: {msg:?}");

    let msg = expect_panic("greenrt::sleep(0) outside", || {
        greenrt::sleep(Duration::ZERO)
    });
    assert!(msg.contains("outside a green thread"), "sleep(0): {msg:?}");

    // Also from an OS thread of a process that does have a live runtime.
    let rt = guarded(|| {
        let rt = runtime(1);
        assert_eq!(rt.block_on(|| 1), 1);
        rt
    });
    let msg = expect_panic("greenrt::spawn outside, runtime alive", || {
        greenrt::spawn(|| 1)
    });
    assert!(msg.contains("outside a green thread"), "spawn: {msg:?}");
    drop(rt);
}

#[test]
fn run_and_block_on_inside_a_green_thread_panic() {
    let rt = Arc::new(runtime(2));
    let other = Arc::new(runtime(1));
    let (rt_in, other_in) = (rt.clone(), other.clone());
    let (m1, m2, m3, still_ok) = guarded(move || {
        rt.block_on(move || {
            let m1 = expect_panic("greenrt::run in a green thread", || greenrt::run(|| 1));
            let m2 = expect_panic("block_on of its own runtime", || rt_in.block_on(|| 1));
            let m3 = expect_panic("block_on of another runtime", || other_in.block_on(|| 1));
            // The green thread (and its worker) carry on normally.
            let still_ok = greenrt::spawn(|| 3).join().unwrap();
            (m1, m2, m3, still_ok)
        })
    });
    for m in [&m1, &m2, &m3] {
        assert!(
            m.contains("cannot be called from a green thread"),
            "unexpected message: {m:?}"
        );
    }
    assert_eq!(still_ok, 3);
    assert_eq!(guarded(move || other.block_on(|| 4)), 4);
}

#[test]
fn builder_rejects_zero_workers() {
    let err = greenrt::Builder::new()
        .workers(0)
        .build()
        .expect_err("workers(0) must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // Other settings do not rescue it.
    let err = greenrt::Builder::new()
        .stack_size(1 << 20)
        .workers(0)
        .build()
        .expect_err("workers(0) must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // Nor too many: an error, where it was a capacity overflow panic
    // (usize::MAX) or an allocation failure's abort (2^40).
    for n in [usize::MAX, 1 << 40, greenrt::MAX_WORKERS + 1] {
        let err = greenrt::Builder::new()
            .workers(n)
            .build()
            .expect_err("too many workers must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{n}: {err}");
    }
    // And a valid count works.
    let rt = greenrt::Builder::new()
        .workers(1)
        .stack_size(32 * 1024)
        .build()
        .expect("workers(1)");
    assert_eq!(guarded(move || rt.block_on(|| 7)), 7);
}

#[test]
fn several_runtimes_side_by_side_and_channels_between_them() {
    let a = Arc::new(runtime(1));
    let b = Arc::new(runtime(2));
    let sum = guarded(move || {
        let (tx, rx) = mpsc::channel::<u64>();
        let (ack_tx, ack_rx) = mpsc::sync_channel::<u64>(0);
        // A green thread of `b` feeds a green thread of `a`; each message
        // is acknowledged, so wake-ups cross runtimes in both directions.
        let producer = b.spawn(move || {
            for i in 0..2000u64 {
                tx.send(i).unwrap();
                assert_eq!(ack_rx.recv().unwrap(), i);
            }
        });
        let sum = a.block_on(move || {
            let mut sum = 0;
            for v in rx.iter() {
                sum += v;
                ack_tx.send(v).unwrap();
            }
            sum
        });
        producer.join().unwrap();
        sum
    });
    assert_eq!(sum, (0..2000u64).sum::<u64>());
}

/// A detached green thread's result whose destructor panics aborts the
/// process with a message, as std does for a thread's result: the result
/// is dropped by the worker that finished the green thread, and the
/// panic unwound out of that worker's scheduler, which died with it and
/// left the runtime hanging.
#[test]
fn a_result_panicking_on_drop_aborts_the_process() {
    const TEST: &str = "a_result_panicking_on_drop_aborts_the_process";
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("result drop panic");
        }
    }
    if common::child_tag().is_some() {
        let rt = greenrt::Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            drop(greenrt::spawn(|| PanicOnDrop));
            greenrt::sleep(Duration::from_millis(100));
        });
        println!("block_on returned");
        return;
    }
    let out = common::run_child(TEST, "child", &[], Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGABRT),
        "{}",
        common::describe(&out)
    );
    assert!(
        stderr.contains("result panicked on drop"),
        "{}",
        common::describe(&out)
    );
}
