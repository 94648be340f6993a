//! Nothing writes to memory the runtime has freed, even while green
//! threads are being preempted as their runtime shuts down.
//!
//! This binary's global allocator quarantines freed blocks: it fills them
//! with a poison byte and keeps them out of circulation, and the test then
//! checks that every quarantined block still holds only poison. A write
//! through a dangling pointer (say, handing a P to an M handle that
//! shutdown already freed) shows up as a changed byte.

mod common;

use std::hint::black_box;

use std::time::{Duration, Instant};

use common::with_timeout;

#[path = "common/quarantine.rs"]
mod quarantine;

use quarantine::Quarantine;

#[global_allocator]
static ALLOC: Quarantine = Quarantine;

#[test]
fn runtime_drop_during_preemptions_never_writes_freed_memory() {
    // Cells go back to the allocator (and so into quarantine) rather than
    // to a worker's cache, where a write after their end would go unseen.
    // The only test of this binary: nothing reads the environment yet.
    std::env::set_var("GREENRT_CELL_CACHE", "off");
    with_timeout(Duration::from_secs(120), || {
        let mut corrupted = 0;
        for round in 0..20 {
            quarantine::enable();
            let rt = greenrt::Builder::new()
                .workers(2)
                .preempt_quantum(Duration::from_micros(200))
                .build()
                .unwrap();
            rt.block_on(|| {
                for _ in 0..6 {
                    // Computing green threads, preempted again and again,
                    // still running when the runtime drops.
                    greenrt::spawn(|| {
                        let start = Instant::now();
                        let mut x = 0u64;
                        while start.elapsed() < Duration::from_millis(40) {
                            x = black_box(x.wrapping_add(1));
                        }
                    });
                }
                greenrt::sleep(Duration::from_millis(5));
            });
            drop(rt);
            let (_, bad) = quarantine::corrupted_and_release(usize::MAX);
            if bad > 0 {
                eprintln!("round {round}: {bad} freed blocks written to");
            }
            corrupted += bad;
        }
        assert_eq!(corrupted, 0, "writes to freed memory over 20 runtime drops");
    });
}
