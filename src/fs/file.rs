//! An open file whose reads and writes park only the green thread.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::align::{self, Alignment};
use super::ops::{self, blocking, Pos};
use super::OpenOptions;
use crate::sync::Mutex;

/// An open file, like [`std::fs::File`], whose operations block only the
/// calling green thread: on a worker they go through io_uring (or, where
/// that is unavailable, run with the worker's P handed to another
/// thread), so the worker's other green threads keep running. From a
/// plain OS thread they block that thread, as std's do.
///
/// A file opened with [`OpenOptions::direct`] bypasses the page cache;
/// its requests must meet [`File::direct_alignment`].
///
/// `Read`, `Write` and `Seek` are implemented for `File` and `&File` and
/// share the file position, as std's are; `read_at` and `write_at`
/// neither use nor move it. Reads, writes and seeks through the position
/// take turns, as read(2) and write(2) do on a shared file: green threads
/// reading one regular `&File` at once each get their own bytes, and
/// writers their own stretch of the file. That holds for this `File` and
/// its [`try_clone`](File::try_clone)s; another process, an fd
/// duplicated outside greenrt, or a [`greenrt::io::copy`](crate::io::copy)
/// from the file (sendfile(2), which takes no lock either) moving the
/// same position meanwhile is not kept out.
pub struct File {
    fd: OwnedFd,
    direct: Option<Alignment>,
    dontcache: bool,
    /// Opened with O_APPEND: writes through the position go to the end.
    append: bool,
    /// Held across every use of the file position (see `at_position`),
    /// shared with `try_clone`s (which share the position). Only for a
    /// regular file (`positioned`), where the kernel keeps read(2) and
    /// write(2) in turn too.
    position_lock: Arc<Mutex<()>>,
    positioned: bool,
    /// Reads try the page cache first with RWF_NOWAIT (buffered files,
    /// until the file system says it has none; see `ops::read`).
    nowait: AtomicBool,
}

impl File {
    /// A file from an fd just opened with these properties; `append` is
    /// read from the fd's flags.
    pub(super) fn from_parts(fd: OwnedFd, direct: Option<Alignment>, dontcache: bool) -> File {
        // SAFETY: F_GETFL on our open fd; no memory involved.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        // SAFETY: all-zero is a valid `stat` (integers only).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our open fd fills `st`, a valid, writable stat.
        let stat_ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
        File {
            fd,
            direct,
            dontcache,
            append: flags >= 0 && flags & libc::O_APPEND != 0,
            position_lock: Arc::default(),
            // A FIFO, tty or device has no position to share, and a read
            // there may wait for ever: holding the lock through it would
            // keep a writer on the same file out (as the kernel's own
            // lock is for regular files only).
            positioned: !stat_ok || st.st_mode & libc::S_IFMT == libc::S_IFREG,
            nowait: AtomicBool::new(direct.is_none() && !dontcache),
        }
    }

    /// Whether reads and writes drop the pages they bring into the page
    /// cache (see [`OpenOptions::dontcache`]).
    pub fn is_dontcache(&self) -> bool {
        self.dontcache
    }

    /// Opens `path` read-only, through the page cache.
    pub fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens `path` write-only, creating it or truncating it.
    pub fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// std's [`OpenOptions`] equivalent, for chaining.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// The alignment requests on this file must meet: `Some` for a file
    /// opened with [`OpenOptions::direct`], None for a buffered one.
    pub fn direct_alignment(&self) -> Option<Alignment> {
        self.direct
    }

    fn rw_flags(&self) -> i32 {
        if self.dontcache {
            super::RWF_DONTCACHE
        } else {
            0
        }
    }

    /// Where a request at `pos` goes. A direct file's "current position"
    /// becomes an explicit offset (moved past the transfer by
    /// `advance`): io_uring's position offset (-1) is not moved by a
    /// direct request, which completes asynchronously.
    fn resolve(&self, pos: Pos) -> io::Result<Pos> {
        match (pos, self.direct) {
            (Pos::Current, Some(_)) => Ok(Pos::At(self.position()?)),
            _ => Ok(pos),
        }
    }

    /// After `n` bytes went at `resolved` for a request made at `asked`:
    /// moves the position the way read(2) and write(2) would have.
    fn advance(&self, asked: Pos, resolved: Pos, n: usize, write: bool) -> io::Result<()> {
        let (Pos::Current, Pos::At(at)) = (asked, resolved) else {
            return Ok(());
        };
        let (off, whence) = if write && self.append {
            (0, libc::SEEK_END)
        } else {
            ((at + n as u64) as i64, libc::SEEK_SET)
        };
        // SAFETY: lseek on our own open fd; it never blocks.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), off, whence) };
        if r < 0 {
            return Err(crate::sys::last_os_error());
        }
        Ok(())
    }

    /// A direct file read through its position: the short read that
    /// reached end of file left the position unaligned, and a read loop's
    /// next read must say 0 (end of file), as read(2) does, not
    /// `InvalidInput`.
    fn read_ends_here(&self, asked: Pos, pos: Pos) -> io::Result<bool> {
        let (Pos::Current, Pos::At(at), Some(a)) = (asked, pos, self.direct) else {
            return Ok(false);
        };
        if at % a.offset as u64 == 0 {
            return Ok(false);
        }
        Ok(at >= self.metadata()?.len())
    }

    fn check(&self, addr: usize, len: usize, pos: Pos) -> io::Result<()> {
        let Some(a) = self.direct else {
            return Ok(());
        };
        let offset = match pos {
            Pos::At(o) => o,
            Pos::Current => self.position()?,
        };
        align::check(a, addr, len, offset)
    }

    fn position(&self) -> io::Result<u64> {
        // SAFETY: lseek on our own open fd; it never blocks.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), 0, libc::SEEK_CUR) };
        if r < 0 {
            return Err(crate::sys::last_os_error());
        }
        Ok(r as u64)
    }

    /// Runs `op` holding the position lock when it uses the file
    /// position (and refuses an offset the kernel cannot take). io_uring reads and writes "at the file position" (offset
    /// -1) load and store it without the lock read(2) takes, and a direct
    /// file's position is read, used and moved in three steps here
    /// (`resolve`, `advance`): without the lock two green threads would
    /// read the same bytes, or write over each other's. A green thread
    /// waiting for the lock parks (`sync::Mutex`); nothing ever panics
    /// while holding it, so poisoning is ignored (a cancelled green
    /// thread unwinds through it).
    pub(super) fn at_position<T>(
        &self,
        asked: Pos,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match asked {
            // pread(2) and pwrite(2) say EINVAL, as std reports it; as -1
            // the kernel would take it for "at the file position".
            Pos::At(o) if i64::try_from(o).is_err() => {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            }
            Pos::At(_) => op(),
            Pos::Current if !self.positioned => op(),
            Pos::Current => {
                let _turn = self.position_lock.lock().unwrap_or_else(|e| e.into_inner());
                op()
            }
        }
    }

    pub(super) fn read_pos(&self, buf: &mut [u8], asked: Pos) -> io::Result<usize> {
        self.at_position(asked, || self.read_pos_locked(buf, asked))
    }

    pub(super) fn write_pos(&self, buf: &[u8], asked: Pos) -> io::Result<usize> {
        self.at_position(asked, || self.write_pos_locked(buf, asked))
    }

    fn read_pos_locked(&self, buf: &mut [u8], asked: Pos) -> io::Result<usize> {
        let pos = self.resolve(asked)?;
        if self.read_ends_here(asked, pos)? {
            return Ok(0);
        }
        self.check(buf.as_ptr() as usize, buf.len(), pos)?;
        let n = self.explain(ops::read(
            self.fd.as_raw_fd(),
            buf,
            pos,
            self.rw_flags(),
            Some(&self.nowait),
        ))?;
        self.advance(asked, pos, n, false)?;
        Ok(n)
    }

    fn write_pos_locked(&self, buf: &[u8], asked: Pos) -> io::Result<usize> {
        let pos = self.resolve(asked)?;
        self.check(buf.as_ptr() as usize, buf.len(), pos)?;
        let n = self.explain(ops::write(self.fd.as_raw_fd(), buf, pos, self.rw_flags()))?;
        self.advance(asked, pos, n, true)?;
        Ok(n)
    }

    /// A request refused for its RWF_DONTCACHE flag says so.
    fn explain(&self, r: io::Result<usize>) -> io::Result<usize> {
        match r {
            Err(e) if self.dontcache && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Err(super::dontcache_unsupported("this file", e))
            }
            r => r,
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at
    /// end of file). The file position does not move.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_pos(buf, Pos::At(offset))
    }

    /// Writes up to `buf.len()` bytes at `offset`; returns how many. The
    /// file position does not move (but see `pwrite(2)` on O_APPEND).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.write_pos(buf, Pos::At(offset))
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with
    /// `UnexpectedEof` if the file ends first (the bytes read so far are
    /// in `buf`).
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(eof()),
                // (A transfer is at most MAX_LEN bytes, as read(2)'s.)
                Ok(n)
                    if n < buf.len().min(crate::netpoll::uring::MAX_LEN)
                        && self.direct.is_some() =>
                {
                    // A short direct read means the file ended (and the
                    // rest could not be asked for aligned anyway).
                    let _ = n;
                    return Err(eof());
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flushes data and metadata to the device (fsync).
    pub fn sync_all(&self) -> io::Result<()> {
        ops::fsync(self.fd.as_raw_fd(), false)
    }

    /// Flushes data, and only the metadata needed to read it back
    /// (fdatasync).
    pub fn sync_data(&self) -> io::Result<()> {
        ops::fsync(self.fd.as_raw_fd(), true)
    }

    /// Truncates or extends the file to `size` bytes (extending fills
    /// with zeros). The file position does not move.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        let size = i64::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size too large"))?;
        let fd = self.fd.as_raw_fd();
        // SAFETY: a plain syscall on our open fd.
        blocking(|| crate::sys::cvt(unsafe { libc::ftruncate(fd, size) }).map(drop))
    }

    /// The file's metadata, as [`std::fs::File::metadata`].
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        blocking(|| self.as_std().metadata())
    }

    /// Changes the file's permissions, as
    /// [`std::fs::File::set_permissions`].
    pub fn set_permissions(&self, perm: std::fs::Permissions) -> io::Result<()> {
        blocking(|| self.as_std().set_permissions(perm.clone()))
    }

    /// A second handle to the same open file (shared position and flags).
    pub fn try_clone(&self) -> io::Result<File> {
        Ok(File {
            fd: self.fd.try_clone()?,
            direct: self.direct,
            dontcache: self.dontcache,
            append: self.append,
            position_lock: self.position_lock.clone(),
            positioned: self.positioned,
            nowait: AtomicBool::new(self.nowait.load(std::sync::atomic::Ordering::Relaxed)),
        })
    }

    /// A std view of the same fd, for its blocking-only helpers; never
    /// closed (the `ManuallyDrop`).
    fn as_std(&self) -> ManuallyDrop<std::fs::File> {
        // SAFETY: the fd stays open while `self` lives, and the
        // ManuallyDrop never closes it.
        ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(self.fd.as_raw_fd()) })
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.fd.as_raw_fd())
            .field("direct", &self.direct)
            .field("dontcache", &self.dontcache)
            .finish()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl IntoRawFd for File {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<File> for OwnedFd {
    fn from(f: File) -> OwnedFd {
        f.fd
    }
}

impl From<File> for std::fs::File {
    fn from(f: File) -> std::fs::File {
        std::fs::File::from(f.fd)
    }
}

impl TryFrom<std::fs::File> for File {
    type Error = io::Error;

    /// Adopts a std file; one opened with O_DIRECT (through
    /// `custom_flags`) gets its alignment probed as
    /// [`OpenOptions::direct`] would.
    fn try_from(f: std::fs::File) -> io::Result<File> {
        let fd = OwnedFd::from(f);
        // SAFETY: F_GETFL on our open fd.
        let flags = crate::sys::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
        let direct = if flags & libc::O_DIRECT != 0 {
            Some(align::probe(fd.as_raw_fd(), Path::new("<fd>"))?)
        } else {
            None
        };
        Ok(File::from_parts(fd, direct, false))
    }
}
