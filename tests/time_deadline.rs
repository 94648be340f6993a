//! Deadlines and timed joins: `greenrt::sleep_until`,
//! `Receiver::recv_deadline`, `JoinHandle::join_timeout`. Time bounds are
//! lower bounds (never early) or generous caps.

mod common;

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::{block_on, expect_panic, guarded, panic_text, runtime};
use greenrt::sync::mpsc;

#[test]
fn sleep_until_wakes_no_earlier_than_the_deadline() {
    block_on(2, || {
        let deadline = Instant::now() + Duration::from_millis(30);
        greenrt::sleep_until(deadline);
        assert!(Instant::now() >= deadline);
        // A past deadline returns at once.
        let start = Instant::now();
        greenrt::sleep_until(start - Duration::from_millis(5));
        assert!(start.elapsed() < Duration::from_secs(1));
    });
}

#[test]
fn sleep_until_parks_only_the_green_thread() {
    block_on(1, || {
        let deadline = Instant::now() + Duration::from_millis(50);
        let sleeper = greenrt::spawn(move || greenrt::sleep_until(deadline));
        // The only worker is free while the sleeper waits.
        let ran_at = greenrt::spawn(Instant::now).join().unwrap();
        assert!(ran_at < deadline, "the sleeper blocked the worker");
        sleeper.join().unwrap();
        assert!(Instant::now() >= deadline);
    });
}

#[test]
fn sleep_until_outside_a_green_thread_panics_like_sleep() {
    let msg = expect_panic("sleep_until on a plain thread", || {
        greenrt::sleep_until(Instant::now())
    });
    assert!(msg.contains("called outside a green thread"), "{msg}");
}

#[test]
fn recv_deadline_times_out_receives_and_disconnects() {
    block_on(2, || {
        let (tx, rx) = mpsc::channel::<u32>();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(rx.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
        assert!(Instant::now() >= deadline);
        // A ready message is taken even with a past deadline.
        tx.send(1).unwrap();
        assert_eq!(
            rx.recv_deadline(Instant::now() - Duration::from_secs(1)),
            Ok(1)
        );
        // A message that arrives before the deadline.
        let tx2 = tx.clone();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(10));
            tx2.send(2).unwrap();
        });
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(rx.recv_deadline(far), Ok(2));
        drop(tx);
        assert_eq!(rx.recv_deadline(far), Err(RecvTimeoutError::Disconnected));
    });
}

#[test]
fn recv_deadline_on_an_os_thread() {
    guarded(|| {
        let rt = runtime(1);
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(rx.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
        assert!(Instant::now() >= deadline);
        rt.spawn(move || {
            greenrt::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        assert_eq!(
            rx.recv_deadline(Instant::now() + Duration::from_secs(60)),
            Ok(7)
        );
    });
}

#[test]
fn join_timeout_gives_the_handle_back_until_the_green_thread_finishes() {
    block_on(2, || {
        let h = greenrt::spawn(|| {
            greenrt::sleep(Duration::from_millis(50));
            5
        });
        let start = Instant::now();
        let h = h
            .join_timeout(Duration::from_millis(10))
            .expect_err("finished too early");
        assert!(start.elapsed() >= Duration::from_millis(10));
        // Again (the first wait's registration must be taken back cleanly).
        let h = h.join_timeout(Duration::from_millis(1)).unwrap_err();
        assert_eq!(h.join_timeout(Duration::from_secs(60)).unwrap().unwrap(), 5);

        // Already finished: Ok at once, even with a zero timeout.
        let h = greenrt::spawn(|| 6);
        while !h.is_finished() {
            greenrt::yield_now();
        }
        assert_eq!(h.join_timeout(Duration::ZERO).unwrap().unwrap(), 6);

        // A panic comes back as Ok(Err(payload)).
        let h = greenrt::spawn(|| -> u8 { panic!("joined with a timeout") });
        let payload = h
            .join_timeout(Duration::from_secs(60))
            .unwrap()
            .unwrap_err();
        assert_eq!(panic_text(&*payload), "joined with a timeout");

        // A timed-out wait followed by a plain join.
        let h = greenrt::spawn(|| greenrt::sleep(Duration::from_millis(20)));
        let h = h.join_timeout(Duration::from_millis(1)).unwrap_err();
        h.join().unwrap();
    });
}

#[test]
fn join_timeout_from_an_os_thread() {
    guarded(|| {
        let rt = runtime(1);
        let h = rt.spawn(|| {
            greenrt::sleep(Duration::from_millis(40));
            "done"
        });
        let h = h.join_timeout(Duration::from_millis(5)).unwrap_err();
        assert_eq!(
            h.join_timeout(Duration::from_secs(60)).unwrap().unwrap(),
            "done"
        );
    });
}

#[test]
fn join_timeouts_racing_the_finish_never_lose_a_result() {
    block_on(2, || {
        for i in 0..300u32 {
            let mut h = greenrt::spawn(move || {
                if i % 3 == 0 {
                    greenrt::yield_now();
                }
                i
            });
            let v = loop {
                match h.join_timeout(Duration::from_micros(u64::from(i % 7 + 1) * 20)) {
                    Ok(r) => break r.unwrap(),
                    Err(back) => h = back,
                }
            };
            assert_eq!(v, i);
        }
    });
}
