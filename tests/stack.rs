//! Green-thread stacks: sizes, overflow detection, the kernel map-count
//! limit, and unwinding (backtraces) through a green stack's root.
//!
//! Tests that may abort or exhaust the process re-run this test binary as
//! a child (see `common::run_child`).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{block_on, child_tag, describe, run_child};
use greenrt::sync::{mpsc, WaitGroup};

const SIGABRT: i32 = 6;
const CHILD_LIMIT: Duration = Duration::from_secs(180);

/// Unbounded recursion with a 1 KiB array in every frame.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(std::hint::black_box(buf)[0] as u64)
}

/// Uses `bytes` of stack in one frame.
#[inline(never)]
fn use_stack<const N: usize>() -> u8 {
    let buf = std::hint::black_box([7u8; N]);
    std::hint::black_box(&buf)[N - 1]
}

#[test]
fn stack_overflow_aborts_with_the_green_thread_name() {
    const NAME: &str = "stack_overflow_aborts_with_the_green_thread_name";
    if child_tag().as_deref() == Some("overflow") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            let h = greenrt::task::Builder::new()
                .name("deep-recursion")
                .stack_size(64 * 1024)
                .spawn(|| recurse(0))
                .unwrap();
            let _ = h.join();
        });
        println!("CHILD_SURVIVED_OVERFLOW");
        return;
    }
    for guard in [None, Some("mprotect")] {
        let out = run_child(NAME, "overflow", &[("GREENRT_GUARD", guard)], CHILD_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(SIGABRT),
            "GREENRT_GUARD={guard:?}: the child should die by SIGABRT\n{}",
            describe(&out)
        );
        assert!(
            stderr.contains("green thread 'deep-recursion' has overflowed its stack"),
            "GREENRT_GUARD={guard:?}: missing overflow message\n{}",
            describe(&out)
        );
    }
}

#[test]
fn stack_overflow_in_the_main_green_thread_aborts() {
    const NAME: &str = "stack_overflow_in_the_main_green_thread_aborts";
    if child_tag().as_deref() == Some("overflow_main") {
        let rt = greenrt::Builder::new()
            .workers(1)
            .stack_size(32 * 1024)
            .build()
            .unwrap();
        rt.block_on(|| recurse(0));
        println!("CHILD_SURVIVED_OVERFLOW");
        return;
    }
    let out = run_child(NAME, "overflow_main", &[], CHILD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "child should abort\n{}",
        describe(&out)
    );
    assert!(
        stderr.contains("has overflowed its stack"),
        "missing overflow message\n{}",
        describe(&out)
    );
}

#[test]
fn requested_stack_sizes_are_honoured() {
    const NAME: &str = "requested_stack_sizes_are_honoured";
    if child_tag().as_deref() == Some("big_stacks") {
        // task::Builder::stack_size on a default runtime.
        let v = greenrt::run(|| {
            greenrt::task::Builder::new()
                .name("big")
                .stack_size(4 << 20)
                .spawn(use_stack::<{ 1 << 20 }>)
                .unwrap()
                .join()
                .unwrap()
        });
        assert_eq!(v, 7);
        // Builder::stack_size: the runtime's default for every green thread.
        let rt = greenrt::Builder::new()
            .workers(2)
            .stack_size(4 << 20)
            .build()
            .unwrap();
        let v = rt.block_on(|| {
            let a = use_stack::<{ 1 << 20 }>();
            let b = greenrt::spawn(use_stack::<{ 1 << 20 }>).join().unwrap();
            a + b
        });
        assert_eq!(v, 14);
        // A tiny requested size still runs ordinary code.
        let v = rt.block_on(|| {
            greenrt::task::Builder::new()
                .stack_size(1)
                .spawn(|| {
                    greenrt::yield_now();
                    use_stack::<4096>()
                })
                .unwrap()
                .join()
                .unwrap()
        });
        assert_eq!(v, 7);
        println!("CHILD_OK big_stacks");
        return;
    }
    for guard in [None, Some("mprotect")] {
        let out = run_child(NAME, "big_stacks", &[("GREENRT_GUARD", guard)], CHILD_LIMIT);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK big_stacks"),
            "GREENRT_GUARD={guard:?}: green threads with big stacks failed\n{}",
            describe(&out)
        );
    }
}

fn read_map_count_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn map_count_limit_gives_a_spawn_error_naming_vm_max_map_count() {
    const NAME: &str = "map_count_limit_gives_a_spawn_error_naming_vm_max_map_count";
    const WANT: usize = 40_000;
    if child_tag().as_deref() == Some("map_count") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let (spawned, error) = rt.block_on(|| {
            let mut senders = Vec::new();
            let mut handles = Vec::new();
            let mut error = None;
            for i in 0..WANT {
                let (tx, rx) = mpsc::channel::<()>();
                match greenrt::task::Builder::new()
                    .stack_size(16 * 1024)
                    .spawn(move || rx.recv().is_err())
                {
                    Ok(h) => {
                        senders.push(tx);
                        handles.push(h);
                    }
                    Err(e) => {
                        error = Some(format!("{i}: {e}"));
                        break;
                    }
                }
                if i % 1000 == 999 {
                    greenrt::yield_now(); // let them start and block
                }
            }
            let spawned = handles.len();
            drop(senders); // wake everyone: recv fails with RecvError
            let mut ok = 0;
            for h in handles {
                if matches!(h.join(), Ok(true)) {
                    ok += 1;
                }
            }
            assert_eq!(ok, spawned, "some green threads did not finish cleanly");
            (spawned, error)
        });
        match error {
            Some(e) => println!("SPAWN_ERROR after {spawned} green threads: {e}"),
            None => println!("NO_SPAWN_ERROR: all {spawned} green threads spawned"),
        }
        println!("CHILD_DONE");
        return;
    }
    match read_map_count_limit() {
        Some(limit) if limit > 200_000 => {
            eprintln!(
                "skipped: vm.max_map_count is {limit}, too high for {WANT} stacks to reach it"
            );
            return;
        }
        None => {
            eprintln!("skipped: cannot read /proc/sys/vm/max_map_count");
            return;
        }
        Some(_) => {}
    }
    let out = run_child(
        NAME,
        "map_count",
        &[("GREENRT_GUARD", Some("mprotect"))],
        CHILD_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // (libtest may print "test <name> ... " on the same line first.)
    let line = stdout
        .lines()
        .find_map(|l| l.find("SPAWN_ERROR").map(|i| &l[i..]))
        .unwrap_or_else(|| {
            panic!(
                "task::Builder::spawn never failed with {WANT} live mprotect-guarded stacks\n{}",
                describe(&out)
            )
        });
    assert!(
        line.contains("vm.max_map_count"),
        "the spawn error does not name vm.max_map_count: {line}"
    );
    assert!(
        out.status.success() && stdout.contains("CHILD_DONE"),
        "the child did not recover and exit cleanly after the spawn error\n{}",
        describe(&out)
    );
}

#[test]
fn hundred_thousand_live_green_threads_with_default_guards() {
    const NAME: &str = "hundred_thousand_live_green_threads_with_default_guards";
    const N: usize = 100_000;
    if child_tag().as_deref() == Some("live_100k") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let sum = rt.block_on(|| {
            let gate = WaitGroup::new();
            gate.add(1);
            let started = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    let (gate, started) = (gate.clone(), started.clone());
                    greenrt::spawn(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.wait();
                        i as u64
                    })
                })
                .collect();
            // Every green thread is alive and blocked at the same time.
            let mut waited = 0;
            while started.load(Ordering::SeqCst) < N {
                greenrt::sleep(Duration::from_millis(5));
                waited += 1;
                assert!(
                    waited < 20_000,
                    "only {} green threads started",
                    started.load(Ordering::SeqCst)
                );
            }
            let maps = std::fs::read_to_string("/proc/self/maps")
                .map(|s| s.lines().count())
                .unwrap_or(0);
            println!("{N} live green threads, {maps} mappings");
            gate.done();
            handles
                .into_iter()
                .map(|h| h.join().expect("green thread failed"))
                .sum::<u64>()
        });
        assert_eq!(sum, (0..N as u64).sum::<u64>());
        println!("CHILD_OK live_100k");
        return;
    }
    let out = run_child(NAME, "live_100k", &[("GREENRT_GUARD", None)], CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD_OK live_100k"),
        "{N} live green threads failed in the default guard mode\n{}",
        describe(&out)
    );
}

#[test]
fn backtrace_from_a_green_thread_reaches_the_scheduler() {
    let bt = block_on(1, || {
        greenrt::spawn(|| std::backtrace::Backtrace::force_capture().to_string())
            .join()
            .unwrap()
    });
    let own = "backtrace_from_a_green_thread_reaches_the_scheduler";
    let at = bt
        .find(own)
        .unwrap_or_else(|| panic!("the backtrace misses the test's own frame `{own}`:\n{bt}"));
    // Below the green thread's frames (its stack root) the unwinder must
    // continue into the worker's scheduler loop, which lives on the OS
    // thread's own stack: frames of greenrt::scheduler other than the
    // green thread's entry function.
    let below = &bt[at..];
    let scheduler_frames: Vec<&str> = below
        .lines()
        .filter(|l| l.contains("greenrt::scheduler") && !l.contains("g_entry"))
        .collect();
    assert!(
        !scheduler_frames.is_empty(),
        "the backtrace stops at the green stack's root instead of walking into the scheduler:\n{bt}"
    );
}

#[test]
fn pooled_stacks_keep_their_requested_sizes() {
    // Green threads of different stack sizes, spawned and finished in
    // turn, each using a good part of its stack: a recycled stack of the
    // wrong size would overflow (and abort the child).
    const NAME: &str = "pooled_stacks_keep_their_requested_sizes";
    if child_tag().as_deref() == Some("pool_sizes") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let total = rt.block_on(|| {
            let mut total = 0u64;
            for round in 0..300 {
                let mut hs = Vec::new();
                for kind in 0..3 {
                    let b = greenrt::task::Builder::new();
                    let h = match (round + kind) % 3 {
                        0 => b.stack_size(32 << 10).spawn(use_stack::<{ 8 << 10 }>),
                        1 => b.stack_size(256 << 10).spawn(use_stack::<{ 64 << 10 }>),
                        _ => b.stack_size(1 << 20).spawn(use_stack::<{ 256 << 10 }>),
                    };
                    hs.push(h.unwrap());
                }
                total += hs
                    .into_iter()
                    .map(|h| h.join().unwrap() as u64)
                    .sum::<u64>();
            }
            total
        });
        assert_eq!(total, 300 * 3 * 7);
        println!("CHILD_OK pool_sizes");
        return;
    }
    for guard in [None, Some("mprotect")] {
        let out = run_child(NAME, "pool_sizes", &[("GREENRT_GUARD", guard)], CHILD_LIMIT);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK pool_sizes"),
            "GREENRT_GUARD={guard:?}\n{}",
            describe(&out)
        );
    }
}

#[test]
fn other_faults_in_a_green_thread_are_not_reported_as_overflow() {
    const NAME: &str = "other_faults_in_a_green_thread_are_not_reported_as_overflow";
    const SIGSEGV: i32 = 11;
    if child_tag().as_deref() == Some("bad_write") {
        let rt = greenrt::Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            greenrt::task::Builder::new()
                .name("wild-pointer")
                .spawn(|| {
                    let addr = std::hint::black_box(16usize) as *mut u8;
                    // SAFETY: not safe at all: the child is meant to die of
                    // this invalid write.
                    unsafe { std::ptr::write_volatile(addr, 1) };
                })
                .unwrap()
                .join()
                .ok();
        });
        println!("CHILD_SURVIVED_BAD_WRITE");
        return;
    }
    let out = run_child(NAME, "bad_write", &[], CHILD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGSEGV),
        "expected death by SIGSEGV\n{}",
        describe(&out)
    );
    assert!(
        !stderr.contains("overflowed its stack"),
        "a wild write was reported as a stack overflow\n{}",
        describe(&out)
    );
}

#[test]
fn os_thread_overflow_is_still_reported_with_a_runtime_installed() {
    // greenrt's SIGSEGV handler must hand faults it does not own to the
    // previous handler (std's), which reports OS-thread overflows.
    const NAME: &str = "os_thread_overflow_is_still_reported_with_a_runtime_installed";
    if child_tag().as_deref() == Some("os_overflow") {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        assert_eq!(rt.block_on(|| greenrt::spawn(|| 1).join().unwrap()), 1);
        let t = std::thread::Builder::new()
            .name("plain-os-thread".into())
            .stack_size(256 << 10)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = t.join();
        println!("CHILD_SURVIVED_OVERFLOW");
        return;
    }
    let out = run_child(NAME, "os_overflow", &[], CHILD_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "expected std's overflow abort\n{}",
        describe(&out)
    );
    assert!(
        // (Recent std prints the thread id after the name.)
        stderr.contains("thread 'plain-os-thread'") && stderr.contains("has overflowed its stack"),
        "std's overflow message is missing\n{}",
        describe(&out)
    );
    assert!(
        !stderr.contains("green thread"),
        "reported as a green thread\n{}",
        describe(&out)
    );
}

/// A stack size too large to round up to whole pages is refused with
/// `InvalidInput`, by `task::Builder::spawn` and by the runtime's
/// `Builder::build` (std's thread builder says EINVAL). It wrapped round
/// to 0, and the green thread got the 16 KiB minimum and overflowed it.
#[test]
fn a_stack_size_too_large_to_map_is_invalid_input() {
    for size in [usize::MAX, usize::MAX - 4094, isize::MAX as usize] {
        let e = greenrt::Builder::new()
            .stack_size(size)
            .build()
            .err()
            .unwrap_or_else(|| panic!("a runtime with {size}-byte stacks was built"));
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    }
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        for size in [usize::MAX, usize::MAX - 4094, isize::MAX as usize] {
            let e = greenrt::task::Builder::new()
                .stack_size(size)
                .spawn(|| ())
                .err()
                .unwrap_or_else(|| panic!("a green thread with a {size}-byte stack spawned"));
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("larger than can be mapped"), "{e}");
        }
    });
}
