//! `greenrt::task::lock_os_thread`: a locked green thread keeps its OS
//! thread across every kind of blocking, no other green thread runs on
//! that thread meanwhile, and thread-keyed locks (std's stdout) held
//! across a greenrt blocking call stay the locked green thread's own.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, block_on_cooperative, child_tag, describe, run_child};
use greenrt::sync::{mpsc, Mutex};
use greenrt::task::{lock_os_thread, unlock_os_thread};

fn tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Shared by the locked green thread and the others watching it.
#[derive(Default)]
struct Watch {
    locked: AtomicBool,
    locked_tid: AtomicI32,
    done: AtomicBool,
    /// Turns other green threads took while the locked one was locked.
    turns_while_locked: AtomicUsize,
    /// Turns they took on the locked one's OS thread while it was locked.
    violations: AtomicUsize,
}

impl Watch {
    /// One turn of an observer: which thread runs us, and is it taken?
    fn observe(&self) {
        let me = tid();
        // No switch between the two reads (preemption keeps the thread).
        if self.locked.load(Ordering::Acquire) {
            self.turns_while_locked.fetch_add(1, Ordering::Relaxed);
            if self.locked_tid.load(Ordering::Relaxed) == me {
                self.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `n` additions of this program's own code, where a SIGURG can preempt
/// the green thread running it.
fn spin_in_own_code(n: u64) {
    let mut x = 0u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

/// A locked green thread blocks 100 times (sleep, channel receive, mutex,
/// yield) and resumes on its OS thread every time; observers never run
/// there meanwhile, but do run (its worker went on without it).
fn hundred_blocks(workers: usize) {
    block_on(workers, move || {
        let watch = Arc::new(Watch::default());
        let mutex = Arc::new(Mutex::new(0u64));
        let (tx, rx) = mpsc::channel::<u32>();
        let observers: Vec<_> = (0..4)
            .map(|_| {
                let watch = watch.clone();
                greenrt::spawn(move || {
                    while !watch.done.load(Ordering::Acquire) {
                        watch.observe();
                        greenrt::yield_now();
                        watch.observe();
                        greenrt::sleep(Duration::from_micros(50));
                    }
                })
            })
            .collect();
        // Feeds the channel, and holds the mutex a while each round so the
        // locked green thread really waits for it.
        let feeder = {
            let (watch, mutex) = (watch.clone(), mutex.clone());
            greenrt::spawn(move || {
                for i in 0..25 {
                    {
                        let mut g = mutex.lock().unwrap();
                        *g += 1;
                        greenrt::sleep(Duration::from_micros(200));
                    }
                    greenrt::sleep(Duration::from_micros(100));
                    if tx.send(i).is_err() {
                        break;
                    }
                }
                watch.observe();
            })
        };
        let locked = {
            let watch = watch.clone();
            greenrt::spawn(move || {
                lock_os_thread();
                let mine = tid();
                watch.locked_tid.store(mine, Ordering::Relaxed);
                watch.locked.store(true, Ordering::Release);
                let mut seen = Vec::new();
                for i in 0..100 {
                    match i % 4 {
                        0 => greenrt::sleep(Duration::from_micros(100)),
                        1 => drop(rx.recv().expect("the feeder sends 25")),
                        2 => *mutex.lock().unwrap() += 1,
                        _ => greenrt::yield_now(),
                    }
                    seen.push(tid());
                }
                watch.locked.store(false, Ordering::Release);
                unlock_os_thread();
                (mine, seen)
            })
        };
        let (mine, seen) = locked.join().unwrap();
        watch.done.store(true, Ordering::Release);
        feeder.join().unwrap();
        for o in observers {
            o.join().unwrap();
        }
        assert_eq!(seen.len(), 100);
        let moved: Vec<_> = seen.iter().filter(|&&t| t != mine).collect();
        assert!(moved.is_empty(), "resumed off its thread {mine}: {moved:?}");
        assert_eq!(watch.violations.load(Ordering::Relaxed), 0);
        assert!(
            watch.turns_while_locked.load(Ordering::Relaxed) > 0,
            "no other green thread ran while the locked one blocked"
        );
    });
}

#[test]
fn hundred_blocks_keep_the_thread_one_worker() {
    hundred_blocks(1);
}

#[test]
fn hundred_blocks_keep_the_thread_two_workers() {
    hundred_blocks(2);
}

/// A locked green thread preempted by sysmon resumes on its thread, and
/// the worker runs the other green thread meanwhile.
#[test]
fn preempted_locked_green_thread_keeps_its_thread() {
    block_on(1, || {
        let watch = Arc::new(Watch::default());
        let observer = {
            let watch = watch.clone();
            greenrt::spawn(move || {
                while !watch.done.load(Ordering::Acquire) {
                    watch.observe();
                    // Mostly this program's own code between the gettid
                    // calls, as in the spinner below: a loop of little but
                    // gettid is nearly always in libc (or just back from
                    // the kernel there) when a SIGURG lands, where it is
                    // not preempted, so the spinner waited seconds for
                    // its P (up to 38 s in a debug build).
                    spin_in_own_code(1_000);
                }
            })
        };
        let spinner = {
            let watch = watch.clone();
            greenrt::spawn(move || {
                lock_os_thread();
                let mine = tid();
                watch.locked_tid.store(mine, Ordering::Relaxed);
                watch.locked.store(true, Ordering::Release);
                // Spin until the observer has had turns (it only gets them
                // by preemption: neither green thread blocks), bounded.
                let start = Instant::now();
                let mut moved = 0;
                while watch.turns_while_locked.load(Ordering::Relaxed) < 1000
                    && start.elapsed() < Duration::from_secs(20)
                {
                    // Mostly this program's own code, where a SIGURG can
                    // preempt it (not gettid's or the clock's, in libc and
                    // the vDSO, where it cannot: a loop of only those
                    // calls was too rarely preempted in a debug build).
                    spin_in_own_code(10_000);
                    if tid() != mine {
                        moved += 1;
                    }
                }
                watch.locked.store(false, Ordering::Release);
                unlock_os_thread();
                moved
            })
        };
        assert_eq!(spinner.join().unwrap(), 0, "the locked green thread moved");
        watch.done.store(true, Ordering::Release);
        observer.join().unwrap();
        assert_eq!(watch.violations.load(Ordering::Relaxed), 0);
        assert!(watch.turns_while_locked.load(Ordering::Relaxed) >= 1000);
    });
}

/// A locked green thread's `yield_now` lets its worker run the others,
/// even with preemption off (no spare OS threads kept ready).
#[test]
fn locked_yield_runs_others_on_a_cooperative_runtime() {
    block_on_cooperative(1, || {
        let flag = Arc::new(AtomicBool::new(false));
        let other = {
            let flag = flag.clone();
            greenrt::spawn(move || flag.store(true, Ordering::Release))
        };
        lock_os_thread();
        let me = tid();
        let start = Instant::now();
        while !flag.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(20) {
            greenrt::yield_now();
            assert_eq!(tid(), me);
        }
        unlock_os_thread();
        assert!(
            flag.load(Ordering::Acquire),
            "the other green thread never ran"
        );
        other.join().unwrap();
    });
}

/// Which OS thread runs another green thread while the caller waits for
/// it, on a one-worker cooperative runtime (where an unlocked caller's
/// worker runs it on the caller's own thread).
fn helper_tid() -> i32 {
    let (tx, rx) = mpsc::channel();
    greenrt::spawn(move || tx.send(tid()).unwrap());
    rx.recv().unwrap()
}

#[test]
fn unlock_restores_normal_scheduling() {
    block_on_cooperative(1, || {
        let me = tid();
        assert_eq!(helper_tid(), me, "unlocked: the helper runs here");
        lock_os_thread();
        assert_ne!(helper_tid(), me, "locked: the helper runs elsewhere");
        assert_eq!(tid(), me);
        unlock_os_thread();
        // Back to switching: the helper runs on whatever thread we are on.
        let now = tid();
        assert_eq!(helper_tid(), now, "unlocked again: the helper runs here");
    });
}

#[test]
fn nested_locks_need_as_many_unlocks() {
    block_on_cooperative(1, || {
        // Unlocking an unlocked green thread does nothing.
        unlock_os_thread();
        unlock_os_thread();
        lock_os_thread();
        let me = tid();
        assert_ne!(helper_tid(), me, "one lock after stray unlocks locks");
        lock_os_thread();
        unlock_os_thread();
        assert_ne!(helper_tid(), me, "still locked once");
        assert_eq!(tid(), me);
        unlock_os_thread();
        let now = tid();
        assert_eq!(helper_tid(), now, "fully unlocked");
    });
    // Off a green thread: no-ops.
    lock_os_thread();
    unlock_os_thread();
    unlock_os_thread();
}

/// A green thread that finishes locked leaves its worker free for others.
#[test]
fn exiting_locked_unlocks() {
    block_on_cooperative(1, || {
        greenrt::spawn(lock_os_thread).join().unwrap();
        let now = tid();
        assert_eq!(helper_tid(), now, "the worker runs others again");
    });
}

/// Sets its flag when dropped (by an unwinding green thread).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Shutdown cancels a locked green thread waiting on a channel that never
/// sends and one sleeping for an hour: both unwind, well within the
/// shutdown timeout.
#[test]
fn shutdown_cancels_locked_waiters() {
    common::guarded(|| {
        let rt = common::runtime(2);
        let (tx, rx) = mpsc::channel::<()>();
        let unwound = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (flag, started) = (unwound[0].clone(), started_tx.clone());
        let waiter = rt.spawn(move || {
            lock_os_thread();
            let _flag = DropFlag(flag);
            started.send(()).unwrap();
            let _ = rx.recv();
        });
        let (flag, started) = (unwound[1].clone(), started_tx);
        let sleeper = rt.spawn(move || {
            lock_os_thread();
            let _flag = DropFlag(flag);
            started.send(()).unwrap();
            greenrt::sleep(Duration::from_secs(3600));
        });
        started_rx.recv().unwrap();
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        rt.shutdown_timeout(Duration::from_secs(30));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
        for (what, f) in ["channel", "sleep"].iter().zip(&unwound) {
            assert!(
                f.load(Ordering::Acquire),
                "the {what} waiter did not unwind"
            );
        }
        for h in [waiter, sleeper] {
            let err = h.join().expect_err("cancelled");
            assert!(err.downcast_ref::<greenrt::Cancelled>().is_some());
        }
        drop(tx);
    });
}

const STDOUT_TEST: &str = "stdout_lock_held_across_sleep";

/// Child: A holds stdout's lock across a greenrt sleep and prints two
/// lines; B prints one meanwhile. `locked`: A locks its OS thread.
fn stdout_child(locked: bool) {
    let rt = common::cooperative_runtime(if locked { 2 } else { 1 });
    rt.block_on(move || {
        use std::io::Write;
        let (tx, rx) = mpsc::channel::<()>();
        let b = greenrt::spawn(move || {
            rx.recv().unwrap();
            println!("LOCKTEST B");
        });
        let a = greenrt::spawn(move || {
            if locked {
                lock_os_thread();
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "LOCKTEST A1").unwrap();
            out.flush().unwrap();
            tx.send(()).unwrap();
            greenrt::sleep(Duration::from_millis(100));
            writeln!(out, "LOCKTEST A2").unwrap();
            out.flush().unwrap();
            drop(out);
            if locked {
                unlock_os_thread();
            }
        });
        a.join().unwrap();
        b.join().unwrap();
    });
}

#[test]
fn stdout_lock_held_across_sleep() {
    match child_tag().as_deref() {
        Some("locked") => return stdout_child(true),
        Some("unlocked") => return stdout_child(false),
        _ => {}
    }
    let lines = |tag| {
        let out = run_child(STDOUT_TEST, tag, &[], Duration::from_secs(60));
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            // (The harness's "test ... " may precede the first line.)
            .filter_map(|l| l.split_once("LOCKTEST ").map(|(_, s)| s.to_owned()))
            .collect::<Vec<_>>()
    };
    // The hazard: stdout's lock is keyed by OS thread, and B, run on A's
    // thread while A sleeps, re-enters it.
    assert_eq!(lines("unlocked"), ["A1", "B", "A2"]);
    // Locked, B runs on another OS thread and waits for A's lock.
    assert_eq!(lines("locked"), ["A1", "A2", "B"]);
}
