//! The workloads where tasks wait for each other: `ping_pong`,
//! `ping_pong_sustained`, `ping_pong_sustained_unbounded` and
//! `mutex_handoff` (see the bench's module doc).

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::Workload;

const NUM_PINGS: usize = 1_000;

// tokio's original spawns the root from `block_on` and blocks there on
// `done_rx`; spawning it with `rt.spawn` is the same for both runtimes.
pub const PING_PONG: Workload = Workload {
    name: "ping_pong",
    label: "ping_pong (1 000 pairs × 1 round trip)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        use greenrt::sync::mpsc::sync_channel;

        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(NUM_PINGS));
        rt.spawn(move || {
            for _ in 0..NUM_PINGS {
                let (done_tx, rem) = (done_tx.clone(), rem.clone());
                greenrt::spawn(move || {
                    let (tx1, rx1) = sync_channel(1);
                    let (tx2, rx2) = sync_channel(1);
                    greenrt::spawn(move || {
                        rx1.recv().unwrap();
                        tx2.send(()).unwrap();
                    });
                    tx1.send(()).unwrap();
                    rx2.recv().unwrap();
                    if rem.fetch_sub(1, Relaxed) == 1 {
                        done_tx.send(()).unwrap();
                    }
                });
            }
        });
        done_rx.recv().unwrap();
    },
    tokio: |rt| {
        use tokio::sync::oneshot;

        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(NUM_PINGS));
        rt.spawn(async move {
            for _ in 0..NUM_PINGS {
                let (done_tx, rem) = (done_tx.clone(), rem.clone());
                tokio::spawn(async move {
                    let (tx1, rx1) = oneshot::channel();
                    let (tx2, rx2) = oneshot::channel();
                    tokio::spawn(async move {
                        rx1.await.unwrap();
                        tx2.send(()).unwrap();
                    });
                    tx1.send(()).unwrap();
                    rx2.await.unwrap();
                    if rem.fetch_sub(1, Relaxed) == 1 {
                        done_tx.send(()).unwrap();
                    }
                });
            }
        });
        done_rx.recv().unwrap();
    },
};

/// Pairs in the sustained workloads, each doing [`ROUNDS`] round trips.
const PAIRS: usize = 1_000;
const ROUNDS: u64 = 100;

/// Runs `pair` as [`PAIRS`] green threads spawned from the bench thread
/// and waits for all of them (each sends one `()` when done).
fn greenrt_pairs(rt: &greenrt::Runtime, pair: fn(mpsc::SyncSender<()>)) {
    let (done_tx, done_rx) = mpsc::sync_channel(PAIRS);
    for _ in 0..PAIRS {
        let done_tx = done_tx.clone();
        rt.spawn(move || pair(done_tx));
    }
    for _ in 0..PAIRS {
        done_rx.recv().unwrap();
    }
}

/// [`greenrt_pairs`] for tokio: `pair` is each pair's first task.
fn tokio_pairs<F: std::future::Future<Output = ()> + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    pair: fn(mpsc::SyncSender<()>) -> F,
) {
    let (done_tx, done_rx) = mpsc::sync_channel(PAIRS);
    for _ in 0..PAIRS {
        rt.spawn(pair(done_tx.clone()));
    }
    for _ in 0..PAIRS {
        done_rx.recv().unwrap();
    }
}

pub const PING_PONG_SUSTAINED: Workload = Workload {
    name: "ping_pong_sustained",
    label: "ping_pong_sustained (1 000 pairs × 100, bounded(1))",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        greenrt_pairs(rt, |done_tx| {
            use greenrt::sync::mpsc::sync_channel;

            let (tx1, rx1) = sync_channel::<u64>(1);
            let (tx2, rx2) = sync_channel::<u64>(1);
            greenrt::spawn(move || {
                for x in rx1.iter() {
                    if tx2.send(x + 1).is_err() {
                        break;
                    }
                }
            });
            for i in 0..ROUNDS {
                tx1.send(i).unwrap();
                assert_eq!(rx2.recv().unwrap(), i + 1);
            }
            done_tx.send(()).unwrap();
        })
    },
    tokio: |rt| {
        tokio_pairs(rt, |done_tx| async move {
            use tokio::sync::mpsc::channel;

            let (tx1, mut rx1) = channel::<u64>(1);
            let (tx2, mut rx2) = channel::<u64>(1);
            tokio::spawn(async move {
                while let Some(x) = rx1.recv().await {
                    if tx2.send(x + 1).await.is_err() {
                        break;
                    }
                }
            });
            for i in 0..ROUNDS {
                tx1.send(i).await.unwrap();
                assert_eq!(rx2.recv().await.unwrap(), i + 1);
            }
            done_tx.send(()).unwrap();
        })
    },
};

pub const PING_PONG_SUSTAINED_UNBOUNDED: Workload = Workload {
    name: "ping_pong_sustained_unbounded",
    label: "ping_pong_sustained_unbounded (1 000 pairs × 100)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        greenrt_pairs(rt, |done_tx| {
            use greenrt::sync::mpsc::channel;

            let (tx1, rx1) = channel::<u64>();
            let (tx2, rx2) = channel::<u64>();
            greenrt::spawn(move || {
                for x in rx1.iter() {
                    if tx2.send(x + 1).is_err() {
                        break;
                    }
                }
            });
            for i in 0..ROUNDS {
                tx1.send(i).unwrap();
                assert_eq!(rx2.recv().unwrap(), i + 1);
            }
            done_tx.send(()).unwrap();
        })
    },
    tokio: |rt| {
        tokio_pairs(rt, |done_tx| async move {
            use tokio::sync::mpsc::unbounded_channel;

            let (tx1, mut rx1) = unbounded_channel::<u64>();
            let (tx2, mut rx2) = unbounded_channel::<u64>();
            tokio::spawn(async move {
                while let Some(x) = rx1.recv().await {
                    if tx2.send(x + 1).is_err() {
                        break;
                    }
                }
            });
            for i in 0..ROUNDS {
                tx1.send(i).unwrap();
                assert_eq!(rx2.recv().await.unwrap(), i + 1);
            }
            done_tx.send(()).unwrap();
        })
    },
};

/// A pair's shared state in `mutex_handoff`: whose turn it is and how
/// many turns have been taken.
struct Turns {
    first: bool,
    taken: u64,
}

const FIRST: bool = true;
const SECOND: bool = false;

/// Takes [`ROUNDS`] turns as `me`: waits for the turn, counts it and hands
/// it over, notifying with the lock held (the textbook condition-variable
/// loop; the lock is released only while waiting). The first side then
/// waits for the turn to come back once more, so it returns after the
/// last of the pair's 2 × [`ROUNDS`] turns.
fn greenrt_turns(pair: &(greenrt::sync::Mutex<Turns>, greenrt::sync::Condvar), me: bool) {
    let (lock, cond) = pair;
    let mut turns = lock.lock().unwrap();
    for _ in 0..ROUNDS {
        turns = cond.wait_while(turns, |t| t.first != me).unwrap();
        turns.taken += 1;
        turns.first = !me;
        cond.notify_one();
    }
    if me == FIRST {
        turns = cond.wait_while(turns, |t| t.first != me).unwrap();
        assert_eq!(turns.taken, 2 * ROUNDS);
    }
}

/// [`greenrt_turns`] with tokio's mutex and a `Notify` as the condition:
/// the `Notified` is created before the lock is released, and
/// `notify_waiters` wakes every `Notified` created before it and stores no
/// permit, so it acts as a condition variable's notify (with at most one
/// waiter, `notify_one`'s).
async fn tokio_turns(pair: &(tokio::sync::Mutex<Turns>, tokio::sync::Notify), me: bool) {
    async fn wait_turn<'a>(
        (lock, cond): &'a (tokio::sync::Mutex<Turns>, tokio::sync::Notify),
        mut turns: tokio::sync::MutexGuard<'a, Turns>,
        me: bool,
    ) -> tokio::sync::MutexGuard<'a, Turns> {
        while turns.first != me {
            let notified = cond.notified();
            drop(turns);
            notified.await;
            turns = lock.lock().await;
        }
        turns
    }

    let mut turns = pair.0.lock().await;
    for _ in 0..ROUNDS {
        turns = wait_turn(pair, turns, me).await;
        turns.taken += 1;
        turns.first = !me;
        pair.1.notify_waiters();
    }
    if me == FIRST {
        turns = wait_turn(pair, turns, me).await;
        assert_eq!(turns.taken, 2 * ROUNDS);
    }
}

pub const MUTEX_HANDOFF: Workload = Workload {
    name: "mutex_handoff",
    label: "mutex_handoff (1 000 pairs × 100)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        greenrt_pairs(rt, |done_tx| {
            use greenrt::sync::{Condvar, Mutex};

            let turns = Turns {
                first: FIRST,
                taken: 0,
            };
            let pair = Arc::new((Mutex::new(turns), Condvar::new()));
            let second = pair.clone();
            greenrt::spawn(move || greenrt_turns(&second, SECOND));
            greenrt_turns(&pair, FIRST);
            done_tx.send(()).unwrap();
        })
    },
    tokio: |rt| {
        tokio_pairs(rt, |done_tx| async move {
            use tokio::sync::{Mutex, Notify};

            let turns = Turns {
                first: FIRST,
                taken: 0,
            };
            let pair = Arc::new((Mutex::new(turns), Notify::new()));
            let second = pair.clone();
            tokio::spawn(async move { tokio_turns(&second, SECOND).await });
            tokio_turns(&pair, FIRST).await;
            done_tx.send(()).unwrap();
        })
    },
};
