//! Hand-offs of a worker's P to another M: sysmon retakes the P of a
//! green thread blocked outside greenrt (in std, a system call), and a
//! preempted green thread's P goes to a spare M. A green thread is only
//! retaken when it cannot be preempted, is preempted again once back
//! from a blocking call, and one worker never runs two green threads at
//! once; the Ms that take over never run green threads at sysmon's
//! real-time scheduling class.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time), bounds have
//! generous margins, and every body runs under a timeout so that a hang
//! fails instead of blocking the run.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::preemption::{add_twos, exclusive, ms, preemptive, since, tsc, tsc_ticks};
use greenrt::preempt::{self, Stats};

// ---------------------------------------------------------------------
// Blocking hand-off.
// ---------------------------------------------------------------------

/// On one worker, green thread A runs `block` (which blocks its OS thread
/// for ~500 ms); returns how many 1 ms greenrt sleeps green thread B
/// completed entirely while A was blocked, and how long A blocked.
fn progress_while_blocked(block: impl FnOnce() + Send + 'static) -> (u64, Duration, Stats) {
    let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
    let before = preempt::stats();
    let (n, blocked_for) = rt.block_on(move || {
        let blocked = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let a = {
            let (blocked, done) = (blocked.clone(), done.clone());
            greenrt::spawn(move || {
                blocked.store(true, SeqCst);
                let t = Instant::now();
                block();
                let took = t.elapsed();
                blocked.store(false, SeqCst);
                done.store(true, SeqCst);
                took
            })
        };
        let b = greenrt::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !done.load(SeqCst) && start.elapsed() < Duration::from_secs(10) {
                let during = blocked.load(SeqCst);
                greenrt::sleep(Duration::from_millis(1));
                if during && blocked.load(SeqCst) {
                    n += 1;
                }
            }
            n
        });
        (b.join().unwrap(), a.join().unwrap())
    });
    (n, blocked_for, since(before))
}

#[test]
fn green_thread_blocked_in_std_does_not_stop_its_worker() {
    exclusive(|| {
        // std::thread::sleep while holding a std Mutex.
        let (n, took, st) = progress_while_blocked(|| {
            let m = Mutex::new(0);
            let _g = m.lock().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        println!(
            "hand-off, std::thread::sleep: {n} sleeps of 1 ms done while blocked {:.0} ms; \
             {st:?}",
            ms(took)
        );
        assert!(took >= Duration::from_millis(500));
        assert!(
            n >= 25,
            "only {n} 1 ms sleeps completed on the worker while a green thread blocked in \
             std::thread::sleep for {took:?}: its P was not handed off ({st:?})"
        );
        assert!(st.retakes > 0, "no retake counted: {st:?}");

        // Waiting for a std Mutex that an OS thread holds for 500 ms.
        let m = Arc::new(Mutex::new(0u32));
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = {
            let m = m.clone();
            std::thread::spawn(move || {
                let _g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            })
        };
        locked_rx.recv().unwrap();
        let (n, took, st) = progress_while_blocked(move || {
            *m.lock().unwrap() += 1;
        });
        holder.join().unwrap();
        println!(
            "hand-off, std Mutex: {n} sleeps of 1 ms done while blocked {:.0} ms; {st:?}",
            ms(took)
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(
            n >= 15,
            "only {n} 1 ms sleeps completed on the worker while a green thread waited \
             {took:?} for a std Mutex: its P was not handed off ({st:?})"
        );
    });
}

/// A green thread making system calls back to back that the kernel
/// finishes rather than interrupts (reads of /dev/zero here; std file
/// I/O alike) is in the kernel when sysmon's signals come: each is
/// delivered as the call returns, in libc, where it may not be preempted
/// and which is not a blocked call either. It kept its worker for
/// seconds (4 sleeps of 1 ms in 2 s); such a signal now retakes the P.
#[test]
fn green_thread_looping_on_uninterrupted_system_calls_does_not_stop_its_worker() {
    exclusive(|| {
        let (n, took, st) = progress_while_blocked(|| {
            use std::io::Read;
            let mut zero = std::fs::File::open("/dev/zero").unwrap();
            let mut buf = vec![1u8; 1 << 20];
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(500) {
                zero.read_exact(&mut buf).unwrap();
                black_box(&buf);
            }
        });
        println!(
            "hand-off, reads of /dev/zero: {n} sleeps of 1 ms done during {:.0} ms; {st:?}",
            ms(took)
        );
        assert!(
            n >= 25,
            "only {n} 1 ms sleeps completed on the worker while a green thread read \
             /dev/zero for {took:?}: its P was not handed off ({st:?})"
        );
    });
}

// ---------------------------------------------------------------------
// Preempted, not retaken: one green thread at a time per worker.
// ---------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Spin {
    /// TSC-only steps: main-executable code, always preemptible.
    Tsc,
    /// `spin_for` steps: mostly in the vDSO's clock_gettime.
    Clock,
    /// 20 ms in std::thread::sleep first (sysmon retakes the P: the
    /// blocking hand-off), then TSC-only steps.
    BlockedFirst,
}

/// `threads` green threads on ONE worker spin for `run` in short steps
/// and watch for each other: returns how many times one of them saw
/// another run while it ran itself, and the counters.
///
/// Each reads the TSC every few hundred nanoseconds and, after each step,
/// swaps its id into a shared word and stamps the time. Seeing another's
/// id with that one's stamp strictly between my previous stamp and now,
/// while my own readings never paused for more than 3 µs in between
/// (nothing can preempt a thread and run another one that fast), proves
/// that both ran at the same time.
fn simultaneous_runs(spin: Spin, quantum: Duration, threads: u64, run: Duration) -> (u64, Stats) {
    let rt = preemptive(1, quantum);
    let before = preempt::stats();
    let tight = tsc_ticks(Duration::from_micros(3));
    let step = tsc_ticks(Duration::from_micros(5));
    let len = tsc_ticks(run);
    let both = rt.block_on(move || {
        let last = Arc::new(AtomicU64::new(0));
        let stamps: Arc<Vec<AtomicU64>> =
            Arc::new((0..=threads).map(|_| AtomicU64::new(0)).collect());
        let hs: Vec<_> = (1..=threads)
            .map(|me| {
                let (last, stamps) = (last.clone(), stamps.clone());
                greenrt::spawn(move || {
                    if let Spin::BlockedFirst = spin {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let end = tsc() + len;
                    let mut prev = tsc();
                    let mut both = 0u64;
                    loop {
                        let start = tsc();
                        let mut t = start;
                        let mut max_gap = start.saturating_sub(prev);
                        while t.saturating_sub(start) < step {
                            if let Spin::Clock = spin {
                                black_box(Instant::now());
                            }
                            let n = tsc();
                            max_gap = max_gap.max(n.saturating_sub(t));
                            t = n;
                        }
                        let seen = last.swap(me, SeqCst);
                        let now = tsc();
                        stamps[me as usize].store(now, SeqCst);
                        max_gap = max_gap.max(now.saturating_sub(t));
                        if now >= end {
                            break;
                        }
                        if seen != me && seen != 0 && max_gap < tight {
                            let other = stamps[seen as usize].load(SeqCst);
                            if other > prev && other < now {
                                both += 1;
                            }
                        }
                        prev = now;
                    }
                    both
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    (both, since(before))
}

#[test]
fn preemptible_green_threads_are_never_retaken() {
    // Code that is always preemptible (main executable, no blocking) must
    // only ever be preempted: a retake leaves the green thread running on
    // without a P, beside the worker's other green threads.
    exclusive(|| {
        let (both, st) = simultaneous_runs(
            Spin::Tsc,
            Duration::from_micros(100),
            3,
            Duration::from_millis(1500),
        );
        println!("pure spinners, 1 worker, 100 µs quantum: ran together {both} times; {st:?}");
        assert!(st.preemptions > 100, "{st:?}");
        assert_eq!(
            (st.retakes, both),
            (0, 0),
            "always-preemptible green threads were retaken ({} times) and then ran at the same \
             time on a single worker ({both} times): {st:?}",
            st.retakes
        );
    });
}

#[test]
fn one_worker_never_runs_two_clock_spinning_green_threads_at_once() {
    exclusive(|| {
        // Spinning on the clock spends much of its time in the vDSO, where
        // the handler cannot preempt. Such a green thread must still be
        // preempted (when a signal lands in its own code), not have its P
        // retaken and then run on without one.
        let (both, st) = simultaneous_runs(
            Spin::Clock,
            Duration::from_millis(1),
            2,
            Duration::from_millis(800),
        );
        println!("clock spinners, 1 worker, 1 ms quantum: ran together {both} times; {st:?}");
        assert!(
            st.preemptions >= 100,
            "two CPU-bound green threads on one worker for 800 ms at a 1 ms quantum, but \
             only {} preemptions: they escaped the scheduler ({st:?})",
            st.preemptions
        );
        assert_eq!(
            both, 0,
            "two green threads spinning on Instant::now ran at the same time on a single \
             worker ({both} times): a retaken green thread keeps running without a P, no \
             longer preempted ({st:?})"
        );
    });
}

#[test]
fn green_thread_back_from_a_blocking_hand_off_is_preempted_again() {
    exclusive(|| {
        // Each blocks in std::thread::sleep first: sysmon hands the P to
        // another M. Back from it, a green thread computes without a P
        // until sysmon catches it (a request every quantum/5) and queues
        // it for one: a short overlap is unavoidable (greenrt cannot hook
        // the return from a std call), but it must end promptly — a
        // retaken green thread must not stay unsupervised.
        let (both, st) = simultaneous_runs(
            Spin::BlockedFirst,
            Duration::from_millis(1),
            2,
            Duration::from_millis(500),
        );
        // Each overlapping 5 µs step is seen by both green threads.
        let overlap = Duration::from_micros(5) * both as u32 / 2;
        println!(
            "blocked first, then spinning, 1 worker: ran together {both} times (~{:.1} ms of \
             500 ms); {st:?}",
            ms(overlap)
        );
        assert!(st.retakes > 0, "no blocking hand-off happened: {st:?}");
        // Two CPU-bound green threads on one worker for 500 ms at a 1 ms
        // quantum: the worker can only share it by preempting them.
        assert!(
            st.preemptions >= 50,
            "after a blocking hand-off the green threads were no longer preempted: {st:?}"
        );
        assert!(
            overlap < Duration::from_millis(25),
            "after a blocking hand-off two green threads ran at the same time on a single \
             worker for ~{overlap:?} of 500 ms ({both} overlapping steps): a green thread \
             whose P was retaken keeps running without one ({st:?})"
        );
    });
}

// ---------------------------------------------------------------------
// sysmon's scheduling class.
// ---------------------------------------------------------------------

/// The scheduling policy of thread `tid` of this process (field 41 of
/// /proc/self/task/<tid>/stat: 0 SCHED_OTHER, 1 SCHED_FIFO, ...).
fn thread_policy(tid: libc::pid_t) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after "(comm)" start at field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(41 - 3)?.parse().ok()
}

fn thread_named(name: &str) -> Option<libc::pid_t> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
        let e = e.ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| e.file_name().to_str()?.parse().ok())?
    })
}

#[test]
fn green_threads_never_run_at_sysmons_scheduling_class() {
    // sysmon raises itself (SCHED_FIFO when allowed) and starts the spare
    // Ms that preempted green threads' Ps go to; threads inherit their
    // creator's policy, so every M must drop it before running green code.
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .thread_name("pt-class")
            .workers(2)
            .preempt_quantum(Duration::from_millis(1))
            .build()
            .unwrap();
        let before = preempt::stats();
        let seen: Vec<(u32, u64)> = rt.block_on(|| {
            let hogs: Vec<_> = (0..6)
                .map(|_| {
                    greenrt::spawn(|| {
                        let mut seen = Vec::new();
                        let end = tsc() + tsc_ticks(Duration::from_millis(300));
                        while tsc() < end {
                            black_box(add_twos(black_box(20_000)));
                            // SAFETY: gettid has no preconditions.
                            let tid = unsafe { libc::gettid() };
                            let _no_preempt = preempt::disable();
                            if let Some(policy) = thread_policy(tid) {
                                seen.push((policy, tid as u64));
                            }
                        }
                        seen
                    })
                })
                .collect();
            hogs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let sysmon = thread_named("pt-class-sysmon").and_then(thread_policy);
        let st = since(before);
        let tids: std::collections::HashSet<u64> = seen.iter().map(|s| s.1).collect();
        println!(
            "sysmon policy {sysmon:?}; green threads observed on {} OS threads, policies {:?}; \
             {st:?}",
            tids.len(),
            seen.iter()
                .map(|s| s.0)
                .collect::<std::collections::BTreeSet<_>>()
        );
        assert!(st.preemptions > 10, "too few preemptions to test: {st:?}");
        assert!(
            seen.iter()
                .all(|&(policy, _)| policy == libc::SCHED_OTHER as u32),
            "a green thread ran at a real-time policy inherited from sysmon"
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                sysmon,
                Some(libc::SCHED_FIFO as u32),
                "running as root, sysmon should have raised itself to SCHED_FIFO"
            );
        }
    });
}
