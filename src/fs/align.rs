//! O_DIRECT's rules: the alignment a file asks for, checking requests
//! against it before any syscall, and buffers that meet it.

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::path::Path;
use std::ptr::NonNull;

/// What O_DIRECT requires of a file's requests: every buffer address a
/// multiple of `memory`, every file offset and length a multiple of
/// `offset`. Found with statx's `STATX_DIOALIGN` where the file system
/// reports it, else the block device's logical block size, else 4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alignment {
    /// Alignment of buffer addresses, in bytes (a power of two).
    pub memory: usize,
    /// Alignment of file offsets and transfer lengths, in bytes (a power
    /// of two).
    pub offset: usize,
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buffer address a multiple of {}, offset and length multiples of {}",
            self.memory, self.offset
        )
    }
}

/// The last resort when neither the file system nor the device says.
const FALLBACK_ALIGN: usize = 4096;

/// The file system's answer for an open file: `Ok(Some(a))` with its
/// alignment, `Ok(None)` if it says it has no direct I/O, `Err` if statx
/// could not tell (old kernel, or a file system that does not report it).
fn statx_alignment(fd: RawFd) -> io::Result<Option<Alignment>> {
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the empty path with AT_EMPTY_PATH names `fd` itself (an
    // open fd of the caller's); `stx` is a valid, writable statx.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    crate::sys::cvt(r)?;
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    if stx.stx_dio_mem_align == 0 || stx.stx_dio_offset_align == 0 {
        return Ok(None);
    }
    Ok(Some(Alignment {
        memory: stx.stx_dio_mem_align as usize,
        offset: stx.stx_dio_offset_align as usize,
    }))
}

/// The logical block size of the device holding `fd`'s file, from sysfs.
fn device_block_size(fd: RawFd) -> Option<usize> {
    // SAFETY: stat is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open fd; `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let path = format!("/sys/dev/block/{major}:{minor}/queue/logical_block_size");
    // A partition has no queue of its own: its parent's holds it.
    let parent = format!("/sys/dev/block/{major}:{minor}/../queue/logical_block_size");
    [path, parent].iter().find_map(|p| {
        let s = std::fs::read_to_string(p).ok()?;
        let n: usize = s.trim().parse().ok()?;
        n.is_power_of_two().then_some(n)
    })
}

/// The alignment O_DIRECT requests on `fd` must meet (see [`Alignment`]).
/// Errors if the file system says it cannot do direct I/O.
pub(super) fn probe(fd: RawFd, path: &Path) -> io::Result<Alignment> {
    match statx_alignment(fd) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(no_direct_io(
            path,
            "the file system reports no direct I/O support",
        )),
        Err(_) => {
            let n = device_block_size(fd).unwrap_or(FALLBACK_ALIGN);
            Ok(Alignment {
                memory: n,
                offset: n,
            })
        }
    }
}

/// The error for O_DIRECT on a file system that refuses it.
pub(super) fn no_direct_io(path: &Path, why: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("O_DIRECT is not supported for {}: {why}", path.display()),
    )
}

/// Checks a direct request against `a` before any syscall: the buffer's
/// address and length, and the file offset (None: the file's current
/// position, which the caller checked).
pub(super) fn check(a: Alignment, addr: usize, len: usize, offset: u64) -> io::Result<()> {
    let bad = |what: &str, value: u64, align: usize| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "misaligned O_DIRECT request: {what} {value:#x} is not a multiple of {align} \
                 (this file needs {a})"
            ),
        )
    };
    if addr % a.memory != 0 {
        return Err(bad("buffer address", addr as u64, a.memory));
    }
    if offset % a.offset as u64 != 0 {
        return Err(bad("file offset", offset, a.offset));
    }
    if len % a.offset != 0 {
        return Err(bad("length", len as u64, a.offset));
    }
    Ok(())
}

/// A zeroed heap buffer whose address is a multiple of a chosen
/// alignment: what O_DIRECT reads and writes need (see
/// [`File::direct_alignment`](super::File::direct_alignment)).
///
/// ```
/// let mut buf = greenrt::fs::AlignedBuf::new(8192, 4096);
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// buf[..5].copy_from_slice(b"hello");
/// assert_eq!(buf.len(), 8192);
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
}

// SAFETY: the buffer owns its allocation outright, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads through `&[u8]`, like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes at an address that is a multiple of
    /// `align`.
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two, if `len` rounded up to `align`
    /// overflows `isize`, or (as `Vec` does) if memory runs out.
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        assert!(
            align.is_power_of_two(),
            "greenrt::fs::AlignedBuf::new: alignment {align} is not a power of two"
        );
        if len == 0 {
            // No allocation: an aligned, non-null, dangling pointer, as
            // an empty Vec holds.
            let ptr = NonNull::new(align as *mut u8).expect("align is non-zero");
            return AlignedBuf { ptr, len, align };
        }
        let layout = Layout::from_size_align(len, align).unwrap_or_else(|_| {
            panic!("greenrt::fs::AlignedBuf::new: {len} bytes at alignment {align} is too large")
        });
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout);
        };
        AlignedBuf { ptr, len, align }
    }

    /// A zeroed buffer of `len` bytes for direct requests under `a`:
    /// page-aligned, or more if `a.memory` asks for more. File systems
    /// often accept 512-byte-aligned memory, but a 4 KiB read into a
    /// buffer that straddles two pages costs the kernel a second segment
    /// (random 4 KiB reads here ran about 10 % slower).
    pub fn for_alignment(len: usize, a: Alignment) -> AlignedBuf {
        AlignedBuf::new(len, a.memory.max(crate::sys::page_size()))
    }

    /// The alignment the buffer was made with.
    pub fn align(&self) -> usize {
        self.align
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised (zeroed) bytes owned
        // by self (or is dangling with len 0, which a slice allows).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: allocated in `new` with exactly this layout (which was
        // valid then, so it is now).
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, self.align),
            )
        };
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.align)
            .finish_non_exhaustive()
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        let mut b = AlignedBuf::new(self.len, self.align);
        b.copy_from_slice(self);
        b
    }
}
