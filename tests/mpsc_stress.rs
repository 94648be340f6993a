//! greenrt::sync::mpsc: lost-wake-up stress (ping-pong between green
//! threads and OS threads, many producers).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{block_on, guarded, runtime, spin_for};
use greenrt::sync::mpsc::{self, channel, sync_channel, Receiver};

// ---------------------------------------------------------------------------
// Lost-wake-up stress

/// `rounds` round trips between two green threads over two rendezvous
/// channels. With `noise`, each side also yields after sending and two
/// busy green threads compete for the workers, so the pair is now and then
/// stolen apart. Returns how many rounds each side ran on a different OS
/// thread than the round before (for information).
fn rendezvous_ping_pong(rounds: u64, noise: bool) -> (u64, u64) {
    let (ping_tx, ping_rx) = sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = sync_channel::<u64>(0);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..if noise { 2 } else { 0 })
        .map(|_| {
            let stop = stop.clone();
            greenrt::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    spin_for(Duration::from_micros(5));
                    greenrt::yield_now();
                }
            })
        })
        .collect();
    let ponger = greenrt::spawn(move || {
        let mut moves = 0;
        let mut last = std::thread::current().id();
        for v in ping_rx.iter() {
            pong_tx.send(v + 1).unwrap();
            if noise {
                greenrt::yield_now();
            }
            let now = std::thread::current().id();
            moves += u64::from(now != last);
            last = now;
        }
        moves
    });
    let pinger = greenrt::spawn(move || {
        let mut moves = 0;
        let mut last = std::thread::current().id();
        for i in 0..rounds {
            ping_tx.send(i * 2).unwrap();
            if noise {
                greenrt::yield_now();
            }
            assert_eq!(pong_rx.recv().unwrap(), i * 2 + 1, "round {i}");
            let now = std::thread::current().id();
            moves += u64::from(now != last);
            last = now;
        }
        moves
    });
    let a = pinger.join().unwrap();
    let b = ponger.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    (a, b)
}

#[test]
fn ping_pong_100k_rendezvous_one_worker() {
    block_on(1, || rendezvous_ping_pong(100_000, false));
}

#[test]
fn ping_pong_100k_rendezvous_two_workers() {
    let (a, b) = block_on(2, || rendezvous_ping_pong(100_000, true));
    eprintln!("ping-pong sides moved between workers {a} and {b} times");
}

#[test]
fn ping_pong_100k_between_green_threads_of_two_single_worker_runtimes() {
    // The two sides are certain to run on different OS threads: every
    // wake-up crosses to the other runtime's worker, which is usually
    // asleep and has to be woken.
    guarded(|| {
        let a = runtime(1);
        let b = runtime(1);
        let (ping_tx, ping_rx) = sync_channel::<u64>(0);
        let (pong_tx, pong_rx) = sync_channel::<u64>(0);
        let ponger = b.spawn(move || {
            let tid = std::thread::current().id();
            for v in ping_rx.iter() {
                pong_tx.send(v + 1).unwrap();
            }
            tid
        });
        let pinger = a.spawn(move || {
            let tid = std::thread::current().id();
            for i in 0..100_000u64 {
                ping_tx.send(i).unwrap();
                assert_eq!(pong_rx.recv().unwrap(), i + 1, "round {i}");
            }
            tid
        });
        let ta = pinger.join().unwrap();
        let tb = ponger.join().unwrap();
        assert_ne!(ta, tb);
    });
}

fn unbounded_ping_pong(rounds: u64) {
    let (ping_tx, ping_rx) = channel::<u64>();
    let (pong_tx, pong_rx) = channel::<u64>();
    let ponger = greenrt::spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v ^ 0xff).unwrap();
        }
    });
    for i in 0..rounds {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i ^ 0xff);
    }
    drop(ping_tx);
    ponger.join().unwrap();
}

#[test]
fn ping_pong_100k_unbounded_one_and_two_workers() {
    for workers in [1, 2] {
        block_on(workers, || unbounded_ping_pong(100_000));
    }
}

#[test]
fn ping_pong_between_a_green_thread_and_an_os_thread() {
    guarded(|| {
        let rt = runtime(2);
        let (to_green, from_os) = channel::<u64>();
        let (to_os, from_green) = sync_channel::<u64>(0);
        let green = rt.spawn(move || {
            for v in from_os.iter() {
                to_os.send(v * 3).unwrap();
            }
        });
        for i in 0..20_000u64 {
            to_green.send(i).unwrap();
            assert_eq!(from_green.recv().unwrap(), i * 3);
        }
        drop(to_green);
        green.join().unwrap();
    });
}

/// `producers` green threads each send `per` messages `(p, seq)` into one
/// receiver. Checks the total and each producer's FIFO order.
fn many_producers(producers: u64, per: u64, bound: Option<usize>) {
    enum Tx {
        Unbounded(mpsc::Sender<(u64, u64)>),
        Bounded(mpsc::SyncSender<(u64, u64)>),
    }
    let (tx, rx): (Tx, Receiver<(u64, u64)>) = match bound {
        None => {
            let (tx, rx) = channel();
            (Tx::Unbounded(tx), rx)
        }
        Some(n) => {
            let (tx, rx) = sync_channel(n);
            (Tx::Bounded(tx), rx)
        }
    };
    let hs: Vec<_> = (0..producers)
        .map(|p| {
            let tx = match &tx {
                Tx::Unbounded(t) => Tx::Unbounded(t.clone()),
                Tx::Bounded(t) => Tx::Bounded(t.clone()),
            };
            greenrt::spawn(move || {
                for seq in 0..per {
                    match &tx {
                        Tx::Unbounded(t) => t.send((p, seq)).unwrap(),
                        Tx::Bounded(t) => t.send((p, seq)).unwrap(),
                    }
                    if seq % 1000 == 999 {
                        greenrt::yield_now();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut next = vec![0u64; producers as usize];
    let mut count = 0u64;
    let mut sum = 0u64;
    for (p, seq) in rx.iter() {
        assert_eq!(
            seq, next[p as usize],
            "producer {p}'s messages arrived out of order"
        );
        next[p as usize] += 1;
        count += 1;
        sum += p * per + seq;
    }
    for h in hs {
        h.join().unwrap();
    }
    let n = producers * per;
    assert_eq!(count, n, "lost or duplicated messages");
    assert_eq!(sum, n * (n - 1) / 2);
}

#[test]
fn many_producers_unbounded_one_worker() {
    block_on(1, || many_producers(64, 10_000, None));
}

#[test]
fn many_producers_unbounded_two_workers() {
    block_on(2, || many_producers(64, 10_000, None));
}

#[test]
fn many_producers_bounded_one_worker() {
    block_on(1, || many_producers(64, 2_000, Some(8)));
}

#[test]
fn many_producers_bounded_two_workers() {
    block_on(2, || many_producers(64, 2_000, Some(8)));
}

#[test]
fn many_producers_rendezvous_two_workers() {
    block_on(2, || many_producers(16, 1_000, Some(0)));
}

#[test]
fn producers_on_os_threads_and_green_threads_into_one_green_receiver() {
    guarded(|| {
        let rt = runtime(2);
        let (tx, rx) = sync_channel::<u64>(4);
        let os: Vec<_> = (0..4u64)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        tx.send(t * 100_000 + i).unwrap();
                    }
                })
            })
            .collect();
        let green: Vec<_> = (4..8u64)
            .map(|t| {
                let tx = tx.clone();
                rt.spawn(move || {
                    for i in 0..5000 {
                        tx.send(t * 100_000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let sum = rt.block_on(move || rx.iter().sum::<u64>());
        let expected: u64 = (0..8u64)
            .map(|t| (0..5000u64).map(|i| t * 100_000 + i).sum::<u64>())
            .sum();
        assert_eq!(sum, expected);
        for t in os {
            t.join().unwrap();
        }
        for g in green {
            g.join().unwrap();
        }
    });
}
