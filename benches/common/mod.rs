//! Helpers shared by the benchmarks (each bench includes this module, and
//! not every bench uses every helper).
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The median (upper median for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Whether criterion measures (`cargo bench`) rather than runs each
/// function once as a test (`cargo test --benches`, `-- --test`), by the
/// rule criterion itself applies. Measurements outside criterion's
/// functions only run when it measures.
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The load average, to judge how much other processes skew the figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// CPU time (user + system) the whole process has used so far: unlike
/// wall time, it leaves out time spent waiting for a CPU.
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and process CPU time of `f`, in seconds.
pub fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t, cpu) = (Instant::now(), process_cpu());
    f();
    (
        t.elapsed().as_secs_f64(),
        (process_cpu() - cpu).as_secs_f64(),
    )
}

/// Wall and process CPU times (seconds) of rounds (or batches) timed
/// through criterion's `iter_custom`. The first call is criterion's
/// warm-up and is left out.
#[derive(Default)]
pub struct Rounds {
    pub calls: usize,
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
}

impl Rounds {
    /// Runs `round` `iters` times, for `iter_custom`.
    pub fn run(&mut self, iters: u64, mut round: impl FnMut()) -> Duration {
        let mut total = 0.0;
        for _ in 0..iters {
            let (wall, cpu) = timed(&mut round);
            total += wall;
            if self.calls > 0 {
                self.wall.push(wall);
                self.cpu.push(cpu);
            }
        }
        self.calls += 1;
        Duration::from_secs_f64(total)
    }

    /// Adds the rounds of another pass.
    pub fn absorb(&mut self, other: Rounds) {
        self.calls += other.calls;
        self.wall.extend(other.wall);
        self.cpu.extend(other.cpu);
    }

    /// Mean round time in seconds.
    pub fn mean(&self) -> f64 {
        mean(&self.wall)
    }

    /// Mean process CPU time of a round, in seconds.
    pub fn mean_cpu(&self) -> f64 {
        mean(&self.cpu)
    }
}
