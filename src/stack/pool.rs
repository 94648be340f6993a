//! Stack pools: a small cache per P, the runtime's pool behind it, and
//! the trimming that gives idle stacks back to the kernel over time.
//!
//! A green thread's exit and a spawn make no system call while the pool
//! has stacks: the exit puts the stack in its P's cache (a `Vec` with its
//! room reserved), a full cache moves its older half to the runtime's
//! pool, whose free lists are linked through the stacks themselves
//! ([`StackList`]) — so the pool has no fixed cap (it holds what the
//! workload freed, at most its peak of live green threads) and putting a
//! stack in it never allocates (the exit runs in the scheduler with a P
//! held, where an allocation could wait for an allocator lock held by a
//! preempted green thread that needs this very P; docs/DESIGN.md, "The
//! critical path"). Unmapping or madvising on exit would cost a TLB
//! shoot-down (an IPI to every CPU running this process) per green thread.
//!
//! Stacks are handed out newest first: the last stack freed is the one
//! whose touched pages are most likely still in cache and still mapped.
//!
//! The errand thread trims the pool once a [`TRIM_INTERVAL_NS`]
//! (`trim`). Warm stacks that sat unused the whole interval (the
//! low-water mark since the last pass) were not needed: beyond
//! `max(MIN_WARM, live / 4)` of them (the oldest first) are released with
//! `MADV_FREE` — the kernel reclaims their pages only under memory
//! pressure, and reusing such a stack before then faults nothing in — and
//! kept as *cold*; cold stacks unused for a whole interval more are
//! unmapped. Both in a few system calls per pass (`advise_runs` covers
//! runs of adjacent stacks at once, and stacks mapped one after the other
//! are adjacent). A burst of a million green threads that exits is so
//! unmapped two to three intervals later; a runtime holding `live` green
//! threads keeps a quarter of that warm, so a wave of them exiting and
//! being replaced reuses warm stacks.

use parking_lot::Mutex;

use super::list::StackList;
use super::{advise_runs, Release, Stack};

/// How often the errand thread trims a runtime's pool (monotonic ns).
pub(crate) const TRIM_INTERVAL_NS: u64 = 1_000_000_000;
/// Warm stacks always kept (per size), however few green threads live.
const MIN_WARM: usize = 1024;
/// Stack sizes the runtime's pool keeps at once (the runtime's default,
/// and a few `task::Builder::stack_size` ones); stacks of other sizes are
/// unmapped by the next trim.
const CLASSES: usize = 4;
/// Stacks moved per hold of the pool lock while trimming, so spawns and
/// exits on the workers wait for at most that many list steps.
const TRIM_CHUNK: usize = 1024;
/// How far back a take looks among the cold stacks for its size.
const COLD_SEARCH: usize = 16;

/// A P's own stacks: a bounded free list, its room reserved, touched only
/// by the M holding the P (no lock).
pub(crate) struct StackCache {
    free: Vec<Stack>,
    /// Stacks the next `Stack::new_many` on this P makes (see
    /// [`StackCache::next_batch`]).
    batch: usize,
}

/// A P's first batch of new stacks; each next one is twice as many, up to
/// the caller's cap.
const FIRST_BATCH: usize = 8;

impl StackCache {
    /// A cache of at most `cap` stacks, its room reserved now (see the
    /// module docs: putting a stack back must not allocate).
    pub(crate) fn new(cap: usize) -> StackCache {
        StackCache {
            free: Vec::with_capacity(cap),
            batch: FIRST_BATCH,
        }
    }

    /// How many stacks to make at once now that this P's cache and the
    /// runtime's pool are empty: 8 the first time, twice the last after
    /// that, up to `cap`. Each stack made comes with its top page
    /// committed, so a P that needs a few stacks (a small program) keeps
    /// few spare ones resident, and one that keeps running dry (green
    /// threads starting faster than others finish) soon makes them `cap`
    /// at a time, one pair of system calls per batch.
    pub(crate) fn next_batch(&mut self, cap: usize) -> usize {
        let n = self.batch.min(cap);
        self.batch = (n * 2).min(cap);
        n
    }

    /// Stacks cached.
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }

    /// The most recently cached stack of exactly `size` usable bytes.
    pub(crate) fn take(&mut self, size: usize) -> Option<Stack> {
        let i = self.free.iter().rposition(|s| s.size() == size)?;
        Some(self.free.remove(i))
    }

    /// Caches `stack`; hands it back if the cache is full.
    pub(crate) fn put(&mut self, stack: Stack) -> Result<(), Stack> {
        if self.free.len() < self.free.capacity() {
            self.free.push(stack);
            Ok(())
        } else {
            Err(stack)
        }
    }

    /// Moves the older half of the cache into `pool`.
    pub(crate) fn spill_half(&mut self, pool: &mut StackPool) {
        let n = self.free.len() / 2;
        for s in self.free.drain(..n) {
            pool.put(s);
        }
    }

    /// Moves up to `n` more stacks of `size` from `pool` into the cache
    /// (after a take from the pool: the next spawns find them here).
    pub(crate) fn refill(&mut self, pool: &mut StackPool, size: usize, n: usize) {
        let room = self.free.capacity() - self.free.len();
        for _ in 0..n.min(room) {
            match pool.take_warm(size) {
                // Oldest first, so the stack taken next is the newest.
                Some(s) => self.free.insert(0, s),
                None => break,
            }
        }
    }

    /// Unmaps every cached stack (shutdown).
    pub(crate) fn clear(&mut self) {
        // Keeps the reserved room (see `new`).
        self.free.clear();
    }
}

/// The warm stacks of one size.
struct Class {
    /// Usable size; 0 while the class is unused.
    size: usize,
    stacks: StackList,
    /// The fewest stacks the class held since the last trim: that many
    /// sat unused the whole interval.
    low: usize,
}

/// A runtime's pool of free stacks, behind its `Shared::stacks` lock.
pub(crate) struct StackPool {
    classes: [Class; CLASSES],
    /// Stacks of a size no class has room for, to unmap at the next trim.
    release: StackList,
    /// Stacks released with `MADV_FREE`, the oldest first. Only `trim`
    /// adds to it, outside the lock (`trim` takes the vector out).
    cold: Vec<Stack>,
    /// The fewest cold stacks since the last trim.
    cold_low: usize,
}

/// What one `trim` pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrimReport {
    /// Warm stacks released with `MADV_FREE`.
    pub(crate) cooled: usize,
    /// Stacks unmapped.
    pub(crate) unmapped: usize,
    /// `madvise` and `munmap` calls made.
    pub(crate) syscalls: usize,
}

impl StackPool {
    pub(crate) fn new() -> StackPool {
        StackPool {
            classes: std::array::from_fn(|_| Class {
                size: 0,
                stacks: StackList::new(),
                low: 0,
            }),
            release: StackList::new(),
            cold: Vec::new(),
            cold_low: 0,
        }
    }

    /// Pools `stack`. No system call, no allocation.
    pub(crate) fn put(&mut self, stack: Stack) {
        let size = stack.size();
        let class = match self.classes.iter().position(|c| c.size == size) {
            Some(i) => Some(i),
            // An unused class, or one left empty, takes the new size.
            None => self.classes.iter().position(|c| c.stacks.len() == 0),
        };
        match class {
            Some(i) => {
                let c = &mut self.classes[i];
                if c.size != size {
                    c.size = size;
                    c.low = 0;
                }
                c.stacks.push_front(stack);
            }
            None => self.release.push_front(stack),
        }
    }

    /// The most recently freed warm stack of `size`.
    fn take_warm(&mut self, size: usize) -> Option<Stack> {
        let c = self.classes.iter_mut().find(|c| c.size == size)?;
        let s = c.stacks.pop_front()?;
        c.low = c.low.min(c.stacks.len());
        Some(s)
    }

    /// A pooled stack of `size` usable bytes: the newest warm one, else
    /// the newest cold one. Neither makes a system call.
    pub(crate) fn take(&mut self, size: usize) -> Option<Stack> {
        if let Some(s) = self.take_warm(size) {
            return Some(s);
        }
        let n = self.cold.len();
        let i = (n.saturating_sub(COLD_SEARCH)..n)
            .rev()
            .find(|&i| self.cold[i].size() == size)?;
        let s = self.cold.remove(i);
        self.cold_low = self.cold_low.min(self.cold.len());
        Some(s)
    }

    /// Stacks pooled: warm, cold and awaiting release.
    pub(crate) fn len(&self) -> usize {
        self.warm() + self.cold.len() + self.release.len()
    }

    /// Warm stacks pooled (their touched pages kept).
    pub(crate) fn warm(&self) -> usize {
        self.classes.iter().map(|c| c.stacks.len()).sum()
    }

    /// Cold stacks pooled (released with `MADV_FREE`, still mapped).
    pub(crate) fn cold(&self) -> usize {
        self.cold.len()
    }
}

/// One trim pass over `pool` (see the module docs), for a runtime with
/// `live` green threads. Called by the errand thread, never on a worker:
/// it allocates, and its system calls flush the workers' TLBs.
pub(crate) fn trim(pool: &Mutex<StackPool>, live: usize) -> TrimReport {
    let keep = MIN_WARM.max(live / 4);
    let (mut release, unmap_cold, mut cold) = {
        let mut p = pool.lock();
        let release = std::mem::replace(&mut p.release, StackList::new());
        (release, p.cold_low, std::mem::take(&mut p.cold))
    };
    let mut to_unmap = Vec::with_capacity(release.len());
    while let Some(s) = release.pop_front() {
        to_unmap.push(s);
    }
    let mut to_cool = Vec::new();
    for i in 0..CLASSES {
        let mut n = {
            let mut p = pool.lock();
            let c = &mut p.classes[i];
            let n = c.low.saturating_sub(keep).min(c.stacks.len());
            c.low = c.stacks.len() - n;
            n
        };
        while n > 0 {
            // Cut the oldest into a list under the lock (no allocation
            // there), move them into the vector outside it.
            let mut chunk = StackList::new();
            {
                let mut p = pool.lock();
                for _ in 0..n.min(TRIM_CHUNK) {
                    match p.classes[i].stacks.pop_back() {
                        Some(s) => chunk.push_front(s),
                        None => break,
                    }
                }
            }
            if chunk.len() == 0 {
                break;
            }
            n -= chunk.len();
            to_cool.reserve(chunk.len());
            while let Some(s) = chunk.pop_front() {
                to_cool.push(s);
            }
        }
    }
    let mut report = TrimReport {
        cooled: to_cool.len(),
        ..TrimReport::default()
    };
    to_unmap.extend(cold.drain(..unmap_cold.min(cold.len())));
    if !to_cool.is_empty() {
        report.syscalls += advise_runs(&mut to_cool, Release::Free);
        cold.append(&mut to_cool);
    }
    report.unmapped = to_unmap.len();
    report.syscalls += advise_runs(&mut to_unmap, Release::Unmap);
    put_back_cold(pool, cold);
    report
}

/// Returns the cold stacks `trim` took out. Nobody else adds to `cold`,
/// so the pool's is empty; were it not, the two are merged outside the
/// lock (nothing allocates under it).
fn put_back_cold(pool: &Mutex<StackPool>, mut cold: Vec<Stack>) {
    loop {
        let mut p = pool.lock();
        std::mem::swap(&mut p.cold, &mut cold);
        p.cold_low = p.cold.len();
        if cold.is_empty() {
            return;
        }
        let mut merged = std::mem::take(&mut p.cold);
        drop(p);
        merged.append(&mut cold);
        cold = merged;
    }
}

/// Empties `pool`, unmapping everything in it (shutdown), in a few
/// system calls.
pub(crate) fn clear(pool: &Mutex<StackPool>) {
    let (lists, mut stacks) = {
        let mut p = pool.lock();
        p.cold_low = 0;
        let release = std::mem::replace(&mut p.release, StackList::new());
        let classes: [StackList; CLASSES] = std::array::from_fn(|i| {
            p.classes[i].low = 0;
            std::mem::replace(&mut p.classes[i].stacks, StackList::new())
        });
        (
            std::iter::once(release).chain(classes),
            std::mem::take(&mut p.cold),
        )
    };
    for mut l in lists {
        while let Some(s) = l.pop_front() {
            stacks.push(s);
        }
    }
    advise_runs(&mut stacks, Release::Unmap);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 16 * 1024;

    /// `n` stacks, carved from one reserve where guards are guard
    /// regions, so they lie next to each other (as a runtime's do)
    /// whatever other tests map meanwhile; one mapping each otherwise.
    fn stacks(n: usize) -> Vec<Stack> {
        let reserve = super::super::StackReserve::new();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(64);
            let first = Stack::new_many(SIZE, want, &reserve, |s| out.push(s)).unwrap();
            out.push(first);
        }
        out.truncate(n);
        out
    }

    #[test]
    fn the_pool_hands_out_the_most_recently_freed_stack_first() {
        let mut pool = StackPool::new();
        let tops: Vec<usize> = stacks(3)
            .into_iter()
            .map(|s| {
                let top = s.top() as usize;
                pool.put(s);
                top
            })
            .collect();
        let other = Stack::new(2 * SIZE).unwrap();
        pool.put(other);
        assert_eq!(pool.len(), 4);
        for &want in tops.iter().rev() {
            assert_eq!(pool.take(SIZE).unwrap().top() as usize, want);
        }
        assert!(pool.take(SIZE).is_none());
        assert_eq!(pool.take(2 * SIZE).unwrap().size(), 2 * SIZE);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_p_makes_few_stacks_at_first_and_doubles_up_to_the_cap() {
        let mut c = StackCache::new(64);
        let got: Vec<usize> = (0..6).map(|_| c.next_batch(64)).collect();
        assert_eq!(got, [8, 16, 32, 64, 64, 64]);
        let mut small = StackCache::new(4);
        assert_eq!([small.next_batch(4), small.next_batch(4)], [4, 4]);
    }

    #[test]
    fn sizes_beyond_the_classes_are_released_by_the_next_trim() {
        let pool = Mutex::new(StackPool::new());
        for i in 1..=CLASSES + 2 {
            pool.lock().put(Stack::new(i * SIZE).unwrap());
        }
        assert_eq!(pool.lock().len(), CLASSES + 2);
        let r = trim(&pool, 0);
        assert_eq!(r.unmapped, 2);
        assert_eq!(pool.lock().warm(), CLASSES);
        clear(&pool);
        assert_eq!(pool.lock().len(), 0);
    }

    #[test]
    fn idle_excess_is_cooled_then_unmapped_in_few_calls() {
        let n = MIN_WARM + 2000;
        let pool = Mutex::new(StackPool::new());
        for s in stacks(n) {
            pool.lock().put(s);
        }
        // First pass: the low-water mark starts now; nothing is trimmed.
        assert_eq!(trim(&pool, 0), TrimReport::default());
        // A take lowers the mark: 1 stack was needed this interval.
        let taken = pool.lock().take(SIZE).unwrap();
        let r = trim(&pool, 0);
        assert_eq!(r.cooled, n - 1 - MIN_WARM);
        assert_eq!(r.unmapped, 0);
        assert!(r.syscalls < r.cooled / 4, "{r:?}: runs not coalesced");
        assert_eq!(pool.lock().cold(), n - 1 - MIN_WARM);
        assert_eq!(pool.lock().warm(), MIN_WARM);
        // A cold stack is taken back once the warm ones are gone.
        pool.lock().put(taken);
        let r = trim(&pool, 0);
        assert_eq!(r.unmapped, n - 1 - MIN_WARM);
        assert_eq!(r.cooled, 0);
        assert!(r.syscalls < r.unmapped / 4, "{r:?}: runs not coalesced");
        assert_eq!(pool.lock().len(), MIN_WARM + 1);
        // The live count keeps stacks warm.
        let r = trim(&pool, 4 * (MIN_WARM + 1));
        assert_eq!(r, TrimReport::default());
        clear(&pool);
    }

    #[test]
    fn cold_stacks_are_reused_after_madv_free() {
        let pool = Mutex::new(StackPool::new());
        for s in stacks(MIN_WARM + 10) {
            pool.lock().put(s);
        }
        trim(&pool, 0);
        assert_eq!(trim(&pool, 0).cooled, 10);
        let mut p = pool.lock();
        for _ in 0..MIN_WARM {
            p.take(SIZE).unwrap();
        }
        let s = p.take(SIZE).expect("a cold stack");
        assert_eq!(p.cold(), 9);
        drop(p);
        // The pages are usable again after MADV_FREE.
        // SAFETY: the usable range of a stack this test owns.
        unsafe {
            let lo = s.top().sub(s.size());
            lo.write_bytes(7, s.size());
            assert_eq!(*lo, 7);
        }
        clear(&pool);
    }
}
