mod common;
use std::time::{Duration, Instant};

#[test]
fn explore_eintr() {
    for q in [10u64, 1] {
        let rt = greenrt::Builder::new().workers(1).preemption(true).preempt_quantum(Duration::from_millis(q)).build().unwrap();
        let before = greenrt::preempt::stats();
        let (eintr, took) = rt.block_on(|| {
            let h = greenrt::spawn(|| {
                let t = Instant::now();
                let mut eintr = 0;
                loop {
                    let left = 300i64 - t.elapsed().as_millis() as i64;
                    if left <= 0 { break; }
                    let r = unsafe { libc::poll(std::ptr::null_mut(), 0, left as i32) };
                    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) { eintr += 1; }
                }
                (eintr, t.elapsed())
            });
            h.join().unwrap()
        });
        let after = greenrt::preempt::stats();
        println!("q={q}ms: poll(300 ms) in a green thread saw {eintr} EINTRs in {took:?}; retakes {} signals {}", after.retakes - before.retakes, after.signals - before.signals);
    }
}
