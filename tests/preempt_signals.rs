//! The SIGURG that preemption uses, as others see it: an application's
//! own SIGURG handler still receives the SIGURGs sent to it (and
//! preemption keeps working beside it), and a green thread blocked in a
//! system call is not interrupted (EINTR) over and over.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time, including the
//! children they start), bounds have generous margins, and every body runs
//! under a timeout so that a hang fails instead of blocking the run.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child_tag;
use common::preemption::{add_twos, child_ok, exclusive, ms, preemptive, since, tsc, tsc_ticks};
use greenrt::preempt;

// ---------------------------------------------------------------------
// An application's SIGURG handler.
// ---------------------------------------------------------------------

static APP_URGS: AtomicUsize = AtomicUsize::new(0);
static APP_BAD: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel (or greenrt, forwarding) passes a valid siginfo.
    if sig == libc::SIGURG && !info.is_null() && unsafe { (*info).si_signo } == libc::SIGURG {
        APP_URGS.fetch_add(1, SeqCst);
    } else {
        APP_BAD.fetch_add(1, SeqCst);
    }
}

/// Sends one SIGURG with `send` and waits (up to 3 s) for the
/// application's handler to see it. Returns false if it never did.
fn deliver(send: impl FnOnce() -> libc::c_int) -> bool {
    let before = APP_URGS.load(SeqCst);
    assert_eq!(send(), 0, "sending SIGURG failed");
    let start = Instant::now();
    while APP_URGS.load(SeqCst) == before {
        if start.elapsed() > Duration::from_secs(3) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

#[test]
fn application_sigurg_handler_still_receives_foreign_sigurgs() {
    const NAME: &str = "application_sigurg_handler_still_receives_foreign_sigurgs";
    if child_tag().as_deref() != Some("sigurg") {
        let out = child_ok(NAME, "sigurg", &[]);
        for line in out.lines().filter(|l| l.starts_with("sigurg")) {
            println!("{line}");
        }
        return;
    }
    println!(); // after libtest's "test <name> ... "
                // SAFETY: installs a handler that only touches atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = app_on_sigurg as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
    // Default quantum: a green thread that runs for less than 10 ms gets
    // no preemption signal, which could coalesce with the application's
    // (two pending standard signals are one; see the busy hogs below).
    let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
    let (bystander_tx, bystander_rx) = std::sync::mpsc::channel::<()>();
    let bystander = std::thread::spawn(move || {
        let _ = bystander_rx.recv();
    });
    let bystander_id = std::os::unix::thread::JoinHandleExt::as_pthread_t(&bystander);
    // A green thread that, each round, publishes its OS thread and spins
    // (running on the worker) until that thread has been signalled, then
    // yields (a new turn: sysmon starts counting again).
    let worker_thread = Arc::new(AtomicU64::new(0));
    let waiter = {
        let worker_thread = worker_thread.clone();
        rt.spawn(move || {
            let end = Instant::now() + Duration::from_secs(30);
            for _ in 0..4 {
                // SAFETY: pthread_self has no preconditions.
                worker_thread.store(unsafe { libc::pthread_self() } as u64, SeqCst);
                while worker_thread.load(SeqCst) != 0 && Instant::now() < end {
                    std::hint::spin_loop();
                }
                greenrt::yield_now();
            }
        })
    };
    let mut sent = 0;
    let mut lost = Vec::new();
    let mut send = |what: &str, f: &dyn Fn() -> libc::c_int| {
        sent += 1;
        if !deliver(f) {
            lost.push(what.to_string());
        }
    };
    for _ in 0..4 {
        // SAFETY (all): plain signal-sending calls on live threads.
        send("kill(getpid())", &|| unsafe {
            libc::kill(libc::getpid(), libc::SIGURG)
        });
        send("pthread_kill(std thread)", &|| unsafe {
            libc::pthread_kill(bystander_id, libc::SIGURG)
        });
        send("raise (this thread)", &|| unsafe {
            libc::raise(libc::SIGURG)
        });
        send("raise (in a green thread)", &|| {
            rt.spawn(|| unsafe { libc::raise(libc::SIGURG) })
                .join()
                .unwrap()
        });
        let t = loop {
            match worker_thread.load(SeqCst) {
                0 => std::thread::sleep(Duration::from_micros(100)),
                t => break t as libc::pthread_t,
            }
        };
        send("pthread_kill(worker running a green thread)", &|| unsafe {
            libc::pthread_kill(t, libc::SIGURG)
        });
        worker_thread.store(0, SeqCst);
    }
    waiter.join().unwrap();
    drop(bystander_tx);
    bystander.join().unwrap();
    let received = APP_URGS.load(SeqCst);
    println!(
        "sigurg: sent {sent}, the application's handler received {received} (bad {}); lost: \
         {lost:?}",
        APP_BAD.load(SeqCst)
    );
    assert!(
        lost.is_empty(),
        "SIGURGs sent by the application never reached its handler: {lost:?}"
    );
    assert_eq!(received, sent, "the application's handler ran too often");
    assert_eq!(
        APP_BAD.load(SeqCst),
        0,
        "the handler got a bad signal or siginfo"
    );
    drop(rt);

    // Preemption still works with the application's handler installed:
    // two hogs on one worker take turns. Meanwhile SIGURGs sent to their
    // threads still reach the application, except that one sent while a
    // preemption signal is pending for the same thread merges with it in
    // the kernel (standard signals do not queue): greenrt's handler then
    // sees only its own. At a 1 ms quantum that happens now and then.
    let rt = preemptive(1, Duration::from_millis(1));
    let before = preempt::stats();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let hogs: Vec<_> = (0..2)
        .map(|i| {
            let (stop, threads) = (stop.clone(), threads.clone());
            rt.spawn(move || {
                // A green thread that never blocks stays on its OS thread.
                // SAFETY: pthread_self has no preconditions.
                threads[i].store(unsafe { libc::pthread_self() } as u64, SeqCst);
                let t0 = tsc();
                let end = t0 + tsc_ticks(Duration::from_secs(20));
                while !stop.load(SeqCst) && tsc() < end {
                    black_box(add_twos(black_box(1000)));
                }
                (t0, tsc())
            })
        })
        .collect();
    let start = Instant::now();
    while threads.iter().any(|t| t.load(SeqCst) == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the second hog never started: the first one was not preempted, or the second \
             (queued globally: spawned from outside) starved"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut busy_sent = 0;
    let mut busy_lost = 0;
    for _ in 0..4 {
        for t in threads.iter() {
            let t = t.load(SeqCst) as libc::pthread_t;
            busy_sent += 1;
            // SAFETY: a live worker thread.
            if !deliver(|| unsafe { libc::pthread_kill(t, libc::SIGURG) }) {
                busy_lost += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, SeqCst);
    let spans: Vec<(u64, u64)> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    let st = since(before);
    println!(
        "sigurg (busy workers, 1 ms quantum): sent {busy_sent} to the hogs' threads, {busy_lost} \
         merged with a preemption signal; {st:?}"
    );
    assert!(
        busy_lost < busy_sent,
        "no SIGURG sent to a busy worker reached the application's handler"
    );
    assert!(
        st.preemptions > 0 && spans[1].0 < spans[0].1 && spans[0].0 < spans[1].1,
        "preemption stopped working with an application handler installed: two hogs on one \
         worker did not take turns ({spans:?}), {st:?}"
    );
    drop(rt);
    println!("CHILD_OK sigurg");
}

// ---------------------------------------------------------------------
// Signals to a blocked green thread.
// ---------------------------------------------------------------------

#[test]
fn blocking_syscall_is_not_interrupted_over_and_over() {
    // A green thread blocked in a system call loses its P once (one
    // SIGURG: one EINTR at most). It must not then be signalled every
    // sysmon round while it stays blocked: poll, select, epoll_wait and
    // nanosleep are never restarted (SA_RESTART or not), and code that
    // retries them with its full timeout would never time out.
    exclusive(|| {
        let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
        let before = preempt::stats();
        let (eintr, took) = rt.block_on(|| {
            greenrt::spawn(|| {
                let t = Instant::now();
                let mut eintr = 0;
                loop {
                    let left = 300 - t.elapsed().as_millis() as i64;
                    if left <= 0 {
                        break;
                    }
                    // SAFETY: no descriptors, just the timeout.
                    let r = unsafe { libc::poll(std::ptr::null_mut(), 0, left as libc::c_int) };
                    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                    {
                        eintr += 1;
                    }
                }
                (eintr, t.elapsed())
            })
            .join()
            .unwrap()
        });
        let st = since(before);
        println!(
            "blocked in poll for {:.0} ms: {eintr} EINTRs; {st:?}",
            ms(took)
        );
        assert!(
            eintr <= 3,
            "a green thread blocked in poll(300 ms) was interrupted {eintr} times ({st:?}): \
             sysmon keeps signalling a thread whose P it has retaken while it stays blocked"
        );
    });
}
