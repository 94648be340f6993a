//! greenrt versus tokio's multi-threaded runtime, side by side.
//!
//! A port of tokio's own `benches/rt_multi_threaded.rs` plus skynet. Each
//! workload is a criterion group with a `greenrt` and a `tokio` function
//! doing the same work with the same worker count ([`WORKERS`]):
//!
//! - `spawn_many`: `block_on` spawns 10 000 tasks; each decrements a
//!   counter and the last one signals the bench thread. (greenrt runs the
//!   `block_on` closure as a green thread on a worker; tokio polls the
//!   future on the bench thread, as in tokio's `spawn_many_local`.)
//! - `yield_many`: the bench thread spawns 200 tasks that each yield
//!   1 000 times, then signal it.
//! - `ping_pong`: 1 000 pairs of tasks exchange one message each way
//!   (tokio `oneshot`s, greenrt `sync_channel(1)`s); the last pair to
//!   finish signals the bench thread.
//! - `ping_pong_sustained`: 1 000 pairs exchange 100 messages each over
//!   two bounded channels of capacity 1 (greenrt `sync_channel(1)`, tokio
//!   `mpsc::channel(1)`), all spawned from the bench thread.
//! - `chained_spawn`: a chain of 1 000 tasks, each spawning the next; the
//!   last signals the bench thread.
//! - `skynet`: 1 000 000 leaf tasks in a tree of fan-out 10; each inner
//!   task spawns its 10 children and sums their results through their
//!   join handles (greenrt children get 16 KiB stacks).
//!
//! Signals to the bench thread go over a `std::sync::mpsc::sync_channel`
//! with spare capacity, so sending never blocks a worker. Each runtime is
//! built once per workload and dropped before the next one is built.
//!
//! Run with `cargo bench --bench rt_multi_threaded`, or one workload with
//! e.g. `cargo bench --bench rt_multi_threaded -- skynet`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// Worker threads of both runtimes.
const WORKERS: usize = 2;

fn greenrt_rt() -> greenrt::Runtime {
    greenrt::Builder::new().workers(WORKERS).build().unwrap()
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// Benchmarks one workload as group `name`: `greenrt_iter` and
/// `tokio_iter` each run one iteration on a runtime built once for it.
fn bench_pair(
    c: &mut Criterion,
    name: &str,
    measurement: Duration,
    mut greenrt_iter: impl FnMut(&greenrt::Runtime),
    mut tokio_iter: impl FnMut(&tokio::runtime::Runtime),
) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    {
        let rt = greenrt_rt();
        group.bench_function("greenrt", |b| b.iter(|| greenrt_iter(&rt)));
    }
    {
        let rt = tokio_rt();
        group.bench_function("tokio", |b| b.iter(|| tokio_iter(&rt)));
    }
    group.finish();
}

fn spawn_many(c: &mut Criterion) {
    const NUM_SPAWN: usize = 10_000;

    let (tx, rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    bench_pair(
        c,
        "spawn_many",
        Duration::from_secs(3),
        |rt| {
            rem.store(NUM_SPAWN, Relaxed);
            let (tx, rem) = (tx.clone(), rem.clone());
            rt.block_on(move || {
                for _ in 0..NUM_SPAWN {
                    let (tx, rem) = (tx.clone(), rem.clone());
                    greenrt::spawn(move || {
                        if rem.fetch_sub(1, Relaxed) == 1 {
                            tx.send(()).unwrap();
                        }
                    });
                }
            });
            rx.recv().unwrap();
        },
        |rt| {
            rem.store(NUM_SPAWN, Relaxed);
            rt.block_on(async {
                for _ in 0..NUM_SPAWN {
                    let (tx, rem) = (tx.clone(), rem.clone());
                    tokio::spawn(async move {
                        if rem.fetch_sub(1, Relaxed) == 1 {
                            tx.send(()).unwrap();
                        }
                    });
                }
            });
            rx.recv().unwrap();
        },
    );
}

fn yield_many(c: &mut Criterion) {
    const NUM_YIELD: usize = 1_000;
    const TASKS: usize = 200;

    let (tx, rx) = mpsc::sync_channel(TASKS);

    bench_pair(
        c,
        "yield_many",
        Duration::from_secs(3),
        |rt| {
            for _ in 0..TASKS {
                let tx = tx.clone();
                rt.spawn(move || {
                    for _ in 0..NUM_YIELD {
                        greenrt::yield_now();
                    }
                    tx.send(()).unwrap();
                });
            }
            for _ in 0..TASKS {
                rx.recv().unwrap();
            }
        },
        |rt| {
            for _ in 0..TASKS {
                let tx = tx.clone();
                rt.spawn(async move {
                    for _ in 0..NUM_YIELD {
                        tokio::task::yield_now().await;
                    }
                    tx.send(()).unwrap();
                });
            }
            for _ in 0..TASKS {
                rx.recv().unwrap();
            }
        },
    );
}

fn ping_pong(c: &mut Criterion) {
    const NUM_PINGS: usize = 1_000;

    let (done_tx, done_rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    // tokio's original spawns the root from `block_on` and blocks there on
    // `done_rx`; spawning it with `rt.spawn` is the same for both runtimes.
    bench_pair(
        c,
        "ping_pong",
        Duration::from_secs(3),
        |rt| {
            use greenrt::sync::mpsc::sync_channel;

            rem.store(NUM_PINGS, Relaxed);
            let (done_tx, rem) = (done_tx.clone(), rem.clone());
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
        |rt| {
            use tokio::sync::oneshot;

            rem.store(NUM_PINGS, Relaxed);
            let (done_tx, rem) = (done_tx.clone(), rem.clone());
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
    );
}

fn chained_spawn(c: &mut Criterion) {
    const DEPTH: usize = 1_000;

    fn greenrt_chain(done_tx: mpsc::SyncSender<()>, n: usize) {
        if n == 0 {
            done_tx.send(()).unwrap();
        } else {
            greenrt::spawn(move || greenrt_chain(done_tx, n - 1));
        }
    }

    fn tokio_chain(done_tx: mpsc::SyncSender<()>, n: usize) {
        if n == 0 {
            done_tx.send(()).unwrap();
        } else {
            tokio::spawn(async move { tokio_chain(done_tx, n - 1) });
        }
    }

    let (done_tx, done_rx) = mpsc::sync_channel(1000);

    // As in ping_pong, `rt.spawn` stands in for tokio's spawn from `block_on`.
    bench_pair(
        c,
        "chained_spawn",
        Duration::from_secs(3),
        |rt| {
            let done_tx = done_tx.clone();
            rt.spawn(move || greenrt_chain(done_tx, DEPTH));
            done_rx.recv().unwrap();
        },
        |rt| {
            let done_tx = done_tx.clone();
            rt.spawn(async move { tokio_chain(done_tx, DEPTH) });
            done_rx.recv().unwrap();
        },
    );
}

fn skynet(c: &mut Criterion) {
    const LEAVES: u64 = 1_000_000;
    const FAN_OUT: u64 = 10;
    /// Sum of 0..LEAVES.
    const EXPECTED: u64 = LEAVES * (LEAVES - 1) / 2;
    /// Stack size of greenrt's skynet tasks (the runtime's minimum).
    const STACK_SIZE: usize = 16 * 1024;

    fn greenrt_skynet(num: u64, size: u64) -> u64 {
        if size == 1 {
            return num;
        }
        let size = size / FAN_OUT;
        let children: Vec<_> = (0..FAN_OUT)
            .map(|i| {
                greenrt::task::Builder::new()
                    .stack_size(STACK_SIZE)
                    .spawn(move || greenrt_skynet(num + i * size, size))
                    .unwrap()
            })
            .collect();
        children.into_iter().map(|h| h.join().unwrap()).sum()
    }

    fn tokio_skynet(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
        Box::pin(async move {
            if size == 1 {
                return num;
            }
            let size = size / FAN_OUT;
            let children: Vec<_> = (0..FAN_OUT)
                .map(|i| tokio::spawn(tokio_skynet(num + i * size, size)))
                .collect();
            let mut sum = 0;
            for h in children {
                sum += h.await.unwrap();
            }
            sum
        })
    }

    bench_pair(
        c,
        "skynet",
        Duration::from_secs(15),
        |rt| assert_eq!(rt.block_on(|| greenrt_skynet(0, LEAVES)), EXPECTED),
        |rt| assert_eq!(rt.block_on(tokio_skynet(0, LEAVES)), EXPECTED),
    );
}

/// Issue 14's shape: 1 000 pairs, each exchanging `ROUNDS` messages over
/// two bounded channels of capacity 1 (greenrt `sync_channel(1)`, tokio
/// `mpsc::channel(1)`): sustained round trips, where `ping_pong` sends one
/// message per pair.
fn ping_pong_sustained(c: &mut Criterion) {
    const PAIRS: usize = 1_000;
    const ROUNDS: u64 = 100;

    let (done_tx, done_rx) = mpsc::sync_channel(PAIRS);
    bench_pair(
        c,
        "ping_pong_sustained",
        Duration::from_secs(5),
        |rt| {
            use greenrt::sync::mpsc::sync_channel;

            for _ in 0..PAIRS {
                let done_tx = done_tx.clone();
                rt.spawn(move || {
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
                });
            }
            for _ in 0..PAIRS {
                done_rx.recv().unwrap();
            }
        },
        |rt| {
            use tokio::sync::mpsc::channel;

            for _ in 0..PAIRS {
                let done_tx = done_tx.clone();
                rt.spawn(async move {
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
                });
            }
            for _ in 0..PAIRS {
                done_rx.recv().unwrap();
            }
        },
    );
}

criterion_group!(
    benches,
    spawn_many,
    yield_many,
    ping_pong,
    ping_pong_sustained,
    chained_spawn,
    skynet
);
criterion_main!(benches);
