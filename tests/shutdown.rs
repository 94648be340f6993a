//! Shutdown and cancellation (`Runtime::shutdown_timeout`, `Drop`): every
//! green thread still alive when its runtime drops is cancelled and
//! unwinds from the blocking call it is in, so its destructors run and
//! what it held (sockets, locks, channel ends) is released; nothing waits
//! for ever; the runtime gives back its threads, fds and stacks.
//!
//! (Tests with preempted or printing green threads: shutdown_preempted.rs.)
//!
//! Every test holds `SERIAL`: they compare the process's fd and thread
//! counts, and time drops.

mod common;
mod shutdown_util;

use std::io::Read;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use shutdown_util::{
    exclusive, is_cancelled, open_fds, runtime, timed_drop, virtual_size, wait_parked, Dropped,
    BIG_STACK, DROP_LIMIT, FOREVER,
};

#[test]
fn runtimes_dropped_with_parked_green_threads_release_everything() {
    exclusive(|| {
        // Warm up the process-wide netpoller (its epoll and eventfd stay).
        drop(runtime(2).block_on(|| greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap()));
        let fds_before = open_fds();
        let threads_before = common::thread_count();
        let vsz_before = virtual_size();
        let mut slowest = Duration::ZERO;
        for round in 0..50 {
            // Large stacks (reserved, not committed) make a leaked stack
            // mapping show in the process's virtual size.
            let rt = greenrt::Builder::new()
                .workers(2)
                .stack_size(BIG_STACK)
                .build()
                .expect("build a runtime");
            let dropped = Arc::new(AtomicUsize::new(0));
            let parked = Arc::new(AtomicUsize::new(0));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let (d, p) = (dropped.clone(), parked.clone());
            let joined = rt.block_on(move || {
                let mut hs = Vec::new();
                // accept
                let l = greenrt::net::TcpListener::bind(addr).unwrap();
                let (dd, pp) = (d.clone(), p.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    pp.fetch_add(1, SeqCst);
                    let _ = l.accept();
                }));
                // read, with the peer parked in a channel recv holding the
                // other end.
                let server = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let mut client = greenrt::net::TcpStream::connect(server.local_addr().unwrap())
                    .expect("connect");
                let (peer, _) = server.accept().unwrap();
                drop(server);
                let (dd, pp) = (d.clone(), p.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    pp.fetch_add(1, SeqCst);
                    let mut buf = [0u8; 16];
                    let _ = client.read(&mut buf);
                }));
                let (tx, rx) = greenrt::sync::mpsc::channel::<u8>();
                let (dd, pp) = (d.clone(), p.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    let _peer = peer;
                    pp.fetch_add(1, SeqCst);
                    let _ = rx.recv();
                }));
                // sleep
                let (dd, pp) = (d.clone(), p.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    pp.fetch_add(1, SeqCst);
                    greenrt::sleep(FOREVER);
                }));
                // a greenrt Mutex held by a sleeper, wanted by another
                let m = Arc::new(greenrt::sync::Mutex::new(0u32));
                let held = Arc::new(AtomicUsize::new(0));
                let (dd, pp, m1, h1) = (d.clone(), p.clone(), m.clone(), held.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    let _g = m1.lock().unwrap();
                    h1.store(1, SeqCst);
                    pp.fetch_add(1, SeqCst);
                    greenrt::sleep(FOREVER);
                }));
                let (dd, pp, m2) = (d.clone(), p.clone(), m.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    // Only once the other holds the lock.
                    while held.load(SeqCst) == 0 {
                        greenrt::sleep(Duration::from_millis(1));
                    }
                    pp.fetch_add(1, SeqCst);
                    let _g = m2.lock();
                }));
                // join of a green thread that never ends
                let forever = greenrt::spawn(|| greenrt::sleep(FOREVER));
                let (dd, pp) = (d.clone(), p.clone());
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    pp.fetch_add(1, SeqCst);
                    let r = forever.join();
                    assert!(r.is_err());
                }));
                // The sender stays alive on a parked green thread too.
                let (dd, pp) = (d, p);
                hs.push(greenrt::spawn(move || {
                    let _d = Dropped(dd);
                    let _tx = tx;
                    pp.fetch_add(1, SeqCst);
                    greenrt::sleep(FOREVER);
                }));
                hs
            });
            wait_parked(&parked, 8);
            let took = timed_drop(rt);
            slowest = slowest.max(took);
            assert!(took < DROP_LIMIT, "round {round}: drop took {took:?}");
            assert_eq!(dropped.load(SeqCst), 8, "round {round}: destructors run");
            for (i, h) in joined.into_iter().enumerate() {
                let payload = h
                    .join()
                    .map(|_| panic!("round {round}: green thread {i} was not cancelled"))
                    .unwrap_err();
                assert!(
                    is_cancelled(&*payload),
                    "round {round}: payload is Cancelled"
                );
            }
            std::net::TcpListener::bind(addr)
                .unwrap_or_else(|e| panic!("round {round}: {addr} still bound: {e}"));
        }
        assert_eq!(open_fds(), fds_before, "fds left open by 50 runtimes");
        // At most as many as before: a thread of an earlier test (in this
        // binary) may still have been exiting when the baseline was taken.
        let threads_after = common::thread_count_settled(threads_before);
        assert!(
            threads_after <= threads_before,
            "threads left by 50 runtimes: {threads_before} before, {threads_after} after"
        );
        // 50 runtimes × 9 green threads of 16 MiB stacks: a leak of even a
        // tenth of them would add 700 MiB; malloc's arenas (64 MiB each)
        // may add a few.
        let grown = virtual_size().saturating_sub(vsz_before);
        assert!(
            grown < 450 * BIG_STACK / 10,
            "stack mappings left by 50 runtimes: virtual size grew {} MiB",
            grown >> 20
        );
        eprintln!(
            "slowest drop of 50: {slowest:?}; virtual size grew {} MiB",
            grown >> 20
        );
    });
}

#[test]
fn cancelled_green_thread_cannot_stay_alive_by_catching_the_unwind() {
    exclusive(|| {
        let rt = runtime(1);
        let caught = Arc::new(AtomicUsize::new(0));
        let parked = Arc::new(AtomicUsize::new(0));
        let (c, p) = (caught.clone(), parked.clone());
        let h = rt.spawn(move || {
            p.fetch_add(1, SeqCst);
            let first = catch_unwind(|| greenrt::sleep(FOREVER));
            let payload = first.expect_err("the sleep unwinds");
            assert!(is_cancelled(&*payload));
            assert!(greenrt::task::is_cancelled());
            c.fetch_add(1, SeqCst);
            // Every later blocking call unwinds at once.
            let again = catch_unwind(|| greenrt::sleep(FOREVER));
            assert!(is_cancelled(&*again.expect_err("unwinds again")));
            c.fetch_add(1, SeqCst);
            let again = catch_unwind(greenrt::yield_now);
            assert!(is_cancelled(&*again.expect_err("yield unwinds too")));
            c.fetch_add(1, SeqCst);
            greenrt::sleep(FOREVER);
        });
        wait_parked(&parked, 1);
        let took = timed_drop(rt);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        assert_eq!(caught.load(SeqCst), 3);
        assert!(is_cancelled(&*h.join().unwrap_err()));
    });
}

#[test]
fn panic_caught_in_a_cancelled_green_threads_destructor() {
    struct PanicsOnDrop(Arc<AtomicUsize>);
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            // A destructor that panics internally while the green thread
            // unwinds from its cancellation (a panic escaping a destructor
            // during unwinding aborts the process, in any Rust thread).
            let r = catch_unwind(|| panic!("destructor panic during cancellation"));
            assert!(r.is_err());
            assert!(std::thread::panicking());
            self.0.fetch_add(1, SeqCst);
        }
    }
    exclusive(|| {
        let rt = runtime(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let parked = Arc::new(AtomicUsize::new(0));
        let (r, p) = (ran.clone(), parked.clone());
        let h = rt.spawn(move || {
            let _x = PanicsOnDrop(r);
            p.fetch_add(1, SeqCst);
            greenrt::sleep(FOREVER);
        });
        wait_parked(&parked, 1);
        let took = timed_drop(rt);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        assert_eq!(ran.load(SeqCst), 1);
        assert!(is_cancelled(&*h.join().unwrap_err()));
        // The runtime machinery is unharmed: a new runtime works.
        assert_eq!(
            runtime(1).block_on(|| greenrt::spawn(|| 7).join().unwrap()),
            7
        );
    });
}

#[test]
fn green_thread_blocked_in_a_std_syscall_unwinds_when_it_returns() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(1)
            .preempt_quantum(Duration::from_millis(1))
            .build()
            .unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let parked = Arc::new(AtomicUsize::new(0));
        let after = Arc::new(AtomicBool::new(false));
        let (d, p, a) = (dropped.clone(), parked.clone(), after.clone());
        let h = rt.spawn(move || {
            let _d = Dropped(d);
            p.fetch_add(1, SeqCst);
            // Blocks the OS thread (its P is retaken meanwhile).
            std::thread::sleep(Duration::from_millis(300));
            a.store(true, SeqCst);
            // Back in the runtime: the first blocking call unwinds.
            greenrt::sleep(FOREVER);
        });
        // Another green thread keeps the worker busy meanwhile.
        rt.spawn(|| greenrt::sleep(FOREVER));
        wait_parked(&parked, 1);
        let took = timed_drop(rt);
        assert!(took < DROP_LIMIT, "drop took {took:?}");
        assert!(after.load(SeqCst), "the std sleep finished first");
        assert_eq!(dropped.load(SeqCst), 1);
        assert!(is_cancelled(&*h.join().unwrap_err()));
    });
}

/// A green thread holding its runtime's last handle drops it: the drop
/// returns at once (the shutdown runs on a thread of its own) and the
/// green thread, cancelled, unwinds at its next blocking call. The drop
/// waited out the whole shutdown timeout for its own caller, then
/// detached it with a message about a straggler.
#[test]
fn a_green_thread_dropping_its_own_runtime_returns_at_once_and_is_cancelled() {
    use std::sync::mpsc as std_mpsc;
    use std::time::{Duration, Instant};
    let rt = std::sync::Arc::new(greenrt::Builder::new().workers(2).build().unwrap());
    let (go_tx, go_rx) = std_mpsc::channel::<()>();
    let (report_tx, report_rx) = std_mpsc::channel::<Result<Duration, &str>>();
    let mine = rt.clone();
    rt.spawn(move || {
        go_rx.recv().unwrap();
        let t = Instant::now();
        drop(mine);
        report_tx.send(Ok(t.elapsed())).unwrap();
        // Cancelled: this unwinds (dropping `report_tx`).
        greenrt::sleep(Duration::from_secs(5));
        report_tx
            .send(Err("still running after the sleep"))
            .unwrap();
    });
    drop(rt);
    go_tx.send(()).unwrap();
    let took = report_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the drop returned")
        .unwrap();
    assert!(
        took < Duration::from_millis(500),
        "dropping the runtime from its own green thread took {took:?}"
    );
    assert_eq!(
        report_rx.recv_timeout(Duration::from_secs(4)),
        Err(std_mpsc::RecvTimeoutError::Disconnected),
        "the green thread was not cancelled at its next blocking call"
    );
}

/// `shutdown_timeout(Duration::MAX)` waits without a limit, as greenrt's
/// other timeouts take `Duration::MAX`: it panicked adding the timeout
/// to the clock, after marking the runtime stopped, which left its
/// threads and green threads running for good.
#[test]
fn a_shutdown_timeout_of_duration_max_waits_without_a_limit() {
    exclusive(|| {
        let rt = greenrt::Builder::new().workers(1).build().unwrap();
        let unwound = Arc::new(AtomicBool::new(false));
        struct Mark(Arc<AtomicBool>);
        impl Drop for Mark {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let mark = Mark(unwound.clone());
        let (started_tx, started) = std::sync::mpsc::channel();
        let h = rt.spawn(move || {
            let _mark = mark;
            started_tx.send(()).unwrap();
            greenrt::sleep(Duration::from_secs(3600));
        });
        started.recv().unwrap();
        rt.shutdown_timeout(Duration::MAX);
        assert!(unwound.load(SeqCst), "the sleeper did not unwind");
        assert!(h.join().is_err());
    });
}

/// Parked green threads all unwind, however many, even with a short
/// timeout: the timeout is for green threads that reach no blocking call,
/// and the wait goes on while green threads keep finishing. With a fixed
/// deadline, those that had no turn by then were abandoned in their run
/// queue: destructors not run, `greenrt::sync` locks never released,
/// stacks leaked.
#[test]
fn every_parked_green_thread_unwinds_however_many_and_however_short_the_timeout() {
    // Unwinding them all takes about 0.5 s of CPU (each destructor
    // computes for 50 µs), five times the timeout; a gap of the timeout
    // with no green thread finishing would take both workers descheduled
    // for that long.
    const N: usize = 20_000;
    const TIMEOUT: Duration = Duration::from_millis(100);
    exclusive(|| {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                common::spin_for(Duration::from_micros(50));
                self.0.fetch_add(1, SeqCst);
            }
        }
        let started = Arc::new(AtomicUsize::new(0));
        for _ in 0..N {
            let (count, started) = (Count(dropped.clone()), started.clone());
            rt.spawn(move || {
                let _count = count;
                started.fetch_add(1, SeqCst);
                greenrt::sleep(Duration::from_secs(3600));
            });
        }
        while started.load(SeqCst) < N {
            std::thread::sleep(Duration::from_millis(1));
        }
        rt.shutdown_timeout(TIMEOUT);
        assert_eq!(
            dropped.load(SeqCst),
            N,
            "green threads abandoned without unwinding"
        );
    });
}

/// Green threads born during the cancellation (spawned by a thread that
/// never blocks, or from the destructor of an unwinding or unrun one)
/// finish at once, cancelled; they must not keep the wait going. With
/// "any green thread finished" as progress, both shapes below kept
/// `shutdown_timeout(100 ms)` waiting for good; progress is now a new low
/// of the live count.
#[test]
fn green_threads_born_during_shutdown_do_not_keep_it_waiting() {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;
    const TIMEOUT: Duration = Duration::from_millis(100);
    // Alone, as every test here (they compare fd and thread counts).
    let _serial = common::serial();

    // A spinner spawning a short-lived green thread every 50 µs.
    static STOP: AtomicBool = AtomicBool::new(false);
    let took = common::with_timeout(Duration::from_secs(30), || {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        rt.spawn(|| {
            while !STOP.load(SeqCst) {
                drop(greenrt::spawn(|| std::hint::black_box(1)));
                common::spin_for(Duration::from_micros(50));
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        rt.shutdown_timeout(TIMEOUT);
        let took = t.elapsed();
        STOP.store(true, SeqCst); // the detached spinner ends
        took
    });
    assert!(took < Duration::from_secs(10), "spinner: {took:?}");

    // A value whose destructor spawns a green thread holding another one:
    // each born-cancelled thread's closure is dropped unrun, which spawns
    // the next.
    struct Respawn;
    impl Drop for Respawn {
        fn drop(&mut self) {
            if greenrt::task::current_id().is_none() {
                return; // off a green thread: the chain ends
            }
            let next = Respawn;
            let _ = greenrt::task::Builder::new().spawn(move || {
                let _next = next;
                greenrt::sleep(Duration::from_secs(3600));
            });
        }
    }
    let took = common::with_timeout(Duration::from_secs(30), || {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let first = Respawn;
        rt.spawn(move || {
            let _first = first;
            greenrt::sleep(Duration::from_secs(3600));
        });
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        rt.shutdown_timeout(TIMEOUT);
        t.elapsed()
    });
    assert!(took < Duration::from_secs(10), "respawn: {took:?}");
}
