//! Bug 5: a timer entry left behind by a wait that ended early (a
//! `recv_timeout` answered in time) made shutdown mark its green thread
//! dead and unmap its stack, even while the green thread was preempted and
//! its M was parked on that very stack; the next signal to that thread
//! killed the process. Runs as a child, which checks every blocked
//! thread's stack pointer against /proc/self/maps and then signals every
//! thread (no SA_ONSTACK) after the drop.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child};

const LIMIT: Duration = Duration::from_secs(20);

/// The user-space stack pointer of every thread of this process that is
/// blocked in a system call (from /proc/self/task/*/syscall: "nr args..
/// sp pc"; running threads show "running" and are skipped).
fn blocked_thread_sps() -> Vec<(libc::pid_t, usize)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(task.path().join("syscall")) else {
            continue;
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() < 3 {
            continue; // "running" (or "-1 sp pc" handled below)
        }
        let sp = fields[fields.len() - 2];
        if let Ok(sp) = usize::from_str_radix(sp.trim_start_matches("0x"), 16) {
            out.push((tid, sp));
        }
    }
    out
}

/// Whether `addr` lies in any mapping of this process.
fn is_mapped(maps: &str, addr: usize) -> bool {
    maps.lines().any(|line| {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((lo, hi)) = range.split_once('-') else {
            return false;
        };
        match (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
            (Ok(lo), Ok(hi)) => addr >= lo && addr < hi,
            _ => false,
        }
    })
}

/// Bug 5: a wait that ends early (`recv_timeout` answered before its
/// deadline) leaves its timer entry queued. At shutdown the timer drain
/// marked that G dead and unmapped its stack even though the G was
/// preempted and its M was parked (in the preemption path) on that very
/// stack; the M's stack pointer then pointed into unmapped memory and any
/// signal delivered to it (without SA_ONSTACK) killed the process.
///
/// Runs as a child: several green threads on one worker each really park
/// in `recv_timeout` (so a timer entry is queued) and are answered in time
/// from outside, then spin in slices much longer than the quantum (so they
/// are preempted over and over; at any moment all but one are parked in
/// the preemption path). After the runtime is dropped, the child checks
/// that no thread blocked in a system call has its stack pointer in
/// unmapped memory, and signals every thread with a handler that runs on
/// the thread's own stack.
#[test]
fn shutdown_keeps_the_stack_of_a_preempted_green_thread_with_a_stale_timer() {
    const TAG: &str = "bug5-stale-timer-preempted";
    if child_tag().as_deref() == Some(TAG) {
        extern "C" fn on_usr1(_: libc::c_int) {}
        // SAFETY: installs a no-op handler without SA_ONSTACK: it runs on
        // whatever stack the receiving thread is on.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
        const GREEN: usize = 4;
        let mut bad = Vec::new();
        for round in 0..3 {
            let rt = greenrt::Builder::new()
                .workers(1)
                .preempt_quantum(Duration::from_micros(100))
                .build()
                .unwrap();
            let waiting = Arc::new(AtomicUsize::new(0));
            let answered = Arc::new(AtomicUsize::new(0));
            let waited = Arc::new(AtomicUsize::new(0));
            let mut senders = Vec::new();
            for _ in 0..GREEN {
                let (tx, rx) = greenrt::sync::mpsc::channel::<u32>();
                senders.push(tx);
                let (waiting, answered, waited) =
                    (waiting.clone(), answered.clone(), waited.clone());
                rt.spawn(move || {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    let t0 = Instant::now();
                    // Parks with a 30 s timer; answered long before it.
                    rx.recv_timeout(Duration::from_secs(30)).unwrap();
                    if t0.elapsed() >= Duration::from_millis(5) {
                        waited.fetch_add(1, Ordering::SeqCst);
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    loop {
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_millis(5) {
                            std::hint::spin_loop();
                        }
                        greenrt::yield_now();
                    }
                });
            }
            let start = Instant::now();
            while waiting.load(Ordering::SeqCst) < GREEN && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Let every green thread park in recv_timeout (timer queued).
            std::thread::sleep(Duration::from_millis(30));
            for tx in &senders {
                tx.send(1).unwrap();
            }
            let before = greenrt::preempt::stats();
            let start = Instant::now();
            while (answered.load(Ordering::SeqCst) < GREEN
                || greenrt::preempt::stats().since(&before).preemptions < 50)
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let preemptions = greenrt::preempt::stats().since(&before).preemptions;
            eprintln!(
                "round {round}: {} of {GREEN} answered ({} after really waiting), {preemptions} preemptions",
                answered.load(Ordering::SeqCst),
                waited.load(Ordering::SeqCst)
            );
            drop(rt);
            // Every thread blocked in a syscall must still have its stack.
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            for (tid, sp) in blocked_thread_sps() {
                if !is_mapped(&maps, sp) {
                    eprintln!(
                        "UNMAPPED STACK: round {round}: thread {tid} is parked with its stack \
                         pointer {sp:#x} in unmapped memory (its green thread's stack was \
                         freed at shutdown)"
                    );
                    bad.push((round, tid, sp));
                }
            }
            drop(senders);
            // Every thread of the process takes a signal on its own stack.
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let tid: libc::pid_t = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
                // SAFETY: a signal with a handler installed, to a thread
                // of our own process.
                unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            bad.is_empty(),
            "threads parked on unmapped stacks after shutdown (round, tid, sp): {bad:x?}"
        );
        println!("CHILD_OK {TAG}");
        return;
    }
    let out = run_child(
        "shutdown_keeps_the_stack_of_a_preempted_green_thread_with_a_stale_timer",
        TAG,
        &[],
        LIMIT,
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK"),
        "{}",
        describe(&out)
    );
}
