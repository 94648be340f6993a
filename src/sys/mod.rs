//! The bottom layer: thin, allocation-free wrappers over the system calls
//! and conventions the rest of greenrt shares (syscall results, errno,
//! timespecs, futexes, signal forwarding). Nothing here knows about green
//! threads or the scheduler; everything above may use it.

pub(crate) mod cgroup;
pub(crate) mod clock;
mod futex;
mod lock;
pub(crate) mod malloc;
pub(crate) mod sched_class;
mod signal;
pub(crate) mod sync;

use std::io;

pub(crate) use futex::{futex_wait, futex_wake};
pub(crate) use lock::{FutexGuard, FutexLock};
pub(crate) use signal::call_previous_handler;

/// Asks the CPU to start loading the cache line at `addr`, to be used a
/// little later. A hint: it never faults and changes no memory, so any
/// address (dangling, null, unmapped) is allowed.
#[inline(always)]
pub(crate) fn prefetch<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch has no architectural effect and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast())
    };
}

/// The calling thread's errno as an `io::Error`, never inlined.
///
/// When `io::Error::last_os_error()` is inlined into a retry loop, LLVM
/// computes the thread's errno address once and reuses it after a wait,
/// which may resume the green thread on another OS thread — the retry then
/// reads the previous thread's errno (seen as a stale EAGAIN after EPIPE,
/// which parked a writer forever). Every syscall wrapper that runs on
/// green threads reads errno through here.
#[inline(never)]
pub(crate) fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// A syscall's `int` result as `io::Result` (errno read afresh, see
/// `last_os_error`).
#[inline(always)]
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(last_os_error())
    } else {
        Ok(r)
    }
}

/// A syscall's `ssize_t` result as `io::Result<usize>`.
#[inline(always)]
pub(crate) fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A relative timeout in nanoseconds as a timespec.
pub(crate) fn timespec_from_ns(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// A pointer to `ts`, or null for "no timeout".
pub(crate) fn timespec_ptr(ts: &Option<libc::timespec>) -> *const libc::timespec {
    ts.as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec)
}

/// Runs `op` again while it fails with EINTR (a signal interrupted the
/// syscall before it did anything).
#[inline(always)]
pub(crate) fn retry_eintr<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The most buffers one readv(2)/writev(2)/sendmsg(2) takes (IOV_MAX on
/// Linux); the rest wait for the next call, as with any short transfer.
pub(crate) const IOV_MAX: usize = 1024;

/// How many of `n` buffers one call passes: at most [`IOV_MAX`].
pub(crate) fn iov_count(n: usize) -> libc::c_int {
    n.min(IOV_MAX) as libc::c_int
}

/// The system's page size in bytes.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}
