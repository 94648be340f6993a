//! Zero-copy file-to-socket copying with sendfile(2) (after Go's
//! internal/poll/sendfile_unix.go, which net/sendfile_linux.go uses for
//! io.Copy from an os.File).
//!
//! sendfile hands page-cache pages of the source file to the socket: no
//! pipe, no user-space buffer. The offset argument is null, so each call
//! reads at the file position and moves it past what was sent, as a read
//! loop would: after a copy the position is at the end of what was
//! copied, and a buffered copy that takes over goes on from there.
//!
//! **The socket side** is non-blocking: sendfile sends what fits and
//! EAGAIN means the socket buffer is full. The green thread then parks
//! for write readiness through the destination's poll descriptor
//! (`Endpoint::wait`, as splice's pump does), under its write timeout;
//! the worker runs other green threads meanwhile.
//!
//! **The file side** is not pollable, and sendfile reads pages that are
//! not cached from the disk, blocking the calling thread. So before each
//! chunk, cachestat(2) (Linux ≥ 6.5) asks whether all of the chunk's
//! pages are in the page cache. If they are, sendfile is called directly:
//! it takes page references and returns in microseconds, like a
//! page-cache read. If not — or if cachestat cannot tell: an older
//! kernel, or EPERM, which newer kernels give for files the caller could
//! not write, to keep their cache state private — the call runs in a
//! `BlockingSection`: the worker's P goes to another thread while this
//! one waits for the disk, so the worker's other green threads keep
//! running (the io_uring file path's "never block a worker"). The section
//! is not used for every chunk because it hands the P over up front,
//! which wakes a thread: Go instead lets the syscall block and has sysmon
//! retake the P after 20 µs, which costs nothing on a cache hit, and the
//! check gets greenrt the same. Pages evicted between the check and the
//! call make the worker wait for that one read: rare and brief.
//!
//! EINVAL or ENOSYS means the kernel cannot sendfile from this fd (not a
//! regular file, or a file system without splice_read): nothing was sent
//! by that call, the file position is where the bytes sent so far end,
//! and the caller goes on with read/write from there ([`Sent::Refused`]).

use std::io;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::counters::{Tally, FALLBACKS};
use super::{unsupported, Endpoint};
use crate::netpoll::Interest;
use crate::scheduler::park::BlockingSection;
use crate::sys::last_os_error;

/// The most one sendfile call is asked for: large enough that the call's
/// cost vanishes, small enough that a cold chunk is one bounded disk read
/// (and a cachestat call looks at 256 pages).
const MAX_CHUNK: usize = 1 << 20;

/// cachestat(2)'s number, the same on every architecture but alpha (new
/// system calls are numbered alike since 5.1; libc does not name it on
/// all targets yet).
const SYS_CACHESTAT: libc::c_long = 451;

/// The kernel has no cachestat (learned once).
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// How a sendfile copy ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// End of file, or the limit reached.
    All,
    /// The kernel cannot sendfile from this fd: go on with read/write
    /// (from the file position, where the bytes sent end).
    Refused,
}

/// Sends from the file position of `src` to `dst` until end of file, or
/// `limit` bytes if given; adds the bytes sent to `moved` (also when it
/// fails, so a caller can account for them).
pub(crate) fn sendfile(
    src: RawFd,
    dst: &Endpoint<'_>,
    limit: Option<u64>,
    moved: &mut u64,
) -> io::Result<Sent> {
    let mut tally = Tally::default();
    let mut cache = CacheCheck::new(src);
    let mut sent = 0u64;
    let mut deadline = None;
    let result = loop {
        let left = limit.map_or(u64::MAX, |l| l - sent);
        let want = left.min(MAX_CHUNK as u64) as usize;
        if want == 0 {
            break Ok(Sent::All);
        }
        let cached = cache.all_cached(want);
        tally.sendfile_calls += 1;
        let r = {
            // Entered only where the call may wait for the disk (see the
            // module docs); a no-op on an OS thread.
            let _section = (!cached).then(BlockingSection::enter);
            send(dst.raw(), src, want)
        };
        match r {
            Ok(0) => break Ok(Sent::All),
            Ok(n) => {
                sent += n as u64;
                tally.spliced += n as u64;
                // A new logical write: a fresh timeout budget.
                deadline = None;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = dst.wait(Interest::Write, &mut deadline) {
                    break Err(e);
                }
            }
            Err(e) if unsupported(&e) => {
                FALLBACKS.fetch_add(1, Relaxed);
                break Ok(Sent::Refused);
            }
            Err(e) => break Err(e),
        }
    };
    *moved += sent;
    result
}

/// One sendfile(2) of up to `len` bytes from the file position of `from`.
fn send(to: RawFd, from: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the duration of the call (the caller
    // borrows their owners); a null offset makes the kernel use and move
    // the file position, and no memory of ours is touched.
    let n = unsafe { libc::sendfile(to, from, ptr::null_mut(), len) };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// struct cachestat_range of <linux/mman.h>.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// struct cachestat of <linux/mman.h>.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether the next chunk of a file is all in the page cache.
struct CacheCheck {
    fd: RawFd,
    /// cachestat answers for this fd.
    usable: bool,
    /// The file size as last seen (refreshed when a chunk reaches it).
    size: u64,
}

impl CacheCheck {
    fn new(fd: RawFd) -> CacheCheck {
        let usable = !NO_CACHESTAT.load(Relaxed);
        let mut c = CacheCheck {
            fd,
            usable,
            size: 0,
        };
        if usable {
            c.refresh_size();
        }
        c
    }

    /// Re-reads the size; a file that is not regular (or fstat failing)
    /// makes the check give up: such a source may block in other ways.
    fn refresh_size(&mut self) {
        // SAFETY: all-zero is a valid `stat` (integers only).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, writable stat; fstat only fills it.
        let ok = unsafe { libc::fstat(self.fd, &mut st) } == 0;
        if ok && st.st_mode & libc::S_IFMT == libc::S_IFREG {
            self.size = st.st_size as u64;
        } else {
            self.usable = false;
        }
    }

    /// Are the pages of the next `len` bytes from the file position all
    /// cached? False when that cannot be told.
    fn all_cached(&mut self, len: usize) -> bool {
        if !self.usable {
            return false;
        }
        // SAFETY: lseek on an open fd; it never blocks.
        let pos = unsafe { libc::lseek(self.fd, 0, libc::SEEK_CUR) };
        if pos < 0 {
            self.usable = false;
            return false;
        }
        let pos = pos as u64;
        let mut end = pos.saturating_add(len as u64);
        if end > self.size {
            self.refresh_size();
            end = end.min(self.size);
        }
        if end <= pos {
            // At (or past) end of file: sendfile returns 0 at once.
            return self.usable;
        }
        let page = crate::sys::page_size() as u64;
        let pages = (end - 1) / page - pos / page + 1;
        let range = CachestatRange {
            off: pos,
            len: end - pos,
        };
        let mut stat = Cachestat::default();
        // SAFETY: cachestat reads `range` and writes `stat`, both valid
        // and of the kernel's layout (repr(C), u64 fields), and nothing
        // else of ours; the fd is open.
        let r = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                self.fd,
                &range as *const CachestatRange,
                &mut stat as *mut Cachestat,
                0u32,
            )
        };
        if r < 0 {
            if last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                NO_CACHESTAT.store(true, Relaxed);
            }
            self.usable = false;
            return false;
        }
        stat.nr_cache >= pages
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    use super::CacheCheck;

    /// cachestat sees a freshly written file as cached, and not once its
    /// pages are dropped; the check looks from the file position on.
    #[test]
    fn cache_check_follows_the_page_cache() {
        let path = std::env::temp_dir().join(format!("greenrt-cachecheck-{}", std::process::id()));
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(&vec![1u8; 256 * 1024]).unwrap();
        f.sync_all().unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        let mut check = CacheCheck::new(f.as_raw_fd());
        if !check.usable {
            eprintln!("skipped: no cachestat here");
            return;
        }
        assert!(check.all_cached(1 << 20));
        // SAFETY: an advice on our open fd; no memory of ours is touched.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
        // tmpfs keeps its pages whatever the advice: nothing to check.
        if check.all_cached(1 << 20) {
            eprintln!("skipped: pages stay cached on this file system");
        }
        f.seek(SeekFrom::End(0)).unwrap();
        assert!(check.all_cached(1 << 20), "at end of file");
        drop(f);
        std::fs::remove_file(&path).unwrap();
    }
}
