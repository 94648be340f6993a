//! Dropping runtimes that still have green threads (blocked, sleeping,
//! never run) and building/dropping runtimes repeatedly: joins return,
//! threads and stacks are given back; spawning onto one runtime from a
//! green thread of another.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{guarded, panic_text, runtime};
use greenrt::sync::mpsc;

#[test]
fn dropping_a_runtime_with_blocked_green_threads_does_not_hang() {
    // Fails by timing out if Runtime::drop waits for the blocked ones.
    guarded(|| {
        let rt = runtime(2);
        let (tx, rx) = mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let started2 = started.clone();
            let _ = rt.spawn(move || {
                started2.fetch_add(1, Ordering::SeqCst);
                greenrt::sleep(Duration::from_secs(3600));
            });
        }
        let s2 = started.clone();
        let blocked = rt.spawn(move || {
            s2.fetch_add(1, Ordering::SeqCst);
            let _ = rx.recv();
        });
        while started.load(Ordering::SeqCst) < 11 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!blocked.is_finished());
        drop(rt);
        drop(tx);
    });
}

#[test]
fn join_returns_when_shutdown_drops_a_green_thread_that_never_ran() {
    // Dropping the runtime discards green threads still queued (their
    // closures are dropped without running). Joining one must not wait
    // forever for a result that can no longer come.
    let outcome = common::with_timeout(Duration::from_secs(10), || {
        let rt = runtime(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        // Occupy the only worker so the next green thread stays queued.
        let _hog = rt.spawn(move || {
            started_tx.send(()).unwrap();
            common::spin_for(Duration::from_millis(300));
        });
        started_rx.recv().unwrap();
        let queued = rt.spawn(|| 5);
        drop(rt);
        match queued.join() {
            Ok(v) => format!("ran: {v}"),
            Err(p) => format!("err: {}", panic_text(&*p)),
        }
    });
    // Either outcome is acceptable; hanging is not.
    assert!(
        outcome == "ran: 5" || outcome.starts_with("err:"),
        "{outcome}"
    );
}

#[test]
fn runtimes_built_and_dropped_repeatedly_release_their_threads() {
    const NAME: &str = "runtimes_built_and_dropped_repeatedly_release_their_threads";
    fn mappings() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    }
    if common::child_tag().as_deref() == Some("rt_churn") {
        // Warm up once (lazy statics, signal handler), then measure.
        runtime(2).block_on(|| greenrt::spawn(|| 1).join().unwrap());
        let (t0, m0) = (common::thread_count(), mappings());
        for i in 0..100u64 {
            let rt = runtime(2);
            let v = rt.block_on(move || {
                let hs: Vec<_> = (0..20u64)
                    .map(|j| {
                        greenrt::spawn(move || {
                            greenrt::sleep(Duration::from_millis(1));
                            i + j
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            });
            assert_eq!(v, 20 * i + 190);
        }
        let (t1, m1) = (common::thread_count_settled(t0), mappings());
        println!("threads {t0} -> {t1}, mappings {m0} -> {m1}");
        assert!(t1 <= t0, "worker threads leaked: {t0} -> {t1}");
        assert!(m1 <= m0 + 20, "mappings leaked: {m0} -> {m1}");
        println!("CHILD_OK rt_churn");
        return;
    }
    let out = common::run_child(NAME, "rt_churn", &[], Duration::from_secs(120));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK rt_churn"),
        "{}",
        common::describe(&out)
    );
}

#[test]
fn runtime_spawn_from_a_green_thread_of_another_runtime() {
    let a = runtime(1);
    let b = Arc::new(runtime(2));
    let v = guarded(move || {
        a.block_on(move || {
            // Spawn onto `b` from a green thread of `a`, and join across.
            let hs: Vec<_> = (0..100u64)
                .map(|i| {
                    b.spawn(move || {
                        greenrt::yield_now();
                        (i, greenrt::task::current_id().is_some())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    let (i, green) = h.join().unwrap();
                    assert!(green);
                    i
                })
                .sum::<u64>()
        })
    });
    assert_eq!(v, 4950);
}

#[test]
fn join_returns_when_shutdown_abandons_a_sleeping_green_thread() {
    // A green thread still blocked when its runtime is dropped can never
    // finish; like one that never started, its JoinHandle must then
    // report an error rather than block the joiner forever.
    let outcome = common::with_timeout(Duration::from_secs(10), || {
        let rt = runtime(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let sleeper = rt.spawn(move || {
            started_tx.send(()).unwrap();
            greenrt::sleep(Duration::from_secs(3600));
        });
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // it is asleep now
        drop(rt);
        sleeper.join().map_err(|p| panic_text(&*p))
    });
    assert!(
        outcome.is_err(),
        "an abandoned green thread cannot have finished: {outcome:?}"
    );
}

#[test]
fn dropping_a_runtime_frees_the_stacks_of_blocked_green_threads() {
    // Runtime docs: green threads still blocked when the runtime is
    // dropped are abandoned, "their stacks are freed". Build and drop many
    // runtimes with sleeping green threads and watch the address space.
    const NAME: &str = "dropping_a_runtime_frees_the_stacks_of_blocked_green_threads";
    fn vm_size_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        line["VmSize:".len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }
    if common::child_tag().as_deref() == Some("blocked_leak") {
        let before = vm_size_kib();
        for _ in 0..100 {
            let rt = runtime(2);
            let handles: Vec<_> = (0..50)
                .map(|_| rt.spawn(|| greenrt::sleep(Duration::from_secs(3600))))
                .collect();
            std::thread::sleep(Duration::from_millis(5));
            drop(rt);
            drop(handles);
        }
        let after = vm_size_kib();
        // 5000 leaked 256 KiB stacks would be about 1.3 GB.
        println!("VmSize {before} KiB -> {after} KiB");
        assert!(
            after < before + 200 * 1024,
            "address space grew from {before} KiB to {after} KiB: stacks of abandoned green threads \
             are not freed"
        );
        println!("CHILD_OK blocked_leak");
        return;
    }
    let out = common::run_child(
        NAME,
        "blocked_leak",
        // glibc reserves a 64 MiB malloc arena per new thread (up to 8 per
        // core): VmSize would measure those reservations, not our stacks.
        &[("GREENRT_GUARD", None), ("MALLOC_ARENA_MAX", Some("1"))],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK blocked_leak"),
        "{}",
        common::describe(&out)
    );
}
