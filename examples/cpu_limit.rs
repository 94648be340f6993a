//! Container-aware workers: how many workers the runtime lets run under
//! the process's CPU quota, and how CPU-bound green threads spread over
//! them as the quota changes.
//!
//! ```sh
//! cargo run --release --example cpu_limit            # the real cgroup, 3 s
//! cargo run --release --example cpu_limit -- --fake  # 4 workers, a fake quota changed every second
//! ```
//!
//! Each line shows the quota read, the active limit, and per worker the
//! green-thread runs in the last half second (a parked worker runs none).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut fake = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--fake" => fake = true,
            "-h" | "--help" => {
                println!("usage: cpu_limit [--fake]\n\n  --fake  4 workers under a fake cgroup quota changed every second\n          (default: the process's real cgroup, 3 s)");
                return;
            }
            other => {
                eprintln!("cpu_limit: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    let tree = fake.then(FakeTree::new);
    let rt = match &tree {
        Some(t) => greenrt::Builder::new()
            .workers(4)
            .cgroup_root_for_tests(&t.0)
            .cpu_quota_poll_for_tests(Duration::from_millis(50))
            .build(),
        None => greenrt::Builder::new().build(),
    }
    .expect("build the runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            rt.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                    greenrt::yield_now();
                }
            })
        })
        .collect();
    // Fake mode: 1.5 CPUs, then 2.5, then no limit, a second each.
    let quotas = ["150000 100000", "250000 100000", "max 100000"];
    let start = Instant::now();
    let mut last = rt.metrics();
    for round in 0..6 {
        if let Some(t) = &tree {
            if round % 2 == 0 {
                t.set(quotas[round / 2]);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let m = rt.metrics();
        let runs: Vec<u64> = (0..m.num_workers())
            .map(|w| m.worker_poll_count(w) - last.worker_poll_count(w))
            .collect();
        println!(
            "{:>5} ms  quota={:<9} active={}/{}  runs per worker={:?}",
            start.elapsed().as_millis(),
            m.cpu_quota().map_or("none".into(), |q| format!("{q:.2}")),
            m.num_active_workers(),
            m.num_workers(),
            runs
        );
        last = m;
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
}

/// A fake root with a cgroup v2 tree whose `cpu.max` the example changes.
struct FakeTree(std::path::PathBuf);

impl FakeTree {
    fn new() -> FakeTree {
        let root = std::env::temp_dir().join(format!("greenrt-cpu-limit-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/cgroup/job")).unwrap();
        std::fs::write(root.join("proc/self/cgroup"), "0::/job\n").unwrap();
        std::fs::write(
            root.join("proc/self/mountinfo"),
            "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        FakeTree(root)
    }

    fn set(&self, cpu_max: &str) {
        let dir = self.0.join("sys/fs/cgroup/job");
        std::fs::write(dir.join("cpu.max.new"), format!("{cpu_max}\n")).unwrap();
        std::fs::rename(dir.join("cpu.max.new"), dir.join("cpu.max")).unwrap();
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
