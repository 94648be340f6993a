//! File sources of [`copy`](super::copy): a file — greenrt's or std's,
//! or a `Take` of one — copied to a greenrt stream socket goes by
//! sendfile(2) (see `splice::sendfile`), as Go's io.Copy does for an
//! os.File (and an io.LimitedReader of one).
//!
//! Not for files opened with O_DIRECT: sendfile would read them through
//! the page cache on some kernels, and bypassing it is why they were
//! opened so. Those get the buffered copy, which reads them directly.

use std::any::Any;
use std::io::{self, Take};
use std::os::fd::{AsRawFd, RawFd};

use super::CopyOptions;
use crate::splice::{self, Endpoint, Sent};

/// How far sendfile got with a file source.
pub(super) enum Outcome {
    /// `reader` is not a file source sendfile may read (or copies may
    /// not be zero-copy): nothing was sent.
    NotAFile,
    /// Everything was sent (to end of file or the `Take`'s limit).
    Done(u64),
    /// This many bytes were sent, then the kernel refused: the rest is
    /// for a buffered copy from `reader`, whose file position (and
    /// `Take` limit) account for what was sent.
    Refused(u64),
}

/// Sends `reader` to `dst` by sendfile if it is a file source.
pub(super) fn send(
    reader: &mut dyn Any,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<Outcome> {
    if let Some(fd) = file_fd(&*reader) {
        if !super::zero_copy(opts) {
            return Ok(Outcome::NotAFile);
        }
        let mut moved = 0;
        let sent = splice::sendfile(fd, dst, None, &mut moved)?;
        return Ok(outcome(sent, moved));
    }
    if let Some(t) = reader.downcast_mut::<Take<crate::fs::File>>() {
        return send_take(t, dst, opts);
    }
    if let Some(t) = reader.downcast_mut::<Take<std::fs::File>>() {
        return send_take(t, dst, opts);
    }
    Ok(Outcome::NotAFile)
}

/// Sends at most `t`'s limit, and takes what was sent off the limit (also
/// on error, as a read loop would have).
fn send_take<F: Any>(
    t: &mut Take<F>,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<Outcome> {
    let Some(fd) = file_fd(t.get_ref()) else {
        return Ok(Outcome::NotAFile);
    };
    if t.limit() == 0 {
        return Ok(Outcome::Done(0));
    }
    if !super::zero_copy(opts) {
        return Ok(Outcome::NotAFile);
    }
    let mut moved = 0;
    let sent = splice::sendfile(fd, dst, Some(t.limit()), &mut moved);
    t.set_limit(t.limit() - moved);
    Ok(outcome(sent?, moved))
}

fn outcome(sent: Sent, moved: u64) -> Outcome {
    match sent {
        Sent::All => Outcome::Done(moved),
        Sent::Refused => Outcome::Refused(moved),
    }
}

/// The fd of `x` if it is a greenrt or std file not opened with O_DIRECT.
fn file_fd(x: &dyn Any) -> Option<RawFd> {
    let fd = if let Some(f) = x.downcast_ref::<crate::fs::File>() {
        if f.direct_alignment().is_some() {
            return None;
        }
        f.as_raw_fd()
    } else if let Some(f) = x.downcast_ref::<std::fs::File>() {
        f.as_raw_fd()
    } else {
        return None;
    };
    // O_DIRECT may also come from `custom_flags` (greenrt's or std's).
    // SAFETY: F_GETFL on an fd its owner keeps open; no memory touched.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (flags >= 0 && flags & libc::O_DIRECT == 0).then_some(fd)
}
