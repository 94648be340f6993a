//! The public face of a runtime: `Builder`, `Runtime`, `run`.

use std::io;
use std::sync::Arc;

use std::time::Duration;

use super::shared::{Config, Shared};
use crate::preempt;
use crate::stack::{self, DEFAULT_STACK_SIZE};
use crate::task::{self, JoinHandle};

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = greenrt::Builder::new().workers(2).stack_size(128 * 1024).build().unwrap();
/// assert_eq!(rt.block_on(|| 6 * 7), 42);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    thread_name: String,
    quantum: Duration,
    preemption: Option<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: as many workers as `std::thread::available_parallelism`
    /// (or `GREENRT_WORKERS` when set), 256 KiB stacks.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            thread_name: "greenrt-worker".into(),
            quantum: preempt::DEFAULT_QUANTUM,
            preemption: None,
        }
    }

    /// Number of Ps: how many green threads run in parallel. Overrides
    /// `GREENRT_WORKERS`.
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self
    }

    /// Default stack size of green threads spawned on this runtime, in
    /// bytes (rounded up to whole pages, at least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Name prefix of the worker OS threads (a number is appended).
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        self.thread_name = name.into();
        self
    }

    /// How long a green thread may hold its worker before it is preempted
    /// (default 10 ms; at least 100 µs).
    pub fn preempt_quantum(mut self, quantum: Duration) -> Builder {
        self.quantum = quantum;
        self
    }

    /// Turns preemption on or off (default on, unless the environment
    /// variable `GREENRT_PREEMPT=off`). Off, green threads run until they
    /// block or yield, as in a cooperative runtime.
    pub fn preemption(mut self, enabled: bool) -> Builder {
        self.preemption = Some(enabled);
        self
    }

    /// Builds the runtime. Worker threads start on demand.
    ///
    /// Errors with `InvalidInput` for zero workers or an unparsable
    /// `GREENRT_WORKERS`.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = match self.workers {
            Some(n) => n,
            None => default_workers()?,
        };
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "greenrt: workers must be at least 1",
            ));
        }
        if self.quantum < preempt::MIN_QUANTUM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "greenrt: the preemption quantum must be at least {:?}, got {:?}",
                    preempt::MIN_QUANTUM,
                    self.quantum
                ),
            ));
        }
        let wanted = self
            .preemption
            .unwrap_or_else(|| std::env::var("GREENRT_PREEMPT").map_or(true, |v| v != "off"));
        crate::stack::overflow::install_handler();
        let cfg = Config {
            workers,
            stack_size: stack::normalize_size(self.stack_size),
            thread_name: self.thread_name,
            preempt: (wanted && preempt::init()).then_some(self.quantum),
        };
        let shared = Shared::new(cfg);
        let sysmon = match shared.cfg.preempt {
            Some(q) => Some(preempt::sysmon::start(shared.clone(), q)?),
            None => None,
        };
        Ok(Runtime { shared, sysmon })
    }
}

fn default_workers() -> io::Result<usize> {
    match std::env::var("GREENRT_WORKERS") {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("greenrt: GREENRT_WORKERS must be a positive integer, got {v:?}"),
            )
        }),
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// A greenrt runtime: a set of worker OS threads running green threads.
///
/// Dropping the runtime stops its workers once their running green threads
/// reach a scheduling point; green threads still blocked then are
/// abandoned (their stacks are freed, values on them are not dropped).
pub struct Runtime {
    shared: Arc<Shared>,
    sysmon: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.cfg.workers)
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default configuration.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// Runs `f` as a green thread on this runtime and blocks the calling
    /// OS thread until it returns; a panic in `f` is resumed here.
    ///
    /// # Panics
    /// When called from a green thread (it would block a worker): spawn and
    /// join instead.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        assert_not_green("Runtime::block_on");
        let handle = task::Builder::new()
            .name("main")
            .spawn_on(&self.shared, f)
            .unwrap_or_else(|e| {
                panic!("greenrt: failed to spawn the main green thread: {e}");
            });
        match handle.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Spawns a green thread on this runtime from any thread.
    ///
    /// # Panics
    /// If the stack cannot be allocated (see [`task::Builder::spawn`]).
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        task::Builder::new()
            .spawn_on(&self.shared, f)
            .unwrap_or_else(|e| panic!("greenrt: failed to spawn green thread: {e}"))
    }

    /// Number of workers (Ps).
    pub fn workers(&self) -> usize {
        self.shared.cfg.workers
    }

    /// The preemption quantum, or None if preemption is off.
    pub fn preempt_quantum(&self) -> Option<Duration> {
        self.shared.cfg.preempt
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.shutdown();
        self.shared
            .sysmon_stop
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.sysmon.take() {
            let _ = t.join();
        }
    }
}

fn assert_not_green(what: &str) {
    if super::in_green_thread() {
        panic!(
            "greenrt::{what} cannot be called from a green thread: it would block a worker; \
             spawn a green thread and join it instead"
        );
    }
}

/// Runs `f` as the main green thread of a new default runtime and returns
/// its value; the runtime is shut down afterwards.
///
/// ```
/// let sum = greenrt::run(|| {
///     let hs: Vec<_> = (0..10u64).map(|i| greenrt::spawn(move || i * i)).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
/// });
/// assert_eq!(sum, 285);
/// ```
///
/// # Panics
/// When called from a green thread, when the runtime cannot be built, and
/// with `f`'s panic if `f` panics.
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    assert_not_green("run");
    let rt =
        Runtime::new().unwrap_or_else(|e| panic!("greenrt::run: cannot build the runtime: {e}"));
    rt.block_on(f)
}
