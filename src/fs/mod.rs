//! Files that never block a worker: buffered, direct (O_DIRECT) and
//! uncached (RWF_DONTCACHE), on io_uring.
//!
//! Regular files are always "ready" to epoll, so a runtime must keep their
//! reads from stalling its workers some other way. Here, a green thread's
//! file operation is queued on the process's io_uring ring and the green
//! thread parks until the kernel completes it (the completion arrives
//! through the same epoll netpoller as socket readiness); its worker runs
//! other green threads meanwhile. Submissions are batched: a worker enters the kernel once for
//! all the operations its green threads queued since it last did. Where
//! io_uring is missing or refused — or `GREENRT_IO_URING=off` — each
//! operation runs as a blocking syscall with the worker's P handed to
//! another thread meanwhile (Go's entersyscall), so other green threads
//! still run: [`backend`] says which. From a plain OS thread every
//! operation is a plain blocking syscall.
//!
//! Buffered reads try the page cache first without blocking
//! (`RWF_NOWAIT`): a cached read costs one syscall and no park.
//!
//! Direct files (see [`OpenOptions::direct`]) need aligned requests
//! ([`File::direct_alignment`], [`AlignedBuf`]); misaligned ones fail with
//! `InvalidInput` before reaching the kernel, never falling back to the
//! page cache.
//!
//! Cancellation: a green thread whose runtime shuts down while its file
//! operation is in flight asks the kernel to cancel it and waits for the
//! completion before unwinding, so the kernel never writes into a buffer
//! that is gone.

mod align;
mod file;
mod file_io;
mod ops;
mod options;
mod residency;

use std::io;
use std::path::Path;

pub use align::{AlignedBuf, Alignment};
pub use file::File;
pub use options::OpenOptions;
pub use residency::{residency, Residency};

/// RWF_DONTCACHE (Linux 6.14; not in the libc crate yet).
pub(crate) const RWF_DONTCACHE: i32 = 0x80;

/// The error for RWF_DONTCACHE where the kernel or file system lacks it.
pub(crate) fn dontcache_unsupported(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "uncached buffered I/O (RWF_DONTCACHE) is not supported for {what}: it needs \
             Linux 6.14 or later and a file system that implements it ({e})"
        ),
    )
}

/// How file operations of green threads reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Queued on an io_uring ring; the green thread parks until the
    /// completion arrives.
    IoUring,
    /// io_uring is unavailable (missing, refused, or
    /// `GREENRT_IO_URING=off`): each operation is a blocking syscall
    /// with the worker's P handed to another thread while it runs.
    BlockingHandoff,
}

/// The backend file operations use in this process (decided at the first
/// use and kept). `GREENRT_IO_URING=off` in the environment chooses the
/// fallback.
pub fn backend() -> Backend {
    if crate::netpoll::uring::available() {
        Backend::IoUring
    } else {
        Backend::BlockingHandoff
    }
}

/// Why io_uring is not used, if it is not (for logs and test output).
pub fn backend_reason() -> Option<String> {
    crate::netpoll::uring::unavailable_reason()
}

/// Reads a whole file, as [`std::fs::read`].
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let size = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut out = Vec::with_capacity(size);
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// Reads a whole file as UTF-8, as [`std::fs::read_to_string`].
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Writes `contents` as the whole file, creating or truncating it, as
/// [`std::fs::write`].
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    File::create(path)?.write_all_at(contents.as_ref(), 0)
}
