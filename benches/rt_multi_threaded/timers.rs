//! The timer workload: `sleep_churn` (see the bench's module doc).

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::Workload;

const SLEEPERS: usize = 10_000;
const SLEEPS: usize = 10;
/// A whole tick of tokio's 1 ms timer wheel, so both runtimes sleep
/// about as long (greenrt's ticks are 65.5 µs).
const NAP: Duration = Duration::from_millis(1);

pub const SLEEP_CHURN: Workload = Workload {
    name: "sleep_churn",
    label: "sleep_churn (10 000 × 10 sleeps of 1 ms)",
    measurement: Duration::from_secs(3),
    greenrt: |rt| {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(SLEEPERS));
        for _ in 0..SLEEPERS {
            let (tx, rem) = (tx.clone(), rem.clone());
            rt.spawn(move || {
                for _ in 0..SLEEPS {
                    greenrt::sleep(NAP);
                }
                if rem.fetch_sub(1, Relaxed) == 1 {
                    tx.send(()).unwrap();
                }
            });
        }
        rx.recv().unwrap();
    },
    tokio: |rt| {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = Arc::new(AtomicUsize::new(SLEEPERS));
        for _ in 0..SLEEPERS {
            let (tx, rem) = (tx.clone(), rem.clone());
            rt.spawn(async move {
                for _ in 0..SLEEPS {
                    tokio::time::sleep(NAP).await;
                }
                if rem.fetch_sub(1, Relaxed) == 1 {
                    tx.send(()).unwrap();
                }
            });
        }
        rx.recv().unwrap();
    },
};
