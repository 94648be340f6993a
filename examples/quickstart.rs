//! Quick start: 10 000 green threads that sleep, compute and report over a
//! channel, on a handful of worker OS threads.
//!
//! cargo run --release --example quickstart

use std::time::{Duration, Instant};

use greenrt::sync::{mpsc, Mutex, WaitGroup};

fn main() {
    let start = Instant::now();
    let rt = greenrt::Runtime::new().expect("build the runtime");
    let (sum, max_workers) = rt.block_on(|| {
        let (tx, rx) = mpsc::channel();
        let wg = WaitGroup::new();
        let threads_seen = std::sync::Arc::new(Mutex::new(std::collections::HashSet::new()));
        for i in 0..10_000u64 {
            let (tx, wg, seen) = (tx.clone(), wg.clone(), threads_seen.clone());
            wg.add(1);
            greenrt::spawn(move || {
                // Each green thread blocks for 100 ms; only it waits, not
                // the worker running it.
                greenrt::sleep(Duration::from_millis(100));
                seen.lock().unwrap().insert(std::thread::current().id());
                tx.send(i * i).unwrap();
                wg.done();
            });
        }
        drop(tx);
        wg.wait();
        let workers = threads_seen.lock().unwrap().len();
        (rx.iter().sum::<u64>(), workers)
    });
    println!(
        "10000 green threads each slept 100 ms and sent i*i: sum = {sum}; \
         they ran on {max_workers} distinct OS thread(s), at most {} at a time; total {:?}",
        rt.workers(),
        start.elapsed()
    );
}
