//! `#[greenrt::main]`: `main` runs as the main green thread of a runtime
//! built from the attribute's arguments, and may return a `Result`.
//!
//! cargo run --example hello_main

use std::time::Duration;

use greenrt::sync::mpsc;

#[greenrt::main(workers = 2, preempt_quantum_ms = 5)]
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (tx, rx) = mpsc::channel();
    for i in 1..=10u64 {
        let tx = tx.clone();
        greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(10 * i));
            tx.send(i).unwrap();
        });
    }
    drop(tx);
    let order: Vec<u64> = rx.iter().collect();
    let total: u64 = order.iter().sum();
    println!(
        "hello from green thread {:?}: received {order:?}, sum {total}",
        greenrt::task::current_id()
    );
    let parsed: u64 = "55".parse()?;
    assert_eq!(total, parsed);
    Ok(())
}
