//! Spawns green threads that sleep and talk over a channel.
use std::time::{Duration, Instant};

fn main() {
    let start = Instant::now();
    let total: u64 = greenrt::run(|| {
        let handles: Vec<_> = (0..1000u64)
            .map(|i| {
                greenrt::spawn(move || {
                    greenrt::sleep(Duration::from_millis(50));
                    i
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    println!("1000 green threads slept 50 ms each; sum {total}; took {:?}", start.elapsed());
}
