//! greenrt::sync::Barrier: std's semantics (nobody passes before all
//! arrive, one leader per round, reuse), parking, and OS threads.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{block_on, guarded, runtime};
use greenrt::sync::Barrier;

#[test]
fn nobody_passes_before_all_arrive_and_one_leads_each_round() {
    const N: usize = 16;
    const ROUNDS: usize = 50;
    block_on(2, || {
        let barrier = Arc::new(Barrier::new(N));
        let arrived = Arc::new(AtomicUsize::new(0));
        let leaders = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let (barrier, arrived, leaders) =
                    (barrier.clone(), arrived.clone(), leaders.clone());
                greenrt::spawn(move || {
                    for round in 0..ROUNDS {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        if barrier.wait().is_leader() {
                            leaders.fetch_add(1, Ordering::SeqCst);
                        }
                        // Everyone of this round arrived before anyone left.
                        assert!(arrived.load(Ordering::SeqCst) >= (round + 1) * N);
                        // And nobody can be two rounds ahead: a second
                        // barrier keeps the rounds apart.
                        barrier.wait();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(arrived.load(Ordering::SeqCst), N * ROUNDS);
        assert_eq!(leaders.load(Ordering::SeqCst), ROUNDS);
    });
}

#[test]
fn waiting_parks_only_the_green_thread() {
    // One worker: a wait that blocked it would deadlock.
    block_on(1, || {
        let barrier = Arc::new(Barrier::new(3));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let b = barrier.clone();
                greenrt::spawn(move || b.wait().is_leader())
            })
            .collect();
        let leaders = hs.into_iter().map(|h| h.join().unwrap());
        assert_eq!(leaders.filter(|&l| l).count(), 1);
    });
}

#[test]
fn os_threads_and_green_threads_meet_at_one_barrier() {
    guarded(|| {
        let rt = runtime(1);
        let barrier = Arc::new(Barrier::new(4));
        let green: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                rt.spawn(move || b.wait().is_leader())
            })
            .collect();
        let os: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || b.wait().is_leader())
            })
            .collect();
        let mut leaders = 0;
        for h in green {
            leaders += h.join().unwrap() as usize;
        }
        for h in os {
            leaders += h.join().unwrap() as usize;
        }
        assert_eq!(leaders, 1);
    });
}

#[test]
fn zero_or_one_never_waits_and_debug() {
    for n in [0, 1] {
        let b = Barrier::new(n);
        assert!(b.wait().is_leader());
        assert!(b.wait().is_leader());
    }
    let b = Barrier::new(2);
    assert_eq!(format!("{b:?}"), "Barrier { .. }");
    assert_eq!(
        format!("{:?}", Barrier::new(1).wait()),
        "BarrierWaitResult { is_leader: true }"
    );
}
