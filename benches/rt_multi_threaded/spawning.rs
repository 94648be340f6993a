//! The spawning and yielding workloads: `spawn_many`, `yield_many`,
//! `chained_spawn` and `skynet` (see the bench's module doc).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::Workload;

const NUM_SPAWN: usize = 10_000;

pub const SPAWN_MANY: Workload = Workload {
    name: "spawn_many",
    label: "spawn_many (10 000 spawns)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(NUM_SPAWN));
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
    tokio: |rt| {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(NUM_SPAWN));
        rt.block_on(async move {
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
};

const NUM_YIELD: usize = 1_000;
const YIELDERS: usize = 200;

pub const YIELD_MANY: Workload = Workload {
    name: "yield_many",
    label: "yield_many (200 × 1 000 yields)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        let (tx, rx) = mpsc::sync_channel(YIELDERS);
        for _ in 0..YIELDERS {
            let tx = tx.clone();
            rt.spawn(move || {
                for _ in 0..NUM_YIELD {
                    greenrt::yield_now();
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..YIELDERS {
            rx.recv().unwrap();
        }
    },
    tokio: |rt| {
        let (tx, rx) = mpsc::sync_channel(YIELDERS);
        for _ in 0..YIELDERS {
            let tx = tx.clone();
            rt.spawn(async move {
                for _ in 0..NUM_YIELD {
                    tokio::task::yield_now().await;
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..YIELDERS {
            rx.recv().unwrap();
        }
    },
};

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

// tokio's original spawns the root from `block_on` and blocks there on
// `done_rx`; spawning it with `rt.spawn` is the same for both runtimes.
pub const CHAINED_SPAWN: Workload = Workload {
    name: "chained_spawn",
    label: "chained_spawn (depth 1 000)",
    measurement: Duration::from_secs(2),
    greenrt: |rt| {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        rt.spawn(move || greenrt_chain(done_tx, DEPTH));
        done_rx.recv().unwrap();
    },
    tokio: |rt| {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        rt.spawn(async move { tokio_chain(done_tx, DEPTH) });
        done_rx.recv().unwrap();
    },
};

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

pub const SKYNET: Workload = Workload {
    name: "skynet",
    label: "skynet (1 000 000 tasks, fan-out 10)",
    // 10 samples of one iteration of tokio's (about 1 s each; criterion
    // warns when its measurement time is too short for them).
    measurement: Duration::from_secs(12),
    greenrt: |rt| assert_eq!(rt.block_on(|| greenrt_skynet(0, LEAVES)), EXPECTED),
    tokio: |rt| assert_eq!(rt.block_on(tokio_skynet(0, LEAVES)), EXPECTED),
};
