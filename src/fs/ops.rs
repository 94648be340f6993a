//! The one place a file operation runs: through io_uring from a green
//! thread (parking only the green thread), or as a plain syscall with the
//! worker's P handed on (the fallback, and OS threads).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::netpoll::uring::{self, Op};
use crate::scheduler::park::{self, blocks_green, BlockingSection};
use crate::sys::cvt_size;

/// Where a read or write goes in the file.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pos {
    /// At this offset; the file position does not move.
    At(u64),
    /// At the file position, which moves past the bytes transferred (or
    /// to the end first, for a file opened to append).
    Current,
}

impl Pos {
    /// The offset argument of preadv2/pwritev2 and io_uring: -1 means the
    /// file position.
    fn raw(self) -> i64 {
        match self {
            Pos::At(o) => o as i64,
            Pos::Current => -1,
        }
    }
}

/// Runs `f` (a blocking syscall) on the calling OS thread; from a green
/// thread, its P goes to another M meanwhile, so the worker's other green
/// threads run on (Go's entersyscall). EINTR is retried.
///
/// Like every blocking call of the runtime, it unwinds a cancelled green
/// thread (its runtime is shutting down) with [`crate::Cancelled`]: before
/// the call, and after it (the syscall is done with the caller's memory
/// by then), so a green thread that does nothing but file I/O still
/// stops.
pub(super) fn blocking<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    park::unwind_if_cancelled();
    let r = {
        let _section = BlockingSection::enter();
        crate::sys::retry_eintr(&mut f)
    };
    park::unwind_if_cancelled();
    r
}

/// Runs `op` on the ring from a green thread, else (an OS thread, no
/// ring, no room on it) `syscall` in a blocking section.
///
/// # Safety
///
/// The memory `op` names must be valid (for a read: writable and not
/// otherwise accessed) for the whole call.
unsafe fn on_ring_or_blocking(
    op: Op,
    syscall: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    if blocks_green() {
        // SAFETY: the caller keeps the memory valid for this whole call,
        // and `submit_and_wait` returns only once the kernel is done.
        if let Some(r) = unsafe { uring::submit_and_wait(op) } {
            return r.map(|n| n as usize);
        }
    }
    blocking(syscall)
}

/// Reads into `buf`; `flags` are RWF_* flags (RWF_DONTCACHE).
/// `nowait`: the file's own "try the page cache first" flag (buffered
/// files), cleared here when its file system has no RWF_NOWAIT (procfs
/// and sysfs say EOPNOTSUPP). Per file: another file system's files
/// keep their fast path.
pub(super) fn read(
    fd: RawFd,
    buf: &mut [u8],
    pos: Pos,
    flags: i32,
    nowait: Option<&AtomicBool>,
) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    if len == 0 {
        return Ok(0);
    }
    // Page-cache hits need no ring round trip: RWF_NOWAIT reads what is
    // cached without blocking, and says EAGAIN otherwise.
    if let Some(nowait) = nowait.filter(|n| n.load(Ordering::Relaxed) && blocks_green()) {
        match preadv2(fd, ptr, len, pos, flags | libc::RWF_NOWAIT) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && flags == 0 => {
                nowait.store(false, Ordering::Relaxed);
            }
            r => return r,
        }
    }
    let offset = pos.raw();
    let op = Op::Read {
        fd,
        ptr,
        len,
        offset,
        flags,
    };
    // SAFETY: `buf` is borrowed mutably for this whole call.
    unsafe { on_ring_or_blocking(op, || preadv2(fd, ptr, len, pos, flags)) }
}

/// Writes from `buf`; `flags` are RWF_* flags.
pub(super) fn write(fd: RawFd, buf: &[u8], pos: Pos, flags: i32) -> io::Result<usize> {
    let (ptr, len) = (buf.as_ptr(), buf.len());
    if len == 0 {
        return Ok(0);
    }
    let offset = pos.raw();
    let op = Op::Write {
        fd,
        ptr,
        len,
        offset,
        flags,
    };
    // SAFETY: `buf` is borrowed for this whole call (the kernel only
    // reads it).
    unsafe { on_ring_or_blocking(op, || pwritev2(fd, ptr, len, pos, flags)) }
}

/// fsync (or fdatasync when `data_only`).
pub(super) fn fsync(fd: RawFd, data_only: bool) -> io::Result<()> {
    let sync = || {
        // SAFETY: plain syscalls on the caller's open fd.
        let r = unsafe {
            if data_only {
                libc::fdatasync(fd)
            } else {
                libc::fsync(fd)
            }
        };
        crate::sys::cvt(r).map(|_| 0)
    };
    // SAFETY: no memory is involved.
    unsafe { on_ring_or_blocking(Op::Fsync { fd, data_only }, sync) }.map(drop)
}

fn preadv2(fd: RawFd, ptr: *mut u8, len: usize, pos: Pos, flags: i32) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // SAFETY: `iov` describes the caller's live, writable buffer.
    cvt_size(unsafe { libc::preadv2(fd, &iov, 1, pos.raw(), flags) })
}

fn pwritev2(fd: RawFd, ptr: *const u8, len: usize, pos: Pos, flags: i32) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: ptr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `iov` describes the caller's live buffer, which the kernel
    // only reads.
    cvt_size(unsafe { libc::pwritev2(fd, &iov, 1, pos.raw(), flags) })
}
