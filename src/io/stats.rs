//! `greenrt::io::stats()`: the copy paths' counters (kept in
//! `splice::counters`, beside the code that counts) as a public snapshot.

use std::sync::atomic::Ordering::Relaxed;

use crate::splice::counters::{
    COPIED_BYTES, FALLBACKS, SENDFILE_CALLS, SPLICED_BYTES, SPLICE_CALLS,
};
use crate::splice::pipe;

/// Counters of [`copy`](super::copy) and
/// [`copy_bidirectional`](super::copy_bidirectional), process-wide and
/// cumulative (except `pool_len`); see [`stats`](super::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes moved without crossing user space: by splice(2) (out of a
    /// pipe into the destination) or by sendfile(2) (from a file).
    pub spliced_bytes: u64,
    /// Bytes moved through a user-space buffer (read then write): the
    /// buffered mode, the fallback, and types that cannot be spliced.
    pub copied_bytes: u64,
    /// splice(2) system calls made, both into and out of pipes.
    pub splice_calls: u64,
    /// sendfile(2) system calls made (copies from a file to a socket).
    pub sendfile_calls: u64,
    /// Copies that tried to splice and fell back to buffering: the kernel
    /// refused splice or sendfile for these fds (EINVAL/ENOSYS), or no
    /// pipe could be made (e.g. EMFILE), or SIGPIPE is at its default
    /// action.
    pub fallbacks: u64,
    /// Pipes ever created.
    pub pipes_created: u64,
    /// Pipes ever closed (a full pool, a pipe left holding data, or
    /// [`clear_pipe_pool`](super::clear_pipe_pool)).
    pub pipes_closed: u64,
    /// Idle pipes in the pool now.
    pub pool_len: usize,
}

impl CopyStats {
    /// What the counters grew by since `earlier` (an older reading), with
    /// `pool_len` as of `self`: the copies made in between.
    pub fn since(&self, earlier: &CopyStats) -> CopyStats {
        CopyStats {
            spliced_bytes: self.spliced_bytes - earlier.spliced_bytes,
            copied_bytes: self.copied_bytes - earlier.copied_bytes,
            splice_calls: self.splice_calls - earlier.splice_calls,
            sendfile_calls: self.sendfile_calls - earlier.sendfile_calls,
            fallbacks: self.fallbacks - earlier.fallbacks,
            pipes_created: self.pipes_created - earlier.pipes_created,
            pipes_closed: self.pipes_closed - earlier.pipes_closed,
            pool_len: self.pool_len,
        }
    }

    /// Pipes open now that are not in the pool: held by copies in flight.
    pub fn pipes_in_use(&self) -> u64 {
        self.pipes_created
            .saturating_sub(self.pipes_closed)
            .saturating_sub(self.pool_len as u64)
    }
}

pub(crate) fn snapshot() -> CopyStats {
    CopyStats {
        spliced_bytes: SPLICED_BYTES.load(Relaxed),
        copied_bytes: COPIED_BYTES.load(Relaxed),
        splice_calls: SPLICE_CALLS.load(Relaxed),
        sendfile_calls: SENDFILE_CALLS.load(Relaxed),
        fallbacks: FALLBACKS.load(Relaxed),
        pipes_created: pipe::CREATED.load(Relaxed),
        pipes_closed: pipe::CLOSED.load(Relaxed),
        pool_len: pipe::pooled(),
    }
}
