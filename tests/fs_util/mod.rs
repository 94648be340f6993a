//! Helpers shared by the `greenrt::fs` test files (fs.rs, fs_direct.rs,
//! fs_cancel.rs): temporary directories, file contents, fd counting, the
//! two places a test body runs (green threads, a plain OS thread) and the
//! re-run of a whole test binary with `GREENRT_IO_URING=off`.
#![allow(dead_code)]

pub mod roundtrip;

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Once;
use std::time::Duration;

use crate::common::{self, serial, with_timeout, CHILD_ENV};

/// A fresh directory under `std::env::temp_dir()`, removed with
/// everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "greenrt-fs-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create the test's temp directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ from offset to offset and from seed to seed
/// (so a read from the wrong place, or of stale data, shows).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A small deterministic generator (xorshift64*), for random offsets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Opens `path` with O_DIRECT (for reading, and writing if `write`).
pub fn open_direct(path: &Path, write: bool) -> greenrt::fs::File {
    greenrt::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .direct(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} with O_DIRECT: {e}", path.display()))
}

/// A direct file's alignment.
pub fn alignment(f: &greenrt::fs::File) -> greenrt::fs::Alignment {
    f.direct_alignment()
        .expect("a direct file has an alignment")
}

/// Writes `bytes` as `path` with std, flushed to the device.
pub fn std_write_synced(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("std::fs::write");
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .expect("fsync the file std wrote");
}

/// Drops `path`'s clean pages from the page cache (fsync, then
/// POSIX_FADV_DONTNEED).
pub fn drop_from_page_cache(path: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for fadvise");
    f.sync_all().expect("fsync before fadvise");
    // SAFETY: posix_fadvise on an open fd of ours takes no pointers.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(
        r,
        0,
        "posix_fadvise(DONTNEED): {}",
        io::Error::from_raw_os_error(r)
    );
}

/// Open fds of the process (/proc/self/fd, less the one reading it).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// The open fds and what they are, for failure messages.
pub fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}

/// Makes the process-wide fds greenrt opens once and keeps (the
/// netpoller's epoll fd and eventfd, the io_uring ring and its eventfd)
/// exist, so they do not count as a test's leak.
pub fn prime_process_fds() {
    static PRIMED: Once = Once::new();
    PRIMED.call_once(|| {
        let dir = TempDir::new("prime");
        let path = dir.file("prime");
        std::fs::write(&path, b"prime").unwrap();
        let _ = greenrt::fs::backend();
        drop(greenrt::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket"));
        common::runtime(1).block_on(move || {
            assert_eq!(greenrt::fs::read(&path).unwrap(), b"prime");
        });
    });
}

/// Runs `body` alone (under `SERIAL`: tests of a file compare fd counts
/// and time sleeps) and under `limit`, and checks that it closed every
/// fd it opened.
pub fn checked_for<T, F>(limit: Duration, body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _serial = serial();
    prime_process_fds();
    let (before, list) = (open_fds(), fd_list());
    let v = with_timeout(limit, body);
    let after = open_fds();
    assert_eq!(
        before,
        after,
        "the test leaked fds: {before} open before it, {after} after\nbefore: {list:?}\nafter: {:?}",
        fd_list()
    );
    v
}

pub fn checked<T, F>(body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    checked_for(common::TIMEOUT, body)
}

/// Where a test body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    /// The main green thread of a fresh 2-worker runtime (spawning more).
    Green,
    /// A plain OS thread (spawning more plain threads).
    Os,
}

/// Runs `f` in `ctx`, fd-checked and alone.
pub fn run_in<T, F>(ctx: Ctx, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    checked(move || match ctx {
        Ctx::Green => common::runtime(2).block_on(f),
        Ctx::Os => std::thread::spawn(f).join().unwrap_or_else(|p| {
            std::panic::resume_unwind(p);
        }),
    })
}

/// Spawns `f` as a green thread (from a green thread) or a plain thread,
/// as the caller runs, and returns a join function.
pub fn spawn_like<T, F>(ctx: Ctx, f: F) -> Box<dyn FnOnce() -> T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match ctx {
        Ctx::Green => {
            let h = greenrt::spawn(f);
            Box::new(move || h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        }
        Ctx::Os => {
            let h = std::thread::spawn(f);
            Box::new(move || h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        }
    }
}

/// The env value a child re-run with io_uring off gets in `CHILD_ENV`.
pub const URING_OFF_TAG: &str = "io-uring-off";

/// Whether this process is the `GREENRT_IO_URING=off` re-run.
pub fn is_uring_off_child() -> bool {
    common::child_tag().as_deref() == Some(URING_OFF_TAG)
}

/// Whether io_uring_setup works here at all (asked directly, not through
/// greenrt): Err with the reason if not.
pub fn kernel_has_io_uring() -> Result<(), io::Error> {
    // struct io_uring_params (120 bytes); all-zero asks for no flags.
    let mut params: [u8; 120] = [0; 120];
    // SAFETY: io_uring_setup(1 entry, params) writes only into `params`
    // (120 bytes, the struct's size); the fd it returns is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1u32,
            params.as_mut_ptr() as *mut libc::c_void,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: closing the ring fd just created, owned by no one else.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// The body of each fs test file's `whole_suite_passes_again_with_io_uring_off`
/// test: in the parent, re-runs the binary without that test under
/// `GREENRT_IO_URING=off` (see `rerun_binary_with_io_uring_off`) and
/// returns the child's stdout; in the child, does nothing (None).
pub fn whole_suite_again_with_io_uring_off() -> Option<String> {
    if common::child_tag().is_some() {
        return None;
    }
    let _serial = serial();
    Some(rerun_binary_with_io_uring_off(
        "whole_suite_passes_again_with_io_uring_off",
        Duration::from_secs(180),
    ))
}

/// Re-runs this whole test binary (less `self_test`) with
/// `GREENRT_IO_URING=off`, and fails with its output unless every test
/// passed. Returns the child's stdout.
pub fn rerun_binary_with_io_uring_off(self_test: &str, limit: Duration) -> String {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut child = Command::new(exe)
        .args(["--skip", self_test, "--test-threads=2", "--nocapture"])
        .env("GREENRT_IO_URING", "off")
        .env(CHILD_ENV, URING_OFF_TAG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test binary");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the GREENRT_IO_URING=off re-run did not finish within {limit:?}\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                out_t.join().unwrap(),
                err_t.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
    assert!(
        status.success() && stdout.contains("test result: ok"),
        "the suite failed with GREENRT_IO_URING=off ({status:?})\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{stderr}"
    );
    stdout
}
