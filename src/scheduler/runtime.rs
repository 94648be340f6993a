//! The public face of a runtime: `Builder`, `Runtime`, `run`.

use std::io;
use std::sync::Arc;

use std::time::Duration;

use super::schedtrace;
use super::shared::{Config, Shared};
use crate::env;
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
    cgroup_root: Option<std::path::PathBuf>,
    quota_poll: Option<Duration>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: workers as the process's CPU quota and affinity allow
    /// (or `GREENRT_WORKERS` when set; see [`Builder::workers`]), 256 KiB
    /// stacks.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            thread_name: "greenrt-worker".into(),
            quantum: preempt::DEFAULT_QUANTUM,
            preemption: None,
            cgroup_root: None,
            quota_poll: None,
        }
    }

    /// Number of Ps: how many green threads run in parallel. Overrides
    /// `GREENRT_WORKERS`.
    ///
    /// Without either, the runtime is *container-aware*: it makes one P
    /// per CPU the process may run on (`sched_getaffinity`) and lets
    /// min(that, max(2, ⌈quota⌉)) of them run, where the quota is the
    /// cgroup CPU bandwidth limit (v2 `cpu.max`, v1 `cpu.cfs_quota_us` /
    /// `cpu.cfs_period_us`, the lowest along the cgroup's ancestors) —
    /// Go 1.25's default `GOMAXPROCS`. The quota is re-read every second
    /// and the limit follows it while the runtime runs; see the README,
    /// "Container-aware workers". A given count is fixed.
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
    /// variable `GREENRT_PREEMPT` says off: `off`, `0`, `false` or `no`,
    /// in any case). Off, green threads run until they block or yield, as
    /// in a cooperative runtime.
    pub fn preemption(mut self, enabled: bool) -> Builder {
        self.preemption = Some(enabled);
        self
    }

    /// Test hook: read the cgroup files below `root` (a fake tree holding
    /// `proc/self/cgroup`, `proc/self/mountinfo` and the cgroup
    /// directories) instead of `/`, and follow the quota there even when
    /// [`Builder::workers`] fixes the number of Ps (which then bounds the
    /// limit instead of the affinity count). Not part of the API.
    #[doc(hidden)]
    pub fn cgroup_root_for_tests(mut self, root: impl Into<std::path::PathBuf>) -> Builder {
        self.cgroup_root = Some(root.into());
        self
    }

    /// Test hook: re-read the CPU quota every `every` (default one
    /// second). Not part of the API.
    #[doc(hidden)]
    pub fn cpu_quota_poll_for_tests(mut self, every: Duration) -> Builder {
        self.quota_poll = Some(every);
        self
    }

    /// Builds the runtime. Worker threads start on demand.
    ///
    /// Errors with `InvalidInput` for zero workers, a quantum under
    /// [`preempt::MIN_QUANTUM`], or a `GREENRT_*` variable with a value
    /// it does not accept (the message names the variable and the
    /// accepted values; see the crate docs' table). With
    /// `GREENRT_SCHEDTRACE=<ms>` set, a line summing up the scheduler
    /// goes to stderr every `ms` milliseconds (see the README); a value
    /// that is not a whole number is reported on stderr and ignored.
    pub fn build(self) -> io::Result<Runtime> {
        let fixed = match self.workers {
            Some(n) => Some(n),
            None => env::read(env::WORKERS, env::parse_workers)?,
        };
        if fixed == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "greenrt: workers must be at least 1",
            ));
        }
        if let Some(n) = fixed.filter(|&n| n > MAX_WORKERS) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("greenrt: workers must be at most {MAX_WORKERS}, got {n}"),
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
        let wanted = match self.preemption {
            Some(on) => on,
            None => env::flag(env::PREEMPT)?.unwrap_or(true),
        };
        env::check_lazy_knobs()?;
        super::cell_cache::set_enabled(env::flag(env::CELL_CACHE)?.unwrap_or(true));
        super::stack_overflow::install_handler();
        super::panic_hook::install();
        crate::sys::malloc::tune_once();
        let (workers, active, quota, quota_source) =
            super::cpu_limit::decide(fixed, self.cgroup_root, self.quota_poll);
        let cfg = Config {
            active,
            quota,
            quota_source,
            workers,
            stack_size: stack::normalize_size(self.stack_size)?,
            thread_name: self.thread_name,
            preempt: (wanted && preempt::init()).then_some(self.quantum),
        };
        let shared = Shared::new(cfg);
        crate::trace::on_build(&shared);
        let mut rt = Runtime {
            shared,
            sysmon: None,
            errands: None,
            schedtrace: None,
            stopped: false,
        };
        // The errand thread first: sysmon asks it for spare Ms at once.
        // It runs without preemption too: it trims the stack pool.
        rt.errands = Some(super::chores::start(rt.shared.clone())?);
        if let Some(q) = rt.shared.cfg.preempt {
            rt.sysmon = Some(super::sysmon::start(rt.shared.clone(), q)?);
        }
        if let Some(every) = schedtrace::interval_from_env() {
            rt.schedtrace = Some(schedtrace::Tracer::start(rt.shared.clone(), every)?);
        }
        Ok(rt)
    }
}

/// The most workers a runtime takes (`Builder::workers`,
/// `GREENRT_WORKERS`; a larger count is `InvalidInput`). Each worker is
/// a P with its run queue and, while it runs green threads, an OS
/// thread; Go's `GOMAXPROCS` has no use beyond the CPU count either.
pub const MAX_WORKERS: usize = 4096;

/// How long dropping a [`Runtime`] waits for its cancelled green threads
/// to unwind (see [`Runtime::shutdown_timeout`]).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// A greenrt runtime: a set of worker OS threads running green threads.
///
/// Dropping the runtime shuts it down as
/// [`shutdown_timeout`](Runtime::shutdown_timeout) does, with
/// [`DEFAULT_SHUTDOWN_TIMEOUT`] (one second).
pub struct Runtime {
    shared: Arc<Shared>,
    sysmon: Option<std::thread::JoinHandle<()>>,
    /// sysmon's errand thread (see `scheduler::chores`).
    errands: Option<std::thread::JoinHandle<()>>,
    /// The `GREENRT_SCHEDTRACE` printer, if asked for.
    schedtrace: Option<schedtrace::Tracer>,
    stopped: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .field("ps", &self.shared.cfg.workers)
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
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        assert_not_green("Runtime::block_on");
        // `match`, not `unwrap_or_else`: a closure would lose the caller's
        // location (`#[track_caller]`).
        let handle = match task::Builder::new().name("main").spawn_on(&self.shared, f) {
            Ok(h) => h,
            Err(e) => panic!("greenrt: failed to spawn the main green thread: {e}"),
        };
        match handle.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Spawns a green thread on this runtime from any thread.
    ///
    /// # Panics
    /// If the stack cannot be allocated (see [`task::Builder::spawn`]).
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match task::Builder::new().spawn_on(&self.shared, f) {
            Ok(h) => h,
            Err(e) => panic!("greenrt: failed to spawn green thread: {e}"),
        }
    }

    /// How many green threads may run in parallel now: the number of
    /// workers, or, when the count follows the CPU quota (see
    /// [`Builder::workers`]), the current limit, which may change while
    /// the runtime runs. [`RuntimeMetrics::num_workers`](crate::RuntimeMetrics::num_workers)
    /// counts every P, parked ones included.
    pub fn workers(&self) -> usize {
        self.shared.cpu_limit.active()
    }

    /// The preemption quantum, or None if preemption is off.
    pub fn preempt_quantum(&self) -> Option<Duration> {
        self.shared.cfg.preempt
    }

    /// A snapshot of this runtime's scheduler metrics (see
    /// [`RuntimeMetrics`](crate::RuntimeMetrics) for what each counts and
    /// how fresh it is). From any thread; on a green thread,
    /// [`greenrt::metrics()`](crate::metrics()) gives its runtime's.
    pub fn metrics(&self) -> crate::RuntimeMetrics {
        super::metrics::snapshot(&self.shared)
    }
}

impl Runtime {
    /// Shuts the runtime down, letting its green threads unwind until
    /// `timeout` passes without fewer of them left than before.
    ///
    /// Every green thread that has not finished is cancelled: one blocked
    /// in a runtime call (a socket, a channel, a `greenrt::sync` lock, a
    /// sleep, a join) wakes and unwinds from that call with a
    /// [`Cancelled`](crate::Cancelled) payload, so its destructors run,
    /// its sockets close and the locks it holds are released (without
    /// poisoning). A running or preempted green thread runs on until its
    /// next blocking call, where it unwinds. Every later blocking call of
    /// a cancelled green thread unwinds at once, so catching the unwind
    /// cannot keep it alive. [`JoinHandle::join`](crate::JoinHandle::join)
    /// of a cancelled green thread returns `Err` with a `Cancelled`
    /// payload.
    ///
    /// Parked green threads all unwind, however many: the wait goes on
    /// while fewer and fewer green threads are left (threads born during
    /// the shutdown do not count), and `timeout`
    /// (`Duration::MAX`: no limit) bounds only the wait for those that
    /// reach no blocking call (they compute, or are blocked in a system
    /// call outside the runtime). Those are then detached: each keeps
    /// running on its own OS thread without a worker slot, like a plain
    /// thread, and unwinds at its next blocking call. If they held every
    /// worker for the whole `timeout` (preemption off, or under
    /// [`preempt::disable`](crate::preempt::disable)), cancelled green
    /// threads queued behind them never unwind: their destructors do not
    /// run and their stacks are leaked. The function reports how many
    /// were detached, and how many so abandoned, on stderr.
    ///
    /// Cancellation unwinds: under `panic = "abort"`, shutting down a
    /// runtime with parked green threads aborts the process.
    ///
    /// On one of the runtime's own green threads (which then held its
    /// last handle, or called this), it returns at once: a thread of its
    /// own shuts the runtime down, and the caller, cancelled with the
    /// rest, unwinds at its next blocking call.
    ///
    /// Afterwards every thread, fd and stack mapping the runtime made has
    /// been returned, except those of detached green threads (returned
    /// when they end), the process-wide netpoller's epoll and eventfd,
    /// and the process-wide io_uring rings of [`crate::fs`] (one per
    /// worker index that made a file operation, each with an eventfd),
    /// which the next runtime reuses.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = greenrt::Runtime::new().unwrap();
    /// let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// // Parked in accept for ever, until the runtime shuts down.
    /// rt.spawn(move || listener.accept().map(|_| ()));
    /// rt.shutdown_timeout(Duration::from_secs(1));
    /// // The listener was dropped when its green thread unwound.
    /// std::net::TcpListener::bind(addr).unwrap();
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.stop(timeout);
    }

    fn stop(&mut self, timeout: Duration) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        if self.stop_elsewhere(timeout) {
            return;
        }
        if let Some(mut t) = self.schedtrace.take() {
            t.stop();
        }
        let unfinished = self.shared.shutdown(timeout);
        if unfinished.detached > 0 {
            eprintln!(
                "greenrt: {} green thread(s) did not reach a blocking call within \
                 {timeout:?} of shutdown and were detached: they run on without the runtime \
                 and unwind at their next blocking call",
                unfinished.detached
            );
        }
        if unfinished.abandoned > 0 {
            eprintln!(
                "greenrt: {} cancelled green thread(s) got no turn to unwind within \
                 {timeout:?} of shutdown (no worker was free): their destructors did not run \
                 and their stacks are leaked",
                unfinished.abandoned
            );
        }
        self.shared
            .sysmon_stop
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.sysmon.take() {
            let _ = t.join();
        }
        self.shared.chores.stop();
        if let Some(t) = self.errands.take() {
            let _ = t.join();
        }
        crate::trace::on_drop(&self.shared);
    }
}

impl Runtime {
    /// On one of this runtime's own green threads the shutdown cannot
    /// wait for its caller (it would wait out the whole timeout and then
    /// detach it): a thread of its own runs it, and the caller, cancelled
    /// with every other green thread, unwinds at its next blocking call.
    /// Returns false (the caller stops the runtime itself) elsewhere, or
    /// if no thread could be started.
    fn stop_elsewhere(&mut self, timeout: Duration) -> bool {
        if !super::current_runtime().is_some_and(|rt| Arc::ptr_eq(&rt, &self.shared)) {
            return false;
        }
        let (tx, rx) = std::sync::mpsc::channel::<Runtime>();
        let started = std::thread::Builder::new()
            .name("greenrt-shutdown".into())
            .spawn(move || {
                if let Ok(rt) = rx.recv() {
                    rt.shutdown_timeout(timeout);
                }
            });
        if started.is_err() {
            return false;
        }
        let rest = Runtime {
            shared: self.shared.clone(),
            sysmon: self.sysmon.take(),
            errands: self.errands.take(),
            schedtrace: self.schedtrace.take(),
            stopped: false,
        };
        tx.send(rest).is_ok()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop(DEFAULT_SHUTDOWN_TIMEOUT);
    }
}

#[track_caller]
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
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    assert_not_green("run");
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("greenrt::run: cannot build the runtime: {e}"),
    };
    rt.block_on(f)
}
