//! File sources of [`copy`](super::copy): a file — greenrt's or std's,
//! or a `Take` of one — copied to a greenrt stream socket goes by
//! sendfile(2) (see `splice::sendfile`), as Go's io.Copy does for an
//! os.File (and an io.LimitedReader of one).
//!
//! Not for files opened with O_DIRECT: sendfile would read them through
//! the page cache on some kernels, and bypassing it is why they were
//! opened so. Those get the buffered copy, which reads them directly,
//! into a buffer that meets their alignment (`copy_direct`).

use std::any::Any;
use std::io::{self, Read, Take, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::{buffered, CopyOptions};
use crate::fs::AlignedBuf;
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
    let Some(Kind::Buffered(fd)) = kind(file(&*reader)) else {
        return Ok(Outcome::NotAFile);
    };
    if let Some(t) = reader.downcast_mut::<Take<crate::fs::File>>() {
        return send_take(fd, t, dst, opts);
    }
    if let Some(t) = reader.downcast_mut::<Take<std::fs::File>>() {
        return send_take(fd, t, dst, opts);
    }
    if !super::zero_copy(opts) {
        return Ok(Outcome::NotAFile);
    }
    let mut moved = 0;
    let sent = splice::sendfile(fd, dst, None, &mut moved)?;
    Ok(outcome(sent, moved))
}

/// Sends at most `t`'s limit from `fd`, its file, and takes what was sent
/// off the limit (also on error, as a read loop would have).
fn send_take<F>(
    fd: RawFd,
    t: &mut Take<F>,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<Outcome> {
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

/// Copies from `reader` with a buffer if it is an O_DIRECT file (or a
/// `Take` of one); None for other sources. The buffer meets the file's
/// alignment, is a multiple of its length unit, and holds at least
/// [`DIRECT_BUF_SIZE`] (every direct read goes to the device, so small
/// ones are slow). A read shorter than asked ends the copy (the file
/// ended). greenrt files are read at aligned offsets whatever their
/// position and `Take` limit (`aligned_reads`); std files through their
/// position (`buffered::copy_through`).
pub(super) fn copy_direct<W>(
    reader: &mut dyn Any,
    writer: &mut W,
    buf_size: usize,
) -> Option<io::Result<u64>>
where
    W: Write + ?Sized,
{
    let Some(Kind::Direct { memory, unit }) = kind(file(&*reader)) else {
        return None;
    };
    let len = buf_size.max(DIRECT_BUF_SIZE).next_multiple_of(unit.max(1));
    let buf = &mut AlignedBuf::new(len, memory.max(crate::sys::page_size()));
    if let Some(f) = reader.downcast_mut::<crate::fs::File>() {
        return Some(aligned_reads(f, None, writer, buf, unit));
    }
    if let Some(t) = reader.downcast_mut::<Take<crate::fs::File>>() {
        let mut limit = t.limit();
        let r = aligned_reads(t.get_ref(), Some(&mut limit), writer, buf, unit);
        t.set_limit(limit);
        return Some(r);
    }
    // std's reads block the calling thread: each goes in a blocking
    // section, so a worker's P moves on while the device works.
    if let Some(f) = reader.downcast_mut::<std::fs::File>() {
        return Some(buffered::copy_through(&mut HandedOff(f), writer, buf, true));
    }
    let t = reader.downcast_mut::<Take<std::fs::File>>()?;
    Some(buffered::copy_through(&mut HandedOff(t), writer, buf, true))
}

/// Copies a direct greenrt file from its position (at most `limit`
/// bytes, shrunk by what was copied), moving the position past the bytes
/// copied (also on error). Every read is aligned whatever the position
/// and limit: it starts at the position rounded down to `unit` and asks
/// for a multiple of `unit`; only the bytes from the position up to the
/// limit are written. (Reading through `Take` would shorten the last
/// read to the limit, which a direct file refuses.)
fn aligned_reads<W>(
    file: &crate::fs::File,
    mut limit: Option<&mut u64>,
    writer: &mut W,
    buf: &mut [u8],
    unit: usize,
) -> io::Result<u64>
where
    W: Write + ?Sized,
{
    use std::io::Seek;
    let unit = unit.max(1) as u64;
    let mut pos = (&*file).stream_position()?;
    // Counted in `io::stats()` as copied bytes when dropped.
    let mut tally = crate::splice::counters::Tally::default();
    let result = loop {
        let left = limit.as_deref().copied().unwrap_or(u64::MAX);
        if left == 0 {
            break Ok(());
        }
        let start = pos - pos % unit;
        let skip = (pos - start) as usize;
        let want = ((buf.len() - skip) as u64).min(left) as usize;
        // `buf.len()` is a multiple of `unit`, so this stays inside it.
        let ask = ((skip + want) as u64).next_multiple_of(unit) as usize;
        let n = match file.read_at(&mut buf[..ask], start) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if n <= skip {
            break Ok(());
        }
        let got = (n - skip).min(want);
        if let Err(e) = writer.write_all(&buf[skip..skip + got]) {
            break Err(e);
        }
        pos += got as u64;
        tally.copied += got as u64;
        if let Some(l) = limit.as_deref_mut() {
            *l -= got as u64;
        }
        // A short direct read: the file ended.
        if n < ask {
            break Ok(());
        }
    };
    let moved = (&*file).seek(std::io::SeekFrom::Start(pos));
    result?;
    moved?;
    Ok(tally.copied)
}

/// A std reader whose every read runs in a `BlockingSection`.
struct HandedOff<'a, R: Read>(&'a mut R);

impl<R: Read> Read for HandedOff<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _section = crate::scheduler::park::BlockingSection::enter();
        self.0.read(buf)
    }
}

/// The least buffer of a copy from an O_DIRECT file.
pub(super) const DIRECT_BUF_SIZE: usize = 1 << 20;

/// A greenrt or std file, seen through a `Take`.
enum AnyFile<'a> {
    Greenrt(&'a crate::fs::File),
    Std(&'a std::fs::File),
}

/// The file `x` is or takes from, if any.
fn file(x: &dyn Any) -> Option<AnyFile<'_>> {
    if let Some(f) = x.downcast_ref::<crate::fs::File>() {
        return Some(AnyFile::Greenrt(f));
    }
    if let Some(f) = x.downcast_ref::<std::fs::File>() {
        return Some(AnyFile::Std(f));
    }
    if let Some(t) = x.downcast_ref::<Take<crate::fs::File>>() {
        return Some(AnyFile::Greenrt(t.get_ref()));
    }
    if let Some(t) = x.downcast_ref::<Take<std::fs::File>>() {
        return Some(AnyFile::Std(t.get_ref()));
    }
    None
}

/// How a file is read.
enum Kind {
    /// Through the page cache: sendfile may read it.
    Buffered(RawFd),
    /// With O_DIRECT: buffers at multiples of `memory`, lengths of `unit`.
    Direct { memory: usize, unit: usize },
}

fn kind(f: Option<AnyFile<'_>>) -> Option<Kind> {
    let fd = match f? {
        AnyFile::Greenrt(f) => {
            if let Some(a) = f.direct_alignment() {
                return Some(Kind::Direct {
                    memory: a.memory,
                    unit: a.offset,
                });
            }
            // sendfile would leave its pages cached, which is what the
            // file was opened to avoid: the buffered copy reads it
            // through its own (uncached) reads.
            if f.is_dontcache() {
                return None;
            }
            f.as_raw_fd()
        }
        AnyFile::Std(f) => f.as_raw_fd(),
    };
    // O_DIRECT may also come from `custom_flags` (greenrt's or std's);
    // the alignment is not known then, and a page meets every common one.
    // SAFETY: F_GETFL on an fd its owner keeps open; no memory touched.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags >= 0 && flags & libc::O_DIRECT != 0 {
        let page = crate::sys::page_size();
        return Some(Kind::Direct {
            memory: page,
            unit: page,
        });
    }
    Some(Kind::Buffered(fd))
}
