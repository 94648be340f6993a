//! How much of a file the page cache holds (mincore), as vmtouch shows.

use std::io;
use std::num::NonZeroUsize;
use std::path::Path;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// A file's page-cache residency: see [`residency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Residency {
    /// Pages of the file in the page cache.
    pub resident_pages: u64,
    /// Pages the file spans (its size rounded up to whole pages).
    pub total_pages: u64,
}

impl Residency {
    /// The resident share, 0.0 to 1.0 (1.0 for an empty file).
    pub fn fraction(&self) -> f64 {
        if self.total_pages == 0 {
            1.0
        } else {
            self.resident_pages as f64 / self.total_pages as f64
        }
    }
}

/// Pages per mincore call: bounds the mapping and the vector at 256 MiB
/// and 64 KiB, whatever the file's size.
const CHUNK_PAGES: usize = 65536;

/// How many of `path`'s pages are in the page cache: the file is mapped
/// (never read: mapping does not fault pages in) and asked with
/// `mincore(2)`. Like vmtouch without `-t`, it changes nothing.
pub fn residency<P: AsRef<Path>>(path: P) -> io::Result<Residency> {
    let path = path.as_ref();
    super::ops::blocking(|| residency_now(path))
}

fn residency_now(path: &Path) -> io::Result<Residency> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let page = crate::sys::page_size() as u64;
    let total_pages = size.div_ceil(page);
    let mut resident_pages = 0u64;
    let mut vec = vec![0u8; CHUNK_PAGES.min(total_pages as usize)];
    let mut first = 0u64;
    while first < total_pages {
        let pages = (total_pages - first).min(CHUNK_PAGES as u64) as usize;
        let len = NonZeroUsize::new(pages * page as usize).expect("pages > 0");
        // SAFETY: a fresh shared read-only mapping of our open file at a
        // page-aligned offset inside it; nothing else uses the address
        // range, and it is unmapped below before anything else could.
        let addr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &file,
                (first * page) as libc::off_t,
            )
        }
        .map_err(io::Error::from)?;
        // SAFETY: `addr..addr+len` is the mapping just made; `vec` has a
        // byte for each of its `pages` pages.
        let r = unsafe { libc::mincore(addr.as_ptr(), len.get(), vec.as_mut_ptr()) };
        let err = crate::sys::last_os_error();
        // SAFETY: unmapping exactly the mapping made above, which no
        // reference points into.
        unsafe { munmap(addr, len.get()) }.map_err(io::Error::from)?;
        if r != 0 {
            return Err(err);
        }
        resident_pages += vec[..pages].iter().filter(|&&b| b & 1 != 0).count() as u64;
        first += pages as u64;
    }
    Ok(Residency {
        resident_pages,
        total_pages,
    })
}
