//! Pipes for splicing, and the pool that keeps them.
//!
//! splice(2) needs a pipe between two sockets. Creating one costs three
//! syscalls (pipe2 and two fcntl) and two fds, so pipes are reused: a copy
//! takes one from the pool when it has bytes to move and gives it back as
//! soon as the pipe is empty again — including while it waits for its
//! source to become readable — so an idle connection holds no pipe.
//!
//! The pool is per worker: one shard per P id, each behind its own
//! `parking_lot` mutex that only that worker's green threads normally take,
//! so workers never contend for pipes. A green thread can move to another P
//! between taking a pipe and giving it back; the pipe then simply lands in
//! the other worker's shard. A worker whose shard is empty takes one from
//! another shard before making a new pipe. Shards are process-wide (indexed
//! by P id) rather than owned by the P, because pipes outlive runtimes and
//! `greenrt::io::clear_pipe_pool` must reach every idle pipe.
//! At most [`MAX_POOLED`] idle pipes are kept in all; a pipe given back to
//! a full pool is closed, and so is a pipe that still holds data (those
//! bytes belong to a copy that failed and must not leak into the next).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::sys::last_os_error;

/// Idle pipes kept for reuse (two fds each).
pub(crate) const MAX_POOLED: usize = 64;

/// Capacity asked for with F_SETPIPE_SZ: 1 MiB, the default
/// /proc/sys/fs/pipe-max-size, so one splice can move up to this much.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Shards: P ids beyond this share (id modulo SHARDS).
const SHARDS: usize = 16;

static POOL: [Mutex<Vec<Pipe>>; SHARDS] = [const { Mutex::new(Vec::new()) }; SHARDS];
/// Idle pipes over all shards.
static POOLED: AtomicUsize = AtomicUsize::new(0);

/// The calling worker's shard (0 off a green thread).
fn home() -> usize {
    crate::scheduler::current_p_id().unwrap_or(0) % SHARDS
}

pub(crate) static CREATED: AtomicU64 = AtomicU64::new(0);
pub(crate) static CLOSED: AtomicU64 = AtomicU64::new(0);

/// A non-blocking, close-on-exec pipe and how many bytes it holds.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes (what F_SETPIPE_SZ granted).
    pub(crate) capacity: usize,
    /// Bytes spliced in and not yet out.
    pub(crate) data: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(last_os_error());
        }
        // SAFETY: pipe2 just opened both fds; nobody else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        CREATED.fetch_add(1, Relaxed);
        // EPERM (over the user's pipe-buffer limits or pipe-max-size
        // without CAP_SYS_RESOURCE): keep the default size.
        // SAFETY: F_SETPIPE_SZ takes an integer argument and reads no
        // memory; `write` is an open fd this function owns.
        let mut size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        if size < 0 {
            // SAFETY: F_GETPIPE_SZ takes no argument and reads no memory;
            // `write` is an open fd this function owns.
            size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        // 64 KiB, the kernel's default, if even F_GETPIPE_SZ failed.
        let capacity = usize::try_from(size)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
            data: 0,
        })
    }

    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub(crate) fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // The two OwnedFds close right after this.
        CLOSED.fetch_add(1, Relaxed);
    }
}

/// A pipe from the pool (this worker's shard first), or a new one.
pub(crate) fn get() -> io::Result<Pipe> {
    let pooled = {
        // Never preempted while holding a shard lock (other green threads
        // would spin or block their worker on it).
        let _np = crate::preempt::no_preempt();
        let home = home();
        let take = |i: usize| {
            let pipe = POOL[i].lock().pop();
            if pipe.is_some() {
                POOLED.fetch_sub(1, Relaxed);
            }
            pipe
        };
        take(home).or_else(|| {
            (POOLED.load(Relaxed) > 0)
                .then(|| (1..SHARDS).find_map(|k| take((home + k) % SHARDS)))
                .flatten()
        })
    };
    match pooled {
        Some(p) => Ok(p),
        None => Pipe::new(),
    }
}

/// Gives `pipe` back: pooled in this worker's shard if it is empty and the
/// pool has room, else closed (outside the lock).
pub(crate) fn put(pipe: Pipe) {
    if pipe.data != 0 {
        return drop(pipe);
    }
    // Reserve a place first, so the total never exceeds the bound.
    let reserved = POOLED
        .fetch_update(Relaxed, Relaxed, |n| (n < MAX_POOLED).then_some(n + 1))
        .is_ok();
    if !reserved {
        return drop(pipe);
    }
    let _np = crate::preempt::no_preempt();
    POOL[home()].lock().push(pipe);
}

/// Idle pipes in the pool.
pub(crate) fn pooled() -> usize {
    POOLED.load(Relaxed)
}

/// Closes every idle pipe; returns how many.
pub(crate) fn clear() -> usize {
    let idle: Vec<Pipe> = {
        let _np = crate::preempt::no_preempt();
        POOL.iter()
            .flat_map(|shard| std::mem::take(&mut *shard.lock()))
            .collect()
    };
    POOLED.fetch_sub(idle.len(), Relaxed);
    idle.len()
}
