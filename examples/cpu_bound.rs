//! The classic demonstration of preemption: 30 green threads on ONE
//! worker, each adding 2 to a counter 10^8 times without ever yielding.
//!
//! With preemption (the default) they take turns every quantum and finish
//! close together; with `GREENRT_PREEMPT=off` they run one after another.
//!
//! cargo run --release --example cpu_bound
//! cargo run --release --example cpu_bound -- 1   # a 1 ms quantum
//! GREENRT_PREEMPT=off cargo run --release --example cpu_bound
//!
//! The optional argument is the preemption quantum in milliseconds
//! (default: the runtime's, 10 ms).

use std::hint::black_box;
use std::time::{Duration, Instant};

const THREADS: usize = 30;
const ITERATIONS: u64 = 100_000_000;

fn main() {
    let mut builder = greenrt::Builder::new().workers(1);
    if let Some(ms) = std::env::args().nth(1) {
        let ms: f64 = ms.parse().expect("the quantum in milliseconds");
        builder = builder.preempt_quantum(Duration::from_secs_f64(ms / 1e3));
    }
    let rt = builder.build().expect("build the runtime");
    let start = Instant::now();
    let finish_times = rt.block_on(move || {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                greenrt::spawn(move || {
                    let mut counter = 0u64;
                    for _ in 0..ITERATIONS {
                        counter = black_box(counter + 2);
                    }
                    assert_eq!(counter, 2 * ITERATIONS);
                    let t = start.elapsed();
                    println!(
                        "green thread {i:2} finished at {:7.1} ms",
                        t.as_secs_f64() * 1e3
                    );
                    t
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let first = finish_times.iter().min().unwrap().as_secs_f64();
    let last = finish_times.iter().max().unwrap().as_secs_f64();
    println!(
        "preemption {}: first finished at {:.0} ms, last at {:.0} ms, first/last = {:.2}",
        match rt.preempt_quantum() {
            Some(q) => format!("on (quantum {q:?})"),
            None => "off".to_string(),
        },
        first * 1e3,
        last * 1e3,
        first / last
    );
}
