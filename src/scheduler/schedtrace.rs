//! `GREENRT_SCHEDTRACE=<ms>`: a line on stderr every `ms` milliseconds
//! summing up the scheduler, as Go's `GODEBUG=schedtrace`:
//!
//! ```text
//! SCHED 1000ms: workers=2 idle=0 threads=5 spinning=0 idlethreads=2 runqueue=0 [3 1] preemptions=84 retakes=0 preempted=1
//! ```
//!
//! Time since the runtime was built; workers (Ps) and how many are idle;
//! OS threads (Ms), how many spin and how many are parked; the global run
//! queue's depth and each worker's local one; preemptions and retakes so
//! far; preempted green threads waiting for a worker (in neither run
//! queue, so listed apart). A thread of its own prints it (it allocates and takes stderr's
//! lock, which sysmon may not), started only when the variable is set, so
//! it works with preemption off too.

use std::fmt::Write as _;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::metrics;
use super::shared::Shared;
use crate::RuntimeMetrics;

/// The environment variable: the interval in milliseconds.
const VAR: &str = "GREENRT_SCHEDTRACE";

/// The interval `GREENRT_SCHEDTRACE` asks for: None when it is unset,
/// empty or 0. Any other value that is not a whole number of
/// milliseconds is reported on stderr and turns the trace off (a
/// debugging aid should not stop a program from starting).
pub(crate) fn interval_from_env() -> Option<Duration> {
    let v = std::env::var_os(VAR)?;
    parse(&v.to_string_lossy()).unwrap_or_else(|msg| {
        eprintln!("greenrt: {msg}; schedtrace is off");
        None
    })
}

fn parse(v: &str) -> Result<Option<Duration>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(ms) => Ok(Some(Duration::from_millis(ms))),
        Err(_) => Err(format!(
            "{VAR} must be an interval in milliseconds (a whole number), got {v:?}"
        )),
    }
}

/// The running trace thread; stops when dropped or `stop`ped.
pub(crate) struct Tracer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Tracer {
    /// Starts printing `rt`'s line every `every`.
    pub(crate) fn start(rt: Arc<Shared>, every: Duration) -> std::io::Result<Tracer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("{}-schedtrace", rt.cfg.thread_name))
            .spawn(move || {
                // Woken early only by the runtime's stop (the sender
                // dropped): then no final line.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    eprintln!("{}", line(&metrics::snapshot(&rt)));
                }
            })?;
        Ok(Tracer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The trace line for `m`.
pub(crate) fn line(m: &RuntimeMetrics) -> String {
    let mut s = format!(
        "SCHED {}ms: workers={} idle={} threads={} spinning={} idlethreads={} runqueue={} [",
        m.elapsed().as_millis(),
        m.num_workers(),
        m.num_idle_workers(),
        m.num_threads(),
        m.num_spinning_threads(),
        m.num_idle_threads(),
        m.global_queue_depth(),
    );
    for w in 0..m.num_workers() {
        if w > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{}", m.worker_local_queue_depth(w));
    }
    let _ = write!(
        s,
        "] preemptions={} retakes={} preempted={}",
        m.preemptions(),
        m.retakes(),
        m.preempted_queue_depth()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_milliseconds() {
        assert_eq!(parse("250"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(parse(" 1000 "), Ok(Some(Duration::from_millis(1000))));
        assert_eq!(parse("0"), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert!(parse("1s").unwrap_err().contains("GREENRT_SCHEDTRACE"));
        assert!(parse("-5").is_err());
    }
}
