//! Helpers shared by the integration tests (each test file includes this
//! module, and not every file uses every helper).
#![allow(dead_code)]

pub mod preemption;

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Generous limit for one test body: a lost wake-up or deadlock makes the
/// test fail after this long instead of hanging the whole run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Env var that tells a re-executed test binary which child body to run.
pub const CHILD_ENV: &str = "GREENRT_CHILD";

/// The lock of the test files whose tests must not overlap (they measure
/// time, or compare process-wide counts: fds, threads, preemptions). Each
/// test file is its own binary, so this is one lock per file.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes `SERIAL`. A test takes it on its own thread, outside
/// `with_timeout`, so a test body that hangs (and is abandoned) does not
/// keep it; a test that failed holding it does not poison it for the rest.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a fresh OS thread and waits at most `limit` for it. A panic
/// in `f` is resumed here; a timeout fails the test with a clear message
/// (the stuck thread is abandoned).
pub fn with_timeout<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std_mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn the test body thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            resume_unwind(payload)
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => panic!(
            "test body did not finish within {limit:?}: something blocked forever (a lost \
             wake-up, a deadlock, or a join/recv/wait that can never return)"
        ),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            panic!("test body thread vanished without reporting a result")
        }
    }
}

/// `with_timeout(TIMEOUT, f)`.
pub fn guarded<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    with_timeout(TIMEOUT, f)
}

/// A runtime with exactly `workers` workers.
pub fn runtime(workers: usize) -> greenrt::Runtime {
    greenrt::Builder::new()
        .workers(workers)
        .build()
        .expect("build a greenrt runtime")
}

/// A runtime with exactly `workers` workers and preemption off. For tests
/// that check the exact order in which yielding green threads run, or
/// count green threads inside a busy-wait window: an involuntary
/// preemption (e.g. when the OS deschedules a worker for a whole quantum)
/// would reorder or interleave them.
pub fn cooperative_runtime(workers: usize) -> greenrt::Runtime {
    greenrt::Builder::new()
        .workers(workers)
        .preemption(false)
        .build()
        .expect("build a cooperative greenrt runtime")
}

/// `block_on`, on a `cooperative_runtime`.
pub fn block_on_cooperative<T, F>(workers: usize, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    guarded(move || cooperative_runtime(workers).block_on(f))
}

/// Builds a runtime with `workers` workers and runs `f` as its main green
/// thread, all under the default timeout.
pub fn block_on<T, F>(workers: usize, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    guarded(move || runtime(workers).block_on(f))
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Runs `f`, expects it to panic, and returns the panic message.
pub fn expect_panic<R>(what: &str, f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("{what}: expected a panic, but it returned normally"),
        Err(p) => panic_text(&*p),
    }
}

/// Busy-waits (without yielding to the greenrt scheduler) for `d`.
pub fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Threads of this process (/proc/self/task).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// The thread count once it has come down to `at_most`, or whatever it is
/// after two seconds. A joined thread is still counted for a moment: its
/// kernel task is released after `pthread_join` has been told it ended
/// (the tid is cleared before the task is unhashed), so a count taken
/// right after joining can be one high. A leaked thread stays.
pub fn thread_count_settled(at_most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = thread_count();
        if n <= at_most || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The child tag this process was started with, if it is a child.
pub fn child_tag() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Re-executes this test binary running only `test_name`, with
/// `GREENRT_CHILD=tag` and the extra environment `envs` (a `None` value
/// removes the variable). Kills the child and fails after `limit`.
pub fn run_child(
    test_name: &str,
    tag: &str,
    envs: &[(&str, Option<&str>)],
    limit: Duration,
) -> Output {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().expect("spawn the child test process");
    // Drain the pipes on helper threads so a chatty child cannot block.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!(
                "child `{test_name}` ({tag}) did not finish within {limit:?}\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Both output streams of a child, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Closes socket `s` with SO_LINGER 0: the peer gets a RST, not a FIN.
pub fn close_with_reset<S: std::os::fd::AsRawFd>(s: S) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

/// From a green thread: spawns `threads` green threads that each yield
/// `yields` times, and joins them all.
pub fn yield_in_threads(threads: usize, yields: usize) {
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            greenrt::spawn(move || {
                for _ in 0..yields {
                    greenrt::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}
