//! A poll descriptor's lock is shared by the green threads that use the
//! socket and the poller (an M looking for work, holding its P, takes it
//! in `PollDesc::notify`). A green thread preempted while holding it —
//! inside `PollDesc::mark_drained` (after every short stream read),
//! `close`, `alloc` or `token` (closing and opening a socket) — made the
//! next poll that returned an event for that socket block its M, P and
//! all; with one worker the preempted green thread never got a P back to
//! release the lock: the runtime stopped for good.
//!
//! The test keeps one worker busy with exactly that mix under the
//! smallest quantum, and checks that work keeps getting done.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::with_timeout;
use greenrt::os::unix::net::UnixStream;

/// How long the traffic runs.
const RUN: Duration = Duration::from_secs(6);
/// No work done for this long means the worker is stuck.
const STALL: Duration = Duration::from_secs(3);
/// Reader green threads, and the sockets each reads in turn.
const READERS: usize = 2;
const SOCKETS_PER_READER: usize = 64;

#[derive(Default)]
struct Progress {
    reads: AtomicU64,
    yields: AtomicU64,
    opens: AtomicU64,
}

impl Progress {
    fn total(&self) -> u64 {
        self.reads.load(SeqCst) + self.yields.load(SeqCst) + self.opens.load(SeqCst)
    }

    fn describe(&self) -> String {
        format!(
            "{} short reads, {} yields, {} sockets opened and closed",
            self.reads.load(SeqCst),
            self.yields.load(SeqCst),
            self.opens.load(SeqCst)
        )
    }
}

/// One worker, 100 µs quantum:
///
/// - reader green threads each read many Unix stream sockets in turn into
///   a buffer larger than anything queued, so every read is short and
///   marks its descriptor drained (`mark_drained`, under the descriptor's
///   lock); a plain OS thread writes a few bytes to every socket, round
///   and round, so read edges keep coming and the poller keeps notifying
///   these very descriptors. Reading many sockets per turn gives the
///   readers slices longer than the quantum: sysmon preempts them in the
///   middle of their reads;
/// - green threads that only yield, so that while a reader is preempted
///   the worker keeps scheduling and polls the netpoller every 61st tick
///   (before it resumes the preempted reader);
/// - a green thread that opens a socket pair, sends a byte, reads it and
///   closes both, in a loop (`alloc`, `token`, `mark_drained`, `close`).
///
/// A watchdog fails the test if nothing at all gets done for `STALL`.
#[test]
fn short_reads_and_socket_churn_under_preemption_keep_one_worker_going() {
    with_timeout(Duration::from_secs(60), || {
        let before = greenrt::preempt::stats();
        let rt = greenrt::Builder::new()
            .workers(1)
            .preempt_quantum(greenrt::preempt::MIN_QUANTUM)
            .build()
            .unwrap();
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));

        // The sockets: green-thread ends to the readers, std ends to the
        // writer thread.
        let mut writer_ends = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..READERS {
            let mut socks = Vec::new();
            for _ in 0..SOCKETS_PER_READER {
                let (w, r) = std::os::unix::net::UnixStream::pair().unwrap();
                writer_ends.push(w);
                socks.push(UnixStream::try_from(r).unwrap());
            }
            let (progress, stop) = (progress.clone(), stop.clone());
            readers.push(rt.spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while !stop.load(SeqCst) {
                    for s in &socks {
                        let n = (&*s).read(&mut buf).expect("read");
                        assert!(n > 0, "the writer never closes first");
                        progress.reads.fetch_add(1, SeqCst);
                    }
                }
            }));
        }
        // Writes on until the readers are done (a reader mid-turn waits
        // for its next bytes).
        let writer_stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = writer_stop.clone();
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    for w in &mut writer_ends {
                        if w.write_all(&[7; 8]).is_err() {
                            return;
                        }
                    }
                }
            })
        };
        let mut others = Vec::new();
        for _ in 0..2 {
            let (progress, stop) = (progress.clone(), stop.clone());
            others.push(rt.spawn(move || {
                while !stop.load(SeqCst) {
                    greenrt::yield_now();
                    progress.yields.fetch_add(1, SeqCst);
                }
            }));
        }
        {
            let (progress, stop) = (progress.clone(), stop.clone());
            others.push(rt.spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(SeqCst) {
                    let (a, b) = UnixStream::pair().unwrap();
                    (&a).write_all(&[1]).unwrap();
                    assert_eq!((&b).read(&mut buf).unwrap(), 1);
                    drop((a, b));
                    progress.opens.fetch_add(1, SeqCst);
                    greenrt::yield_now();
                }
            }));
        }

        // Watchdog: over the run, then while the green threads finish.
        let start = Instant::now();
        let mut last = (progress.total(), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if start.elapsed() >= RUN {
                stop.store(true, SeqCst);
            }
            if stop.load(SeqCst) && readers.iter().chain(&others).all(|h| h.is_finished()) {
                break;
            }
            let now = progress.total();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= STALL {
                let stats = greenrt::preempt::stats().since(&before);
                // The runtime cannot be dropped: shutdown would wait for
                // the stuck M. Leave it (and every thread) behind.
                std::mem::forget(rt);
                std::mem::forget(readers);
                std::mem::forget(others);
                panic!(
                    "no progress in {STALL:?} (the last {:?} into the run): the worker is \
                     stuck; {}; {stats:?} (a preemption counts once its green thread \
                     resumes)",
                    last.1 - start,
                    progress.describe()
                );
            }
        }
        for h in readers.into_iter().chain(others) {
            h.join().unwrap();
        }
        writer_stop.store(true, SeqCst);
        writer.join().unwrap();
        drop(rt);
        let stats = greenrt::preempt::stats().since(&before);
        eprintln!("{}; {stats:?}", progress.describe());
        // Few of sysmon's signals preempt a reader: most land while it is
        // in the kernel and reach it in libc, where it is not preempted
        // (10 to a few hundred preemptions per run, depending on the
        // machine's load). A handful suffices: on the old code the worker
        // stuck within a few dozen.
        assert!(
            stats.preemptions >= 5,
            "preemptions happened (else this proves nothing): {stats:?}"
        );
    });
}
