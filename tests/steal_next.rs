//! A green thread woken into its waker's next-to-run slot is stolen by
//! an idle worker when the waker goes on computing: it waited for the
//! waker to block or be preempted (with preemption off, for good; here
//! 300 ms), with the other worker idle. And a ping-pong pair, whose
//! waker blocks right after each wake-up, is not split by thieves.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenrt::sync::mpsc;

#[test]
fn a_green_thread_woken_by_a_computing_waker_runs_on_an_idle_worker() {
    common::guarded(|| {
        let rt = greenrt::Builder::new()
            .workers(2)
            .preemption(false)
            .build()
            .unwrap();
        let latencies = rt.block_on(|| {
            let mut latencies = Vec::new();
            for _ in 0..5 {
                let (tx, rx) = mpsc::channel::<Instant>();
                let receiver = greenrt::spawn(move || rx.recv().unwrap().elapsed());
                greenrt::sleep(Duration::from_millis(5)); // parked in recv
                tx.send(Instant::now()).unwrap();
                // Compute without blocking (preemption is off).
                common::spin_for(Duration::from_millis(300));
                latencies.push(receiver.join().unwrap());
            }
            latencies
        });
        println!("woken receiver's latency: {latencies:?}");
        let worst = latencies.iter().max().unwrap();
        assert!(
            *worst < Duration::from_millis(150),
            "a woken green thread waited {worst:?} behind its computing waker with a worker idle \
             ({latencies:?})"
        );
    });
}

#[test]
fn ping_pong_pairs_finish_with_every_message_delivered() {
    // Correctness under thieves taking next-slot Gs: every round trip of
    // many pairs completes, on 2 workers.
    common::guarded(|| {
        let rt = greenrt::Builder::new().workers(2).build().unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let d = done.clone();
        rt.block_on(move || {
            let pairs: Vec<_> = (0..100)
                .map(|_| {
                    let (to_b, from_a) = mpsc::sync_channel::<u64>(1);
                    let (to_a, from_b) = mpsc::sync_channel::<u64>(1);
                    let b = greenrt::spawn(move || {
                        while let Ok(v) = from_a.recv() {
                            to_a.send(v + 1).unwrap();
                        }
                    });
                    let d = d.clone();
                    let a = greenrt::spawn(move || {
                        let mut v = 0;
                        for _ in 0..1_000 {
                            to_b.send(v).unwrap();
                            v = from_b.recv().unwrap();
                        }
                        assert_eq!(v, 1_000);
                        d.fetch_add(1, SeqCst);
                    });
                    (a, b)
                })
                .collect();
            for (a, b) in pairs {
                a.join().unwrap();
                b.join().unwrap();
            }
        });
        assert_eq!(done.load(SeqCst), 100);
    });
}
