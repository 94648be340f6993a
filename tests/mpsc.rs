//! greenrt::sync::mpsc: std's channel semantics, between green threads,
//! OS threads and both, and a send racing with the receiver's park (the
//! ping-pong and many-producer stress is in mpsc_stress.rs).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{block_on, guarded, runtime};
use greenrt::sync::mpsc::{
    channel, sync_channel, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
};

// ---------------------------------------------------------------------------
// Semantics

#[test]
fn send_fails_with_the_value_once_the_receiver_is_gone() {
    block_on(1, || {
        let (tx, rx) = channel::<String>();
        drop(rx);
        assert_eq!(
            tx.send("lost".to_string()),
            Err(SendError("lost".to_string()))
        );

        let (tx, rx) = sync_channel::<u32>(3);
        drop(rx);
        assert_eq!(tx.send(5), Err(SendError(5)));
        assert_eq!(tx.try_send(6), Err(TrySendError::Disconnected(6)));
    });
}

#[test]
fn recv_drains_then_reports_disconnection() {
    block_on(1, || {
        let (tx, rx) = channel::<u32>();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        drop(tx2);
        // Buffered messages still arrive after the last sender is gone.
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
}

#[test]
fn try_recv_is_empty_while_senders_live() {
    block_on(1, || {
        let (tx, rx) = channel::<u32>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

        let (tx, rx) = sync_channel::<u32>(0);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn recv_timeout_times_out_on_green_and_os_threads() {
    let green = block_on(2, || {
        let (_tx, rx) = channel::<u32>();
        let start = Instant::now();
        let r = rx.recv_timeout(Duration::from_millis(100));
        (r, start.elapsed())
    });
    assert_eq!(green.0, Err(RecvTimeoutError::Timeout));
    assert!(
        green.1 >= Duration::from_millis(100),
        "returned early after {:?}",
        green.1
    );
    assert!(green.1 < Duration::from_secs(10), "took {:?}", green.1);

    let (_tx, rx) = sync_channel::<u32>(1);
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(RecvTimeoutError::Timeout)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(10),
        "took {took:?}"
    );
}

#[test]
fn recv_timeout_gets_a_message_sent_before_the_deadline() {
    let (v, took) = block_on(2, || {
        let (tx, rx) = channel::<u32>();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(50));
            tx.send(77).unwrap();
            // Keep the sender alive a little: the receiver must not rely
            // on disconnection to wake up.
            greenrt::sleep(Duration::from_millis(200));
        });
        let start = Instant::now();
        let v = rx.recv_timeout(Duration::from_secs(30));
        (v, start.elapsed())
    });
    assert_eq!(v, Ok(77));
    assert!(
        took < Duration::from_secs(10),
        "the message took {took:?} to arrive"
    );
}

#[test]
fn recv_timeout_timer_does_not_disturb_later_waits() {
    // A timed-out recv leaves a stale timer behind; the next recv must
    // still wait for its message (and not return a bogus Timeout).
    block_on(1, || {
        let (tx, rx) = channel::<u32>();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        let h = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(60));
            tx.send(1).unwrap();
            greenrt::sleep(Duration::from_millis(60));
            tx.send(2).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(2));
        h.join().unwrap();
    });
}

#[test]
fn rendezvous_send_blocks_until_the_message_is_received() {
    block_on(2, || {
        let (tx, rx) = sync_channel::<u32>(0);
        let receiving = Arc::new(AtomicBool::new(false));
        let r2 = receiving.clone();
        let sender = greenrt::spawn(move || {
            let start = Instant::now();
            tx.send(9).unwrap();
            (r2.load(Ordering::SeqCst), start.elapsed())
        });
        greenrt::sleep(Duration::from_millis(150));
        receiving.store(true, Ordering::SeqCst);
        assert_eq!(rx.recv(), Ok(9));
        let (saw_receiver, blocked_for) = sender.join().unwrap();
        assert!(
            saw_receiver,
            "rendezvous send returned before the receiver took the message"
        );
        assert!(
            blocked_for >= Duration::from_millis(100),
            "send blocked only {blocked_for:?}"
        );
    });
}

#[test]
fn rendezvous_send_returns_disconnected_if_the_receiver_leaves() {
    block_on(2, || {
        let (tx, rx) = sync_channel::<String>(0);
        let sender = greenrt::spawn(move || tx.send("never taken".to_string()));
        greenrt::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(
            sender.join().unwrap(),
            Err(SendError("never taken".to_string()))
        );
    });
}

#[test]
fn rendezvous_try_send_is_full_without_a_waiting_receiver() {
    // std: "try_send ... returns immediately if the channel's buffer is
    // full or no receiver is waiting to acquire some data"; with bound 0
    // that is every time no receiver is blocked in recv.
    block_on(1, || {
        let (tx, rx) = sync_channel::<u32>(0);
        assert_eq!(
            tx.try_send(1),
            Err(TrySendError::Full(1)),
            "nobody is receiving"
        );
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "a rendezvous channel buffers nothing"
        );
        drop(rx);
    });
}

#[test]
fn rendezvous_try_send_succeeds_when_a_receiver_waits() {
    block_on(1, || {
        let (tx, rx) = sync_channel::<u32>(0);
        let receiver = greenrt::spawn(move || rx.recv());
        // One worker: the receiver runs (and blocks in recv) while we sleep.
        greenrt::sleep(Duration::from_millis(50));
        assert_eq!(tx.try_send(4), Ok(()));
        assert_eq!(receiver.join().unwrap(), Ok(4));
    });
}

#[test]
fn sync_channel_try_send_reports_full() {
    block_on(1, || {
        let (tx, rx) = sync_channel::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(tx.try_send(4), Err(TrySendError::Full(4)));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![2, 3]);
        drop(rx);
        assert_eq!(tx.try_send(5), Err(TrySendError::Disconnected(5)));
    });
}

#[test]
fn sync_channel_send_blocks_while_full() {
    block_on(2, || {
        let (tx, rx) = sync_channel::<u32>(1);
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        let sender = greenrt::spawn(move || {
            for i in 0..3 {
                tx.send(i).unwrap();
                s2.fetch_add(1, Ordering::SeqCst);
            }
        });
        greenrt::sleep(Duration::from_millis(100));
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "only one message fits in a bound-1 channel"
        );
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        sender.join().unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn blocked_sync_sender_is_released_when_the_receiver_drops() {
    block_on(2, || {
        let (tx, rx) = sync_channel::<u32>(1);
        tx.send(1).unwrap();
        let sender = greenrt::spawn(move || tx.send(2));
        greenrt::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "send into a full channel must block");
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(SendError(2)));
    });
}

#[test]
fn blocked_receiver_is_released_when_the_last_sender_drops() {
    block_on(2, || {
        let (tx, rx) = channel::<u32>();
        let tx2 = tx.clone();
        let receiver = greenrt::spawn(move || rx.recv());
        greenrt::sleep(Duration::from_millis(30));
        drop(tx);
        greenrt::sleep(Duration::from_millis(30));
        assert!(!receiver.is_finished(), "one sender is still alive");
        let dropper = greenrt::spawn(move || drop(tx2));
        dropper.join().unwrap();
        assert_eq!(receiver.join().unwrap(), Err(RecvError));
    });
}

#[test]
fn iteration_ends_when_all_senders_are_dropped() {
    block_on(2, || {
        let (tx, rx) = channel::<u32>();
        for k in 0..10u32 {
            let tx = tx.clone();
            greenrt::spawn(move || {
                for j in 0..10 {
                    tx.send(k * 10 + j).unwrap();
                    greenrt::yield_now();
                }
            });
        }
        drop(tx);
        let mut got: Vec<u32> = rx.iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());

        // The owning iterator, over a sync channel.
        let (tx, rx) = sync_channel::<u32>(2);
        greenrt::spawn(move || {
            for i in 0..20 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = rx.into_iter().collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());

        // `for x in &rx`.
        let (tx, rx) = channel::<u32>();
        greenrt::spawn(move || (0..5).for_each(|i| tx.send(i).unwrap()));
        let mut n = 0;
        for x in &rx {
            assert_eq!(x, n);
            n += 1;
        }
        assert_eq!(n, 5);
    });
}

#[test]
fn try_iter_returns_only_ready_messages_without_blocking() {
    block_on(1, || {
        let (tx, rx) = channel::<u32>();
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        // Senders alive, nothing ready: returns at once.
        let start = Instant::now();
        assert_eq!(rx.try_iter().count(), 0);
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(tx);
    });
}

#[test]
fn channels_work_between_os_and_green_threads_both_ways() {
    guarded(|| {
        let rt = runtime(2);
        // OS thread -> green thread, with the green receiver blocking first.
        let (tx, rx) = channel::<u64>();
        let green_rx = rt.spawn(move || rx.iter().sum::<u64>());
        std::thread::sleep(Duration::from_millis(30));
        for i in 0..10_000 {
            tx.send(i).unwrap();
        }
        drop(tx);
        assert_eq!(green_rx.join().unwrap(), (0..10_000u64).sum::<u64>());

        // Green thread -> OS thread, with the OS receiver blocking first.
        let (tx, rx) = sync_channel::<u64>(0);
        let green_tx = rt.spawn(move || {
            greenrt::sleep(Duration::from_millis(30));
            for i in 0..10_000 {
                tx.send(i).unwrap();
            }
        });
        assert_eq!(rx.iter().sum::<u64>(), (0..10_000u64).sum::<u64>());
        green_tx.join().unwrap();

        // Plain OS threads only: the channel needs no runtime.
        let (tx, rx) = sync_channel::<u32>(0);
        let t = std::thread::spawn(move || (0..100).for_each(|i| tx.send(i).unwrap()));
        assert_eq!(rx.iter().count(), 100);
        t.join().unwrap();
    });
}

#[test]
fn buffered_messages_are_dropped_with_the_receiver() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    block_on(1, move || {
        let (tx, rx) = channel::<Counted>();
        for _ in 0..5 {
            tx.send(Counted(d.clone())).unwrap();
        }
        drop(rx);
        assert_eq!(
            d.load(Ordering::SeqCst),
            5,
            "messages still buffered after the receiver is gone"
        );
        match tx.send(Counted(d.clone())) {
            Err(SendError(c)) => drop(c),
            Ok(()) => panic!("send succeeded without a receiver"),
        }
    });
    assert_eq!(drops.load(Ordering::SeqCst), 6);
}

#[test]
fn receiver_can_move_between_green_threads() {
    let log = block_on(2, || {
        let (tx, rx) = channel::<u32>();
        let log = Arc::new(StdMutex::new(Vec::new()));
        tx.send(1).unwrap();
        let l1 = log.clone();
        let rx = greenrt::spawn(move || {
            l1.lock().unwrap().push(rx.recv().unwrap());
            rx
        })
        .join()
        .unwrap();
        let l2 = log.clone();
        let h = greenrt::spawn(move || l2.lock().unwrap().push(rx.recv().unwrap()));
        greenrt::sleep(Duration::from_millis(20));
        tx.send(2).unwrap();
        h.join().unwrap();
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(log, vec![1, 2]);
}

#[test]
fn huge_timeouts_behave_like_untimed_waits() {
    block_on(2, || {
        let (tx, rx) = channel::<u32>();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(20));
            tx.send(8).unwrap();
            greenrt::sleep(Duration::from_millis(20));
        });
        assert_eq!(rx.recv_timeout(Duration::MAX), Ok(8));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(u64::MAX / 2)),
            Err(RecvTimeoutError::Disconnected)
        );

        let pair = Arc::new((
            greenrt::sync::Mutex::new(false),
            greenrt::sync::Condvar::new(),
        ));
        let p2 = pair.clone();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(20));
            *p2.0.lock().unwrap() = true;
            p2.1.notify_all();
        });
        let (m, cv) = &*pair;
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::MAX, |ready| !*ready)
            .unwrap();
        assert!(*g && !r.timed_out());
    });
}

#[test]
fn send_racing_with_the_receivers_park_is_not_lost() {
    // An OS thread sends the next message the instant the green receiver
    // acknowledges the previous one, i.e. while the receiver is on its
    // way to park in recv: the wake-up must not be lost in that window.
    const ROUNDS: u64 = 100_000;
    guarded(|| {
        let rt = runtime(1);
        let (tx, rx) = channel::<u64>();
        let ack = Arc::new(AtomicUsize::new(usize::MAX));
        let a2 = ack.clone();
        let green = rt.spawn(move || {
            for i in 0..ROUNDS {
                assert_eq!(rx.recv().unwrap(), i);
                a2.store(i as usize, Ordering::SeqCst);
            }
        });
        for i in 0..ROUNDS {
            tx.send(i).unwrap();
            while ack.load(Ordering::SeqCst) != i as usize {
                std::hint::spin_loop();
            }
        }
        green.join().unwrap();
    });
}
