//! Memory for spawn cells: per-M free lists by size class, balanced
//! through a global depot (Go's per-P and global `gFree` lists, for our
//! one allocation per green thread).
//!
//! A green thread is often spawned on one worker and finished on another
//! (the other stole it). With malloc alone, every such cell is freed into
//! the spawning thread's arena from the finishing thread, under that
//! arena's lock, while the spawner allocates from the same arena: in a
//! spawn-heavy workload (`rt_multi_threaded`'s `spawn_many`) about 40% of
//! the workers' time went to malloc and free and their futex contention.
//! Here a freed cell goes onto the finishing M's list for its size class
//! (no lock, no atomic); an M with more than [`LOCAL_MAX`] cells of a class
//! moves a batch of [`BATCH`] to the depot, and an M with none takes a
//! batch back, so one lock is taken per [`BATCH`] cells crossing between
//! workers. A thread that is not an M (spawning with `Runtime::spawn`,
//! dropping a last `JoinHandle`, or a runtime's own threads outside their
//! scheduler loop) keeps a cache of its own in a thread-local, exchanged
//! with the depot the same way and released to malloc as the thread
//! exits. What does not fit in the depot goes back to malloc, so the
//! caches hold at most `LOCAL_MAX` cells per class per thread that has
//! spawned or freed a cell (an M or not), plus `DEPOT_BATCHES × BATCH`
//! per class in all.
//!
//! Cells of up to [`CLASSES`] × [`CLASS_BYTES`] bytes and alignment up to
//! [`ALIGN`] are cached (a cell is the G header plus the closure and the
//! result slot: a few hundred bytes for most); others use the global
//! allocator directly.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::m::current_m;
use crate::preempt::NoPreemptScope;

/// Size classes are multiples of this many bytes.
const CLASS_BYTES: usize = 64;
/// Number of size classes: cells of up to 1 KiB are cached.
const CLASSES: usize = 16;
/// Alignment of every cached block (malloc's own, so allocation stays a
/// plain malloc).
const ALIGN: usize = 16;
/// Cells moved to or from the depot at once.
const BATCH: usize = 32;
/// Most cells an M keeps per class before it moves a batch to the depot.
const LOCAL_MAX: usize = 2 * BATCH;
/// Most batches the depot keeps per class.
const DEPOT_BATCHES: usize = 16;

/// The size class of a cell with `layout`, if it is cached.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (layout.align() <= ALIGN && size > 0 && size <= CLASSES * CLASS_BYTES)
        .then(|| (size - 1) / CLASS_BYTES)
}

/// The layout every block of `class` is allocated with.
fn class_layout(class: usize) -> Layout {
    Layout::from_size_align((class + 1) * CLASS_BYTES, ALIGN).expect("greenrt: cell class layout")
}

/// A free block; its first word links it to the next.
struct Free {
    next: *mut Free,
}

/// A singly-linked list of free blocks of one class.
struct List {
    head: *mut Free,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: ptr::null_mut(),
        len: 0,
    };
}

/// One M's free lists (in `M::cells`).
pub(crate) struct CellCache {
    lists: [List; CLASSES],
}

impl Default for CellCache {
    fn default() -> CellCache {
        CellCache::EMPTY
    }
}

impl CellCache {
    const EMPTY: CellCache = CellCache {
        lists: [List::EMPTY; CLASSES],
    };

    fn pop(&mut self, class: usize) -> Option<NonNull<u8>> {
        let list = &mut self.lists[class];
        if list.len == 0 {
            // A hint read without the lock: an empty depot (a worker that
            // only spawns, before any batch came back) costs no lock.
            if DEPOT_HAS[class].load(Ordering::Relaxed) == 0 {
                return None;
            }
            *list = DEPOT.lock().take(class)?;
        }
        let block = list.head;
        // SAFETY: a non-empty list's head is a free block of this class,
        // ours alone; its first word is the link `push` wrote.
        list.head = unsafe { (*block).next };
        list.len -= 1;
        NonNull::new(block.cast())
    }

    /// # Safety
    /// `block` is a block of `class` (allocated with `class_layout`) that
    /// nobody uses any more.
    unsafe fn push(&mut self, class: usize, block: NonNull<u8>) {
        let list = &mut self.lists[class];
        let block = block.cast::<Free>().as_ptr();
        // SAFETY: the block is ours (the caller's contract) and at least
        // CLASS_BYTES long and ALIGN-aligned, room for the link.
        unsafe { block.write(Free { next: list.head }) };
        list.head = block;
        list.len += 1;
        if list.len > LOCAL_MAX {
            let batch = split_batch(list);
            // The guard goes at the end of this statement: a full depot's
            // batch is freed below without holding the lock.
            let refused = DEPOT.lock().put(class, batch);
            if let Err(batch) = refused {
                // SAFETY: the batch's blocks are ours, of `class`.
                unsafe { release(class, batch) };
            }
        }
    }
}

impl Drop for CellCache {
    fn drop(&mut self) {
        for (class, list) in self.lists.iter_mut().enumerate() {
            // SAFETY: every listed block is a free block of its class.
            unsafe { release(class, std::mem::replace(list, List::EMPTY)) };
        }
    }
}

/// Takes the first BATCH blocks off `list` (which holds more).
fn split_batch(list: &mut List) -> List {
    let head = list.head;
    let mut last = head;
    for _ in 1..BATCH {
        // SAFETY: the list holds more than BATCH blocks, each linked to
        // the next by its first word.
        last = unsafe { (*last).next };
    }
    // SAFETY: `last` is the list's BATCH-th block (see above).
    list.head = unsafe { std::mem::replace(&mut (*last).next, ptr::null_mut()) };
    list.len -= BATCH;
    List { head, len: BATCH }
}

/// Gives every block of `list` back to the global allocator.
///
/// # Safety
/// The list's blocks are free blocks of `class`, nobody else's.
unsafe fn release(class: usize, list: List) {
    let mut block = list.head;
    while !block.is_null() {
        // SAFETY: a listed block links to the next by its first word; it
        // was allocated with `class_layout(class)` (the caller's contract).
        unsafe {
            let next = (*block).next;
            alloc::dealloc(block.cast(), class_layout(class));
            block = next;
        }
    }
}

/// Batches of free blocks shared by all Ms.
///
/// `List` is not `Copy` (it owns its blocks): batches move in and out
/// whole, with `mem::replace`.
struct Depot {
    batches: [[List; DEPOT_BATCHES]; CLASSES],
    counts: [usize; CLASSES],
}

// SAFETY: the depot's blocks are free memory that only the lock's holder
// touches (a batch leaves the depot whole, to one M).
unsafe impl Send for Depot {}

static DEPOT: Mutex<Depot> = Mutex::new(Depot::EMPTY);

/// `Depot::counts`, mirrored for reading without the lock (written under
/// it).
static DEPOT_HAS: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];

/// Off (`GREENRT_CELL_CACHE=off`): every cell goes to and from the global
/// allocator, so that tools that watch freed memory (valgrind, a
/// quarantining allocator) see cells too. Blocks keep their class layout
/// either way, so the switch may flip at any time.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the cache on or off for the whole process (`Builder::build`, from
/// `GREENRT_CELL_CACHE`).
pub(crate) fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

impl Depot {
    const EMPTY: Depot = Depot {
        batches: [const { [List::EMPTY; DEPOT_BATCHES] }; CLASSES],
        counts: [0; CLASSES],
    };

    fn set_count(&mut self, class: usize, n: usize) {
        self.counts[class] = n;
        DEPOT_HAS[class].store(n, Ordering::Relaxed);
    }

    fn take(&mut self, class: usize) -> Option<List> {
        let n = self.counts[class].checked_sub(1)?;
        self.set_count(class, n);
        Some(std::mem::replace(&mut self.batches[class][n], List::EMPTY))
    }

    /// Keeps `batch` unless the class is full (then hands it back).
    fn put(&mut self, class: usize, batch: List) -> Result<(), List> {
        let n = self.counts[class];
        if n == DEPOT_BATCHES {
            return Err(batch);
        }
        self.batches[class][n] = batch;
        self.set_count(class, n + 1);
        Ok(())
    }
}

thread_local! {
    /// The cache of a thread that is not an M (one that spawns with
    /// `Runtime::spawn`, or drops the last reference to a finished green
    /// thread): such a thread never runs green threads, so its
    /// thread-local stays its own.
    static THREAD_CACHE: RefCell<CellCache> = const { RefCell::new(CellCache::EMPTY) };
}

/// Runs `f` on the running M's cache, or off an M on this thread's own.
/// None with the cache off, or once this thread's cache is gone (its
/// thread-local destructors have run).
///
/// On an M, preemption is held off: a green thread preempted inside would
/// hold the depot's lock while other workers spawn, and leave its M's
/// lists half-changed under the preemption path, which runs on the same
/// thread.
#[inline(always)]
fn with_cache<R>(f: impl FnOnce(&mut CellCache) -> R) -> Option<R> {
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    let Some(m) = current_m() else {
        // Not a green thread (those run on Ms only), so no switch can move
        // this code to another thread's thread-local. The borrow cannot
        // fail (nothing here re-enters the cache); if it did, malloc.
        return THREAD_CACHE
            .try_with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
            .ok()
            .flatten();
    };
    let _np = NoPreemptScope::for_g(m.curg.get());
    // SAFETY: `m` is still this thread's M: a green thread preempted
    // between `current_m` and the scope keeps its OS thread (and so its M)
    // until it resumes. `cells` is touched only on its M's thread, here,
    // and `f` neither switches green threads nor re-enters the cache: it
    // runs no user code (only the global allocator, which greenrt code
    // does not call back into), the signal handler never allocates, and
    // the preemption path never drops a cell's last reference (the
    // registry holds one for every live G). So this is the only reference.
    Some(f(unsafe { &mut *m.cells.get() }))
}

/// Memory for a spawn cell with `layout` (from the running M's cache when
/// it has a block of that class). Free it with [`free`] and the same
/// layout.
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    let (layout, cached) = match class_of(layout) {
        Some(class) => match with_cache(|c| c.pop(class)).flatten() {
            Some(block) => return block,
            None => (class_layout(class), true),
        },
        None => (layout, false),
    };
    debug_assert!(cached || layout.size() > 0);
    // SAFETY: `layout` has a non-zero size (a cell holds a G header).
    let p = unsafe { alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Gives back memory from [`alloc`].
///
/// # Safety
/// `block` came from `alloc(layout)` with this `layout`, and nothing uses
/// it any more (the cell in it has been dropped).
pub(crate) unsafe fn free(block: NonNull<u8>, layout: Layout) {
    match class_of(layout) {
        Some(class) => {
            // SAFETY: `alloc` gave a block of this class (the caller's
            // contract), now unused.
            if with_cache(|c| unsafe { c.push(class, block) }).is_none() {
                // SAFETY: as above; blocks of a class have its layout.
                unsafe { alloc::dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
        // SAFETY: allocated with `layout` itself (uncached).
        None => unsafe { alloc::dealloc(block.as_ptr(), layout) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_64_bytes_up_to_1_kib() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class_of(l(1, 8)), Some(0));
        assert_eq!(class_of(l(64, 16)), Some(0));
        assert_eq!(class_of(l(65, 16)), Some(1));
        assert_eq!(class_of(l(1024, 8)), Some(15));
        assert_eq!(class_of(l(1025, 8)), None);
        assert_eq!(class_of(l(128, 64)), None);
        assert_eq!(class_layout(4).size(), 320);
    }

    fn blocks(class: usize, n: usize) -> Vec<NonNull<u8>> {
        (0..n)
            // SAFETY: a class layout has a non-zero size.
            .map(|_| NonNull::new(unsafe { alloc::alloc(class_layout(class)) }).unwrap())
            .collect()
    }

    fn walk(list: &List) -> Vec<NonNull<u8>> {
        let mut out = Vec::new();
        let mut p = list.head;
        while !p.is_null() {
            out.push(NonNull::new(p.cast()).unwrap());
            // SAFETY: listed blocks link to the next by their first word.
            p = unsafe { (*p).next };
        }
        assert_eq!(out.len(), list.len);
        out
    }

    #[test]
    fn a_split_takes_the_newest_batch_and_keeps_the_rest_in_order() {
        let class = 3;
        let mut cache = CellCache::default();
        let all = blocks(class, LOCAL_MAX);
        for &b in &all {
            // SAFETY: fresh blocks of `class`, unused.
            unsafe { cache.push(class, b) };
        }
        assert_eq!(cache.lists[class].len, LOCAL_MAX);
        let batch = split_batch(&mut cache.lists[class]);
        let newest_first: Vec<_> = all.iter().rev().copied().collect();
        assert_eq!(walk(&batch), newest_first[..BATCH]);
        assert_eq!(walk(&cache.lists[class]), newest_first[BATCH..]);
        // Last in, first out.
        assert_eq!(cache.pop(class), Some(all[LOCAL_MAX - BATCH - 1]));
        // SAFETY: the batch's blocks are free blocks of `class`; the popped
        // one is ours too. (The cache frees the rest as it drops.)
        unsafe {
            release(class, batch);
            alloc::dealloc(all[LOCAL_MAX - BATCH - 1].as_ptr(), class_layout(class));
        }
    }

    #[test]
    fn the_depot_keeps_a_bounded_number_of_batches_per_class() {
        let mut depot = Depot::EMPTY;
        // A class no spawn cell of the test binary has (over 960 bytes):
        // `DEPOT_HAS` is shared with the real depot.
        let class = CLASSES - 1;
        assert!(depot.take(class).is_none());
        let list = |len| List {
            head: ptr::null_mut(),
            len,
        };
        for len in 0..DEPOT_BATCHES {
            assert!(depot.put(class, list(len)).is_ok());
        }
        let refused = depot.put(class, list(DEPOT_BATCHES)).unwrap_err();
        assert_eq!(refused.len, DEPOT_BATCHES);
        assert!(depot.take(class - 1).is_none(), "classes are separate");
        assert_eq!(depot.take(class).map(|l| l.len), Some(DEPOT_BATCHES - 1));
        while depot.take(class).is_some() {}
        assert_eq!(DEPOT_HAS[class].load(Ordering::Relaxed), 0);
    }
}
