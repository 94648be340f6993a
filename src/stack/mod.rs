//! Green-thread stacks: mmap'd, guarded, committed lazily, pooled.
//!
//! Each stack is an anonymous private mapping of its own, or its own range
//! of one (`Stack::new_many` carves batches from a runtime's `reserve`),
//! with a guard page at its low end; either way it is unmapped alone.
//! Pages are committed by the kernel on first touch (a batch's top pages
//! up front), so a 256 KiB stack that only ever uses 8 KiB costs 8 KiB
//! of memory. Finished stacks go back to a pool (per P, then the
//! runtime's; see `pool`), so spawning and exiting make no system call
//! while the pool has stacks.
//!
//! The guard page is installed with `MADV_GUARD_INSTALL` (Linux 6.13+),
//! which marks page-table entries without splitting the mapping: adjacent
//! stacks merge into one kernel VMA, so the number of live stacks is not
//! bounded by `vm.max_map_count`. On older kernels the guard is made with
//! `mprotect(PROT_NONE)`, which costs a second mapping per stack.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use nix::sys::mman::{self, MapFlags, ProtFlags};

mod list;
mod page_batch;
mod pool;
mod reserve;

pub(crate) use pool::TRIM_INTERVAL_NS;
pub(crate) use pool::{clear as clear_pool, trim as trim_pool, StackCache, StackPool};
pub(crate) use reserve::StackReserve;

/// Default usable stack size of a green thread.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Smallest usable stack size accepted; smaller requests are rounded up.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

const GUARD_LEN: usize = 4096;
/// Green-thread stacks mapped in this process now (all runtimes, pooled
/// or in use): counted where they are mapped and unmapped.
static MAPPED: AtomicUsize = AtomicUsize::new(0);
const PAGE: usize = 4096;
/// `MADV_GUARD_INSTALL` from linux/mman.h (not yet in every libc crate).
/// Called through libc: nix's `MmapAdvise` has no such variant.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// One green-thread stack: `[base, base + GUARD_LEN)` is the guard,
/// `[base + GUARD_LEN, base + len)` is usable.
pub(crate) struct Stack {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `base` only names a range of private anonymous memory that this
// Stack owns alone (mapped by `new` or carved by `new_many`, unmapped in
// `drop`); nothing in it is tied to the thread that mapped it, so
// ownership may move to another thread.
unsafe impl Send for Stack {}

impl Stack {
    /// Maps a stack with at least `size` usable bytes.
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        let usable = round_up(size.max(MIN_STACK_SIZE), PAGE);
        let len = usable + GUARD_LEN;
        let nz_len = NonZeroUsize::new(len).expect("at least a guard page");
        // SAFETY: a fresh anonymous private mapping with no address hint
        // cannot alias or replace any existing memory.
        let base = unsafe {
            mman::mmap_anonymous(
                None,
                nz_len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| map_error(e.into(), len))?;
        MAPPED.fetch_add(1, Ordering::Relaxed);
        let stack = Stack {
            base: base.cast(),
            len,
        };
        stack.install_guard().map_err(|e| map_error(e, len))?;
        Ok(stack)
    }

    /// Makes up to `count` stacks of `size` usable bytes (each its own
    /// guarded stack, unmappable alone) from address space `reserve` has
    /// mapped ahead, and returns the first; the others go to `extra`. No
    /// `mmap` per stack or per batch when many green threads start at
    /// once (see `reserve` for why that matters). Only where guards are
    /// guard regions (the stacks stay one VMA); with mprotect guards, and
    /// if the reserve cannot map, one stack is mapped as by
    /// [`Stack::new`]. Allocates nothing.
    pub(crate) fn new_many(
        size: usize,
        count: usize,
        reserve: &StackReserve,
        mut extra: impl FnMut(Stack),
    ) -> io::Result<Stack> {
        if count <= 1 || guard_mode() != GuardMode::Madvise {
            return Stack::new(size);
        }
        let len = round_up(size.max(MIN_STACK_SIZE), PAGE) + GUARD_LEN;
        let Some((base, count)) = reserve.carve(len, count) else {
            return Stack::new(size);
        };
        MAPPED.fetch_add(count, Ordering::Relaxed);
        // Each Stack owns its `len` bytes of the carved range from here
        // on (munmap of part of a mapping unmaps just that part).
        let mut stacks = (0..count).map(|i| Stack {
            // i * len < count * len: inside the carved range.
            base: NonNull::new(base.as_ptr().wrapping_add(i * len)).expect("inside a mapping"),
            len,
        });
        // Guards in one system call per `page_batch::MAX_BATCH` stacks
        // where the kernel takes a vector of ranges; the rest (all, on
        // older kernels) one by one below.
        // SAFETY: stack i's guard page is `[base + i * len, + GUARD_LEN)`,
        // in the range just carved (ours alone), which nothing uses yet.
        let guarded = unsafe { page_batch::install_guards(base.as_ptr(), len, count) };
        // Each of these stacks is about to run a green thread, which
        // touches its top page first: commit those pages in the same
        // batched way instead of a page fault each (those with their
        // guards: a kernel that refused the batched guards refuses this
        // too, and their stacks get faulted in as before).
        // SAFETY: stack i is `[base + i * len, + len)`, in the range just
        // carved (read-write, ours alone); nothing uses it yet.
        unsafe { page_batch::populate_tops(base.as_ptr(), len, guarded) };
        let first = stacks.next().expect("carve gives at least one");
        if guarded == 0 {
            if let Err(e) = first.install_guard() {
                // Unmap the others too (each as its Stack drops).
                stacks.for_each(drop);
                return Err(map_error(e, len));
            }
        }
        for (i, s) in (1..).zip(stacks) {
            if i < guarded || s.install_guard().is_ok() {
                extra(s);
            }
        }
        Ok(first)
    }

    fn install_guard(&self) -> io::Result<()> {
        if guard_mode() == GuardMode::Madvise {
            // libc: nix's `MmapAdvise` has no MADV_GUARD_INSTALL.
            // SAFETY: `[base, base + GUARD_LEN)` is the first page of this
            // Stack's own mapping, which nothing uses yet; the advice only
            // makes that page fault on access.
            let rc =
                unsafe { libc::madvise(self.base.as_ptr().cast(), GUARD_LEN, MADV_GUARD_INSTALL) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
            // Kernel without guard regions: remember and fall through.
            GUARD_MODE.store(GuardMode::Mprotect as u8, Ordering::Relaxed);
        }
        // SAFETY: `[base, base + GUARD_LEN)` is the page-aligned first page
        // of this Stack's own mapping, which no code uses yet (nor, as the
        // guard, ever will): making it inaccessible breaks no reference.
        unsafe { mman::mprotect(self.base.cast(), GUARD_LEN, ProtFlags::PROT_NONE) }
            .map_err(io::Error::from)
    }

    /// One past the highest usable byte (16-byte aligned).
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(self.len)
    }

    /// The guard page's address range.
    pub(crate) fn guard(&self) -> (usize, usize) {
        let base = self.base.as_ptr() as usize;
        (base, base + GUARD_LEN)
    }

    /// Usable size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.len - GUARD_LEN
    }

    /// The whole mapping, guard included: `(base, len)`.
    fn span(&self) -> (usize, usize) {
        (self.base.as_ptr() as usize, self.len)
    }

    /// Gives up ownership of the mapping without unmapping it.
    fn into_raw(self) -> (NonNull<u8>, usize) {
        let raw = (self.base, self.len);
        std::mem::forget(self);
        raw
    }

    /// Takes back a mapping `into_raw` gave up.
    ///
    /// # Safety
    /// `(base, len)` came from `into_raw` and nothing else owns it since.
    unsafe fn from_raw(base: NonNull<u8>, len: usize) -> Stack {
        Stack { base, len }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: `[base, base + len)` is exactly the range `new` mapped or
        // `new_many` carved, owned by this Stack alone (unmapping part of a
        // mapping unmaps just that part); the runtime drops a Stack only when no
        // green thread runs on it any more (a finished G's, or a pooled one).
        let _ = unsafe { mman::munmap(self.base.cast(), self.len) };
        MAPPED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Green-thread stacks mapped in the process now (pooled or in use).
pub(crate) fn mapped() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

/// What `advise_runs` does to each run of stacks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Release {
    /// `MADV_FREE`: the pages stay mapped; the kernel takes them back
    /// only under memory pressure, and a write before then keeps them.
    Free,
    /// `munmap`: the stacks are gone.
    Unmap,
}

/// Sorts `stacks` by address and applies `how` once per run of adjacent
/// mappings rather than once per stack: each call flushes the other
/// workers' TLBs (an IPI per CPU running this process) once, so a
/// thousand stacks trimmed cost a few shoot-downs, not a thousand.
/// Returns the number of system calls made. With `Free`, the stacks are
/// left in `stacks` (still owned, still mapped); with `Unmap`, `stacks`
/// is emptied.
///
/// A run may span guard pages (of the upper stacks): `MADV_FREE` keeps
/// guard regions and `PROT_NONE` pages as they are, and `munmap` of
/// whole adjacent mappings is the same as unmapping each.
fn advise_runs(stacks: &mut Vec<Stack>, how: Release) -> usize {
    stacks.sort_unstable_by_key(|s| s.span().0);
    let mut calls = 0;
    let mut i = 0;
    while i < stacks.len() {
        let (start, mut end) = {
            let (b, l) = stacks[i].span();
            (b, b + l)
        };
        let mut j = i + 1;
        while j < stacks.len() && stacks[j].span().0 == end {
            end += stacks[j].span().1;
            j += 1;
        }
        match how {
            // SAFETY: `[start, end)` is exactly the mappings of
            // `stacks[i..j]` (adjacent, each owned by its Stack), on which
            // no green thread runs (they are pooled); MADV_FREE only lets
            // the kernel drop their contents, which nobody needs.
            Release::Free => unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_FREE);
            },
            // SAFETY: as above; the Stacks are forgotten below (with their
            // count), so nothing unmaps or uses these ranges again.
            Release::Unmap => unsafe {
                libc::munmap(start as *mut libc::c_void, end - start);
            },
        }
        calls += 1;
        i = j;
    }
    if how == Release::Unmap {
        MAPPED.fetch_sub(stacks.len(), Ordering::Relaxed);
        for s in stacks.drain(..) {
            let _ = s.into_raw();
        }
    }
    calls
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum GuardMode {
    Unknown = 0,
    Madvise = 1,
    Mprotect = 2,
}

static GUARD_MODE: AtomicU8 = AtomicU8::new(GuardMode::Unknown as u8);

/// How guard pages are made. `GREENRT_GUARD=mprotect` forces the portable
/// mode (one extra mapping per stack), e.g. to test the map-count limit;
/// `auto` (the default) uses guard regions where the kernel has them. A
/// bad value fails `Builder::build` (env::check_lazy_knobs); here it reads
/// as `auto`.
fn guard_mode() -> GuardMode {
    match GUARD_MODE.load(Ordering::Relaxed) {
        1 => GuardMode::Madvise,
        2 => GuardMode::Mprotect,
        _ => {
            let forced = crate::env::read(crate::env::GUARD, crate::env::parse_guard);
            let mode = match forced {
                Ok(Some(true)) => GuardMode::Mprotect,
                _ if kernel_has_guard_regions() => GuardMode::Madvise,
                _ => GuardMode::Mprotect,
            };
            GUARD_MODE.store(mode as u8, Ordering::Relaxed);
            mode
        }
    }
}

/// Probes for `MADV_GUARD_INSTALL` on a scratch page.
fn kernel_has_guard_regions() -> bool {
    let page = NonZeroUsize::new(PAGE).expect("non-zero");
    // SAFETY: a fresh anonymous private mapping with no address hint
    // cannot alias or replace any existing memory.
    let mapped = unsafe {
        mman::mmap_anonymous(
            None,
            page,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    };
    let Ok(p) = mapped else {
        return false;
    };
    // libc: nix's `MmapAdvise` has no MADV_GUARD_INSTALL.
    // SAFETY: `p` is the scratch page mapped above, which nothing else
    // references; the advice only makes it fault on access.
    let ok = unsafe { libc::madvise(p.as_ptr(), PAGE, MADV_GUARD_INSTALL) } == 0;
    // SAFETY: `p` is the scratch mapping of PAGE bytes made above, which
    // nothing references.
    let _ = unsafe { mman::munmap(p, PAGE) };
    ok
}

/// Explains an mmap/mprotect failure; ENOMEM near `vm.max_map_count` gets
/// the limit and the fix spelled out.
fn map_error(err: io::Error, len: usize) -> io::Error {
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return io::Error::new(
            err.kind(),
            format!("greenrt: cannot map a green-thread stack of {len} bytes: {err}"),
        );
    }
    let limit = read_number("/proc/sys/vm/max_map_count");
    let used = std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .ok();
    let msg = match (limit, used) {
        (Some(limit), Some(used)) if used + 16 >= limit as usize => format!(
            "greenrt: cannot map a green-thread stack: the process has {used} memory \
             mappings and the kernel limit vm.max_map_count is {limit}; raise it \
             (`sysctl -w vm.max_map_count=1048576`) or keep fewer green threads alive \
             at once ({err})"
        ),
        _ => format!(
            "greenrt: cannot map a green-thread stack of {len} bytes: out of memory or \
             address space ({err}); if the process has many mappings, the kernel limit \
             vm.max_map_count (see `sysctl vm.max_map_count`) may be the cause"
        ),
    };
    io::Error::new(io::ErrorKind::OutOfMemory, msg)
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kernel mappings each stack costs: 1 with guard regions, 2 with
/// mprotect'ed guards (then `vm.max_map_count` bounds live stacks).
pub(crate) fn mappings_per_stack() -> usize {
    match guard_mode() {
        GuardMode::Mprotect => 2,
        _ => 1,
    }
}

/// Rounds a requested stack size the way `Stack::new` will; a size too
/// large to round up, or to map with its guard, is `InvalidInput` (std's
/// thread builder says EINVAL too).
pub(crate) fn normalize_size(size: usize) -> io::Result<usize> {
    size.max(MIN_STACK_SIZE)
        .checked_next_multiple_of(PAGE)
        .filter(|&s| {
            s.checked_add(GUARD_LEN)
                .is_some_and(|len| len <= isize::MAX as usize)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a green thread stack of {size} bytes is larger than can be mapped"),
            )
        })
}
