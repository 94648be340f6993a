//! Opening files: std's options plus O_DIRECT and uncached I/O.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::align::{self, AlignedBuf};
use super::ops::{self, blocking, Pos};
use super::File;

/// Options for opening a file, as [`std::fs::OpenOptions`], plus
/// [`direct`](OpenOptions::direct) (O_DIRECT: bypass the page cache) and
/// [`dontcache`](OpenOptions::dontcache) (buffered, but drop the pages
/// each read or write brings in).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let file = greenrt::fs::OpenOptions::new().read(true).direct(true).open("big.dat")?;
/// let a = file.direct_alignment().expect("opened with direct(true)");
/// let mut buf = greenrt::fs::AlignedBuf::for_alignment(1 << 20, a);
/// let n = file.read_at(&mut buf, 0)?;
/// # let _ = n; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    direct: bool,
    dontcache: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// All options off (std's default), mode 0o666.
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            direct: false,
            dontcache: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.read = read;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.write = write;
        self
    }

    /// Writes through the file position go to the end (O_APPEND).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.append = append;
        self
    }

    /// Truncate to length 0 (needs write access).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.truncate = truncate;
        self
    }

    /// Create the file if it does not exist (needs write or append).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Create the file, failing if it exists (O_EXCL).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// Permission bits for a created file (before the umask), as
    /// `std::os::unix::fs::OpenOptionsExt::mode`.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags, as `OpenOptionsExt::custom_flags` (the
    /// access mode bits are ignored).
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.custom_flags = flags;
        self
    }

    /// Direct I/O (O_DIRECT): reads and writes bypass the page cache.
    /// Every request must be aligned (see
    /// [`File::direct_alignment`]); a misaligned one fails with
    /// `InvalidInput` before reaching the kernel. Opening fails with
    /// `Unsupported`, naming the path, where the file system refuses it.
    pub fn direct(&mut self, direct: bool) -> &mut OpenOptions {
        self.direct = direct;
        self
    }

    /// Uncached buffered I/O (RWF_DONTCACHE, Linux 6.14 and later): reads
    /// and writes go through the page cache, with no alignment rules, but
    /// the pages they bring in are dropped once done (pages cached before
    /// stay). Opening fails with `Unsupported` where the kernel or file
    /// system lacks it.
    pub fn dontcache(&mut self, dontcache: bool) -> &mut OpenOptions {
        self.dontcache = dontcache;
        self
    }

    fn flags(&self) -> io::Result<i32> {
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return Err(invalid("no access mode: set read, write or append"))
            }
        };
        let writable = self.write || self.append;
        if (self.truncate || self.create || self.create_new) && !writable {
            return Err(invalid("truncate and create need write or append access"));
        }
        if self.truncate && self.append && !self.create_new {
            return Err(invalid("truncate and append together make no sense"));
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (false, false, false) => 0,
        };
        let direct = if self.direct { libc::O_DIRECT } else { 0 };
        Ok(libc::O_CLOEXEC | access | creation | direct | (self.custom_flags & !libc::O_ACCMODE))
    }

    /// Opens `path` with these options.
    pub fn open<P: AsRef<Path>>(&self, path: P) -> io::Result<File> {
        let path = path.as_ref();
        let flags = self.flags()?;
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| invalid(format!("path {} contains a NUL byte", path.display())))?;
        let mode = self.mode as libc::c_uint;
        // Owned inside the call: `blocking` may unwind a cancelled green
        // thread right after the open, which must not leak the fd.
        let fd = blocking(|| {
            // SAFETY: `cpath` is a NUL-terminated path; a plain syscall.
            let fd = crate::sys::cvt(unsafe { libc::open(cpath.as_ptr(), flags, mode) })?;
            // SAFETY: `fd` was just opened (checked) and is owned by no
            // one else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        // O_DIRECT through `custom_flags` makes a direct file too.
        let direct = self.direct || flags & libc::O_DIRECT != 0;
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(align::no_direct_io(path, "open(O_DIRECT) gave EINVAL"));
            }
            // std's error, raw OS error kept (callers match on it).
            Err(e) => return Err(e),
        };
        let direct = if direct {
            // statx, sysfs and one read: may wait for the disk.
            let a = blocking(|| align::probe(fd.as_raw_fd(), path))?;
            if self.read {
                probe_direct_read(&fd, a, path)?;
            }
            Some(a)
        } else {
            None
        };
        if self.dontcache {
            blocking(|| probe_dontcache(&fd, path))?;
        }
        Ok(File::from_parts(fd, direct, self.dontcache))
    }
}

/// Some file systems accept O_DIRECT at open and fail the first request:
/// one real aligned read finds out while the caller can still be told
/// clearly.
fn probe_direct_read(fd: &OwnedFd, a: align::Alignment, path: &Path) -> io::Result<()> {
    let mut buf = AlignedBuf::new(a.offset, a.memory);
    match ops::read(fd.as_raw_fd(), &mut buf, Pos::At(0), 0, None) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(align::no_direct_io(
            path,
            format!("an aligned read ({a}) gave EINVAL"),
        )),
        Err(e) => Err(with_path(e, path)),
    }
}

/// RWF_DONTCACHE is refused per request, not at open: ask with a
/// one-byte read (the kernel checks the flag before it looks for data; an
/// empty read it answers without checking).
fn probe_dontcache(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: `iov` describes one writable byte on our stack.
    let r = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, 0, super::RWF_DONTCACHE) };
    match crate::sys::cvt_size(r) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
            ) =>
        {
            Err(super::dontcache_unsupported(path.display(), e))
        }
        // EBADF (a write-only file) and the like: the flag was not
        // refused; a write refusing it later says so the same way.
        _ => Ok(()),
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// `e`, with the path it concerns in its message (std's errors lack it).
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
