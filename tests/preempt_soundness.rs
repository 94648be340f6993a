//! Soundness of asynchronous preemption as seen by the preempted code:
//! errno across a preemption, `preempt::disable()` guards that outlive or
//! leave their green thread, and how often sysmon signals a green thread
//! it cannot preempt.
//!
//! Tests here read process-wide counters (`preempt::stats()`) and measure
//! behaviour over time, so they run one at a time under `SERIAL`
//! (including the children they start), with generous bounds, and every
//! body runs under a timeout so that a hang fails instead of blocking.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child, serial, spin_for};
use greenrt::preempt::{self, Stats};

/// Limit for one test body (in-process) or one child process.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs this test binary's `test` as a child with `tag` (under `SERIAL`)
/// and returns its output, whatever its exit status.
fn child(test: &str, tag: &str) -> std::process::Output {
    let _serial = serial();
    run_child(test, tag, &[], LIMIT)
}

/// As `child`, and checks the child succeeded and printed
/// `CHILD_OK <tag>`. Returns its stdout.
fn child_ok(test: &str, tag: &str) -> String {
    let out = child(test, tag);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD_OK {tag}")),
        "child {tag} failed:\n{}",
        describe(&out)
    );
    stdout
}

/// A runtime with `workers` workers named `name-N` and preemption on at
/// `quantum` (whatever GREENRT_PREEMPT says).
fn preemptive(name: &str, workers: usize, quantum: Duration) -> greenrt::Runtime {
    tsc_per_us();
    let rt = greenrt::Builder::new()
        .thread_name(name)
        .workers(workers)
        .preemption(true)
        .preempt_quantum(quantum)
        .build()
        .expect("build a preemptive runtime");
    assert_eq!(
        rt.preempt_quantum(),
        Some(quantum),
        "preemption was requested but is off (no XSAVE on this machine?)"
    );
    rt
}

/// Counter increments since `before`.
fn since(before: Stats) -> Stats {
    preempt::stats().since(&before)
}

/// The time-stamp counter: a single instruction, so a loop reading it
/// stays in the main executable, where a preemption signal can always
/// stop it (`Instant::now` runs in the vDSO, where it cannot).
fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// TSC ticks per microsecond (measured once, on an OS thread).
fn tsc_per_us() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (t0, c0) = (Instant::now(), tsc());
        spin_for(Duration::from_millis(20));
        let (t1, c1) = (Instant::now(), tsc());
        (c1 - c0) as f64 / ((t1 - t0).as_nanos() as f64 / 1e3)
    })
}

/// Busy-waits for `d` reading only the TSC: pure main-executable code.
#[inline(never)]
fn spin_tsc(d: Duration) {
    let end = tsc() + (d.as_nanos() as f64 / 1e3 * tsc_per_us()) as u64;
    while tsc() < end {
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------
// errno across a preemption.
// ---------------------------------------------------------------------

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Installs a do-nothing SIGUSR1 handler WITHOUT SA_RESTART, as an
/// application may: a blocking call it interrupts fails with EINTR.
fn install_sigusr1_without_restart() {
    // SAFETY: a fully initialised sigaction whose handler touches nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// Ids of this process's threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let comm = comm.trim_end();
        (comm.starts_with(prefix) && !comm.ends_with("sysmon"))
            .then(|| e.file_name().to_str()?.parse().ok())?
    })
    .collect()
}

#[test]
fn errno_survives_preemption() {
    const NAME: &str = "errno_survives_preemption";
    const THREADS: usize = 3;
    if child_tag().as_deref() != Some("errno") {
        let stdout = child_ok(NAME, "errno");
        println!(
            "{}",
            stdout
                .lines()
                .find(|l| l.starts_with("errno:"))
                .unwrap_or("")
        );
        return;
    }
    // libtest has printed "test <name> ... " without a newline.
    println!();
    // The preempted green thread's M waits on a futex until its turn
    // comes. A signal without SA_RESTART interrupts that wait (EINTR), and
    // a wait that races with its wake-up fails with EAGAIN: either lands
    // in the thread's errno, which the interrupted code may be about to
    // read. Signal every M often, so most parked Ms take one.
    install_sigusr1_without_restart();
    let rt = preemptive("gerrno", 1, Duration::from_micros(100));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            let mut tids = Vec::new();
            let mut listed = Instant::now() - Duration::from_secs(1);
            while !stop.load(SeqCst) {
                // New spare Ms appear as green threads are preempted.
                if listed.elapsed() > Duration::from_millis(10) {
                    tids = threads_named("gerrno-");
                    listed = Instant::now();
                }
                for &tid in &tids {
                    // SAFETY: tgkill with a thread id of this process (one
                    // that exited meanwhile just makes it fail).
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
                    sent.fetch_add(1, SeqCst);
                }
                std::thread::sleep(Duration::from_micros(30));
            }
        })
    };
    let before = preempt::stats();
    let results: Vec<(u64, u64, Option<i32>)> = rt.block_on(|| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                greenrt::spawn(|| {
                    let (mut checks, mut wrong, mut first_wrong) = (0u64, 0u64, None);
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(1000) {
                        // SAFETY: closing an invalid descriptor only fails
                        // (EBADF); nothing else is touched.
                        let r = unsafe { libc::close(black_box(-1)) };
                        assert_eq!(r, -1);
                        // Main-executable code, where preemption lands.
                        spin_tsc(Duration::from_micros(40));
                        let errno = std::io::Error::last_os_error().raw_os_error();
                        checks += 1;
                        if errno != Some(libc::EBADF) {
                            wrong += 1;
                            first_wrong = first_wrong.or(errno);
                        }
                    }
                    (checks, wrong, first_wrong)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let st = since(before);
    stop.store(true, SeqCst);
    sender.join().unwrap();
    let checks: u64 = results.iter().map(|r| r.0).sum();
    let wrong: u64 = results.iter().map(|r| r.1).sum();
    let first_wrong = results.iter().find_map(|r| r.2);
    println!(
        "errno: {wrong} of {checks} errno reads after close(-1) were not EBADF (first: \
         {first_wrong:?}); {} SIGUSR1s sent; {st:?}",
        sent.load(SeqCst)
    );
    assert!(
        st.preemptions >= 100,
        "too few preemptions to test errno across them: {st:?}"
    );
    assert_eq!(
        wrong, 0,
        "errno changed under green threads while they were preempted ({wrong} of {checks} \
         reads; first seen {first_wrong:?}, expected EBADF): the preemption path does not \
         preserve errno"
    );
    println!("CHILD_OK errno");
}

// ---------------------------------------------------------------------
// preempt::disable() guards that leave their green thread.
// ---------------------------------------------------------------------

/// The message the runtime aborts with when a guard is dropped on a
/// green thread other than the one that made it.
const WRONG_GREEN_THREAD: &str = "was dropped on another green thread";

thread_local! {
    /// Where a green thread leaves its guard for whoever runs next on the
    /// same OS thread (safe code; the guard is !Send, but thread-locals
    /// belong to the OS thread, not the green thread).
    static STASH: std::cell::RefCell<Option<preempt::PreemptGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// The body of both green threads of the stale-guard test, as one closure
/// type: both cells have the same size, so the second is likely to be
/// allocated where the first was freed. With `stash` it leaves a guard in
/// `STASH`; otherwise it drops the guard found there, then spins (CPU
/// only, preemptible code) until `ticked` is set by a green thread that
/// can only run if this one is preempted, or for 3 s. Returns (stashed or
/// found a guard, was `ticked` seen).
fn stale_guard_body(stash: bool, ticked: Arc<AtomicBool>) -> impl FnOnce() -> (bool, bool) {
    move || {
        if stash {
            STASH.with(|s| *s.borrow_mut() = Some(preempt::disable()));
            return (true, false);
        }
        let Some(guard) = STASH.with(|s| s.borrow_mut().take()) else {
            return (false, false);
        };
        drop(guard);
        let end = Instant::now() + Duration::from_secs(3);
        while !ticked.load(SeqCst) && Instant::now() < end {
            spin_tsc(Duration::from_micros(100));
        }
        (true, ticked.load(SeqCst))
    }
}

#[test]
fn preempt_guard_dropped_on_another_green_thread_aborts() {
    const NAME: &str = "preempt_guard_dropped_on_another_green_thread_aborts";
    if child_tag().as_deref() != Some("stale") {
        let out = child(NAME, "stale");
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.signal() == Some(libc::SIGABRT) && stderr.contains(WRONG_GREEN_THREAD),
            "a preempt::disable() guard made by one green thread and dropped by another (it \
             went through a thread_local) must abort the process with a clear message:\n{}",
            describe(&out)
        );
        return;
    }
    println!();
    // One worker: the green threads below run one after the other on the
    // same OS thread, so the second finds the first one's guard.
    let rt = preemptive("gstale", 1, Duration::from_millis(1));
    let before = preempt::stats();
    let (found, ticked) = rt.block_on(|| {
        let ticked = Arc::new(AtomicBool::new(false));
        let first = greenrt::spawn(stale_guard_body(true, ticked.clone()));
        assert!(first.join().unwrap().0);
        let second = greenrt::spawn(stale_guard_body(false, ticked.clone()));
        // Runs only if `second`, spinning on the only worker, is
        // preempted (or finishes).
        let ticker = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(1));
            ticked.store(true, SeqCst);
        });
        let r = second.join().unwrap();
        ticker.join().unwrap();
        r
    });
    let st = since(before);
    println!("CHILD_RESULT found a guard: {found}; ticker ran while spinning: {ticked}; {st:?}");
    assert!(
        found,
        "the second green thread did not find the first one's guard"
    );
    assert!(
        ticked,
        "dropping another green thread's guard left this one unpreemptible: a green thread \
         sleeping 1 ms never ran during 3 s of spinning on the only worker ({st:?})"
    );
    println!("CHILD_OK stale");
}

static STASH_DROPS: AtomicU64 = AtomicU64::new(0);

/// Counts its drops, to show a stashed guard was dropped with it.
struct DropCounter;

impl Drop for DropCounter {
    fn drop(&mut self) {
        STASH_DROPS.fetch_add(1, SeqCst);
    }
}

thread_local! {
    /// A guard kept past its green thread's end, dropped with the OS
    /// thread's thread-locals when the worker exits.
    static KEPT: std::cell::RefCell<Option<(preempt::PreemptGuard, DropCounter)>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn preempt_guard_dropped_by_os_thread_exit_is_released_quietly() {
    const NAME: &str = "preempt_guard_dropped_by_os_thread_exit_is_released_quietly";
    if child_tag().as_deref() != Some("tls_exit") {
        child_ok(NAME, "tls_exit");
        return;
    }
    println!();
    let rt = preemptive("gtlsexit", 1, Duration::from_millis(1));
    rt.block_on(|| {
        greenrt::spawn(|| {
            KEPT.with(|k| *k.borrow_mut() = Some((preempt::disable(), DropCounter)));
        })
        .join()
        .unwrap();
    });
    assert_eq!(STASH_DROPS.load(SeqCst), 0);
    // Shutting down joins the workers: their thread-locals are destroyed
    // off any green thread, which is no misuse.
    drop(rt);
    assert_eq!(
        STASH_DROPS.load(SeqCst),
        1,
        "the worker's thread-locals (with the kept guard) were not destroyed at shutdown"
    );
    println!("CHILD_OK tls_exit");
}

// ---------------------------------------------------------------------
// Signals to a green thread that cannot be preempted.
// ---------------------------------------------------------------------

#[test]
fn unpreemptible_green_thread_is_not_signalled_every_round() {
    let _serial = serial();
    common::with_timeout(LIMIT, || {
        let rt = preemptive("gstorm", 1, Duration::from_millis(1));
        // A green thread inside preempt::disable() for 1 s: every signal
        // sysmon sends it is refused, and it keeps its P all along.
        let before = preempt::stats();
        rt.block_on(|| {
            greenrt::spawn(|| {
                let _guard = preempt::disable();
                spin_tsc(Duration::from_secs(1));
            })
            .join()
            .unwrap();
        });
        let guarded = since(before);
        // Again with a timer falling due behind it (a green thread that
        // sleeps 1 ms on the only worker): sysmon then looks far more often.
        let before = preempt::stats();
        rt.block_on(|| {
            let sleeper = greenrt::spawn(|| greenrt::sleep(Duration::from_millis(1)));
            // Let it start its sleep (arm its timer) before the spinner.
            greenrt::sleep(Duration::from_micros(200));
            greenrt::spawn(|| {
                let _guard = preempt::disable();
                spin_tsc(Duration::from_secs(1));
            })
            .join()
            .unwrap();
            sleeper.join().unwrap();
        });
        let with_timer = since(before);
        // The same without the guard, two of them: preempted as usual.
        let before = preempt::stats();
        rt.block_on(|| {
            let hs: Vec<_> = (0..2)
                .map(|_| greenrt::spawn(|| spin_tsc(Duration::from_millis(300))))
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        let unguarded = since(before);
        println!(
            "1 s under preempt::disable() at a 1 ms quantum: {guarded:?}; the same with a \
             timer due: {with_timer:?}; two 300 ms spinners without: {unguarded:?}"
        );
        assert!(
            guarded.signals < 300,
            "sysmon sent {} SIGURGs to a green thread that could not be preempted for 1 s \
             (1 ms quantum): it should back off after a refused request ({guarded:?})",
            guarded.signals
        );
        assert!(
            with_timer.signals < 300,
            "sysmon sent {} SIGURGs to a green thread that could not be preempted for 1 s \
             while a timer was due behind it (1 ms quantum): it should back off after a \
             refused request ({with_timer:?})",
            with_timer.signals
        );
        assert!(
            unguarded.preemptions > 0,
            "spinning green threads without a guard were not preempted: {unguarded:?}"
        );
    });
}
