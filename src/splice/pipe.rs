//! Pipes for splicing, and the pool that keeps them.
//!
//! splice(2) needs a pipe between two sockets. Creating one costs three
//! syscalls (pipe2 and two fcntl) and two fds, so pipes are reused: a copy
//! takes one from the pool when it has bytes to move and gives it back as
//! soon as the pipe is empty again — including while it waits for its
//! source to become readable — so an idle connection holds no pipe.
//!
//! The pool is one process-wide, bounded stack behind a `parking_lot`
//! mutex rather than one per P: a green thread can move to another P
//! between taking a pipe and giving it back, pipes belong to no runtime
//! (the pool outlives them, a per-P pool would have to be emptied when its
//! runtime shuts down), and the lock is held only for a push or a pop.
//! At most [`MAX_POOLED`] idle pipes are kept; a pipe given back to a
//! full pool is closed, and so is a pipe that still holds data (those
//! bytes belong to a copy that failed and must not leak into the next).
//! `greenrt::io::clear_pipe_pool` closes the idle ones on demand.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::netpoll::last_os_error;

/// Idle pipes kept for reuse (two fds each).
pub(crate) const MAX_POOLED: usize = 64;

/// Capacity asked for with F_SETPIPE_SZ: 1 MiB, the default
/// /proc/sys/fs/pipe-max-size, so one splice can move up to this much.
const PIPE_SIZE: libc::c_int = 1 << 20;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

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
        // SAFETY: fcntl on the pipe we own.
        let mut size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        if size < 0 {
            // SAFETY: as above.
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

/// A pipe from the pool, or a new one.
pub(crate) fn get() -> io::Result<Pipe> {
    let pooled = {
        // Never preempted while holding the lock (other green threads
        // would spin or block their worker on it).
        let _np = crate::preempt::disable();
        POOL.lock().pop()
    };
    match pooled {
        Some(p) => Ok(p),
        None => Pipe::new(),
    }
}

/// Gives `pipe` back: pooled if it is empty and the pool has room, else
/// closed (outside the lock).
pub(crate) fn put(pipe: Pipe) {
    if pipe.data != 0 {
        return drop(pipe);
    }
    let rejected = {
        let _np = crate::preempt::disable();
        let mut pool = POOL.lock();
        if pool.len() < MAX_POOLED {
            pool.push(pipe);
            None
        } else {
            Some(pipe)
        }
    };
    drop(rejected);
}

/// Idle pipes in the pool.
pub(crate) fn pooled() -> usize {
    let _np = crate::preempt::disable();
    POOL.lock().len()
}

/// Closes every idle pipe; returns how many.
pub(crate) fn clear() -> usize {
    let idle = {
        let _np = crate::preempt::disable();
        std::mem::take(&mut *POOL.lock())
    };
    idle.len()
}
