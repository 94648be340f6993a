//! Address space for stacks, mapped ahead in growing chunks.
//!
//! When green threads start faster than others finish, a P maps a batch
//! of stacks at once (`Stack::new_many`). Each `mmap` takes the process's
//! memory-map lock for writing, and, as the new mapping lands next to the
//! previous one and merges with it, write-locks that merged area too —
//! which waits for every page fault in flight on it. Those are the other
//! workers' green threads touching their fresh stacks, so each batch
//! stalled both workers: a million sleepers spawned on 2 workers blocked
//! about 13 500 times in the kernel (`rwsem_down_read_slowpath`,
//! `__vma_start_write` under `vma_expand`; `perf record -e
//! sched:sched_switch`), and the two cores were 1.3 busy on average.
//!
//! A runtime's [`StackReserve`] therefore maps address space a chunk at a
//! time — the first [`FIRST_CHUNK`] bytes, each next chunk twice the last,
//! up to [`MAX_CHUNK`] — and carves batches of stacks from it without a
//! system call. The chunk is `MAP_NORESERVE` and untouched, so it costs
//! address space only: no memory, no page tables, and no commit charge
//! under the kernel's default overcommit policy. Under strict accounting
//! (`vm.overcommit_memory=2`, where `MAP_NORESERVE` is ignored and the
//! whole chunk would count against the commit limit) the reserve maps
//! just the batch asked for, as does a reserve whose big chunk the
//! kernel refused (an address-space limit). Chunks are `MADV_NOHUGEPAGE`:
//! with transparent huge pages set to `always`, a stack's first touch in
//! a 2 MiB block of the chunk that no guard page has given a page table
//! yet would otherwise fault in a whole huge page. Each stack carved from
//! it still owns its own range (its `Drop` unmaps just that), so pooling
//! and trimming work as before. What is not carved is unmapped when the
//! runtime shuts down ([`StackReserve::release`]) or drops.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{self, MapFlags, MmapAdvise, ProtFlags};
use parking_lot::Mutex;

use super::{DEFAULT_STACK_SIZE, GUARD_LEN};

/// Size of a runtime's first chunk: 64 stacks of the default size (a
/// P's batch).
const FIRST_CHUNK: usize = 64 * (DEFAULT_STACK_SIZE + GUARD_LEN);
/// Largest chunk: about 4 000 stacks of the default size per `mmap`.
const MAX_CHUNK: usize = 1 << 30;

/// Mapped, not yet carved address space for one runtime's stacks.
pub(crate) struct StackReserve {
    chunk: Mutex<Chunk>,
}

/// `[next, end)` is mapped read-write and owned by the reserve; `grow` is
/// the size of the next chunk to map.
struct Chunk {
    next: usize,
    end: usize,
    grow: usize,
    /// Bytes given back so far (what the tests check: a `mincore` probe
    /// of an unmapped range could see another test's new mapping there).
    #[cfg(test)]
    unmapped: usize,
}

impl StackReserve {
    /// An empty reserve; it maps its first chunk when first carved. Reads
    /// the kernel's overcommit policy (once, here: not on the scheduler's
    /// paths, where reading a file could allocate).
    pub(crate) fn new() -> StackReserve {
        let strict = super::read_number("/proc/sys/vm/overcommit_memory") == Some(2);
        StackReserve::with_chunks(if strict { 0 } else { FIRST_CHUNK })
    }

    /// A reserve whose first chunk is `first` bytes (0: map only each
    /// batch, never ahead).
    fn with_chunks(first: usize) -> StackReserve {
        StackReserve {
            chunk: Mutex::new(Chunk {
                next: 0,
                end: 0,
                grow: first,
                #[cfg(test)]
                unmapped: 0,
            }),
        }
    }

    /// Hands out `n` adjacent ranges of `len` bytes each, `1 <= n <=
    /// count`, as `(start, n)`: the caller owns `[start, start + n * len)`
    /// (mapped read-write, untouched) and must unmap it. `None` when no
    /// chunk can be mapped (the caller maps its stacks another way).
    /// `len` is a multiple of the page size.
    pub(crate) fn carve(&self, len: usize, count: usize) -> Option<(NonNull<u8>, usize)> {
        let count = count.max(1);
        let mut c = self.chunk.lock();
        if c.end - c.next < len {
            c.unmap_rest();
            let batch = len.checked_mul(count)?;
            let ahead = c.grow.max(batch);
            let (start, size) = match (c.grow > 0).then(|| map(ahead)).flatten() {
                Some(start) => {
                    c.grow = (c.grow * 2).min(MAX_CHUNK);
                    (start, ahead)
                }
                // No chunks (strict accounting), or this one refused (an
                // address-space or commit limit): map each batch from now
                // on, one `mmap` each, as without a reserve, rather than
                // try a big one every time.
                None => {
                    c.grow = 0;
                    (map(batch)?, batch)
                }
            };
            c.next = start;
            c.end = start + size;
        }
        let n = ((c.end - c.next) / len).min(count);
        let start = c.next;
        c.next += n * len;
        Some((NonNull::new(start as *mut u8)?, n))
    }

    /// Unmaps what is not carved (shutdown: the stacks handed out are
    /// their owners' to unmap). Carving after this maps a new chunk.
    pub(crate) fn release(&self) {
        self.chunk.lock().unmap_rest();
    }
}

/// Maps `size` bytes of fresh address space and returns where.
fn map(size: usize) -> Option<usize> {
    // SAFETY: a fresh anonymous private mapping with no address hint
    // cannot alias or replace any existing memory.
    let start = unsafe {
        mman::mmap_anonymous(
            None,
            NonZeroUsize::new(size)?,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }
    .ok()?;
    // SAFETY: the advice only changes how the kernel may back this fresh
    // mapping (no huge pages), not its contents or access.
    let _ = unsafe { mman::madvise(start, size, MmapAdvise::MADV_NOHUGEPAGE) };
    Some(start.as_ptr() as usize)
}

impl Chunk {
    fn unmap_rest(&mut self) {
        if let Some(start) = NonNull::new(self.next as *mut libc::c_void) {
            if self.end > self.next {
                // SAFETY: `[next, end)` is the uncarved tail of a chunk
                // this reserve mapped; no stack was handed out from it,
                // so nothing refers to it.
                let _ = unsafe { mman::munmap(start, self.end - self.next) };
                #[cfg(test)]
                {
                    self.unmapped += self.end - self.next;
                }
            }
        }
        self.next = 0;
        self.end = 0;
    }
}

impl Drop for StackReserve {
    fn drop(&mut self) {
        self.chunk.get_mut().unmap_rest();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn batches_are_carved_adjacent_from_one_chunk() {
        let r = StackReserve::with_chunks(FIRST_CHUNK);
        let len = 65 * PAGE;
        let (a, n) = r.carve(len, 10).expect("carve");
        assert_eq!(n, 10);
        let (b, m) = r.carve(len, 10).expect("carve");
        assert_eq!(m, 10);
        assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 10 * len);
        // SAFETY: the carved ranges are this test's, mapped read-write.
        unsafe {
            a.as_ptr().write(1);
            b.as_ptr().add(10 * len - 1).write(2);
            mman::munmap(a.cast(), 20 * len).unwrap();
        }
    }

    #[test]
    fn a_batch_takes_what_is_left_then_a_new_chunk_is_mapped() {
        let r = StackReserve::with_chunks(FIRST_CHUNK);
        let len = 3 * PAGE;
        let fit = FIRST_CHUNK / len;
        let (a, n) = r.carve(len, fit - 2).expect("carve");
        assert_eq!(n, fit - 2);
        // Two stacks are left in the first chunk: a batch of four gets
        // those two, and the part of a stack after them stays unused.
        let (b, m) = r.carve(len, 4).expect("carve");
        assert_eq!(m, 2);
        assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + n * len);
        let tail = FIRST_CHUNK - fit * len;
        assert!(tail > 0 && tail < len);
        assert_eq!(r.chunk.lock().unmapped, 0);
        let (c, k) = r.carve(len, 4).expect("a new chunk");
        assert_eq!(k, 4);
        assert_eq!(r.chunk.lock().unmapped, tail, "the old chunk's tail");
        // SAFETY: the carved ranges are this test's.
        unsafe {
            mman::munmap(a.cast(), fit * len).unwrap();
            mman::munmap(c.cast(), 4 * len).unwrap();
        }
    }

    #[test]
    fn release_unmaps_what_was_not_carved() {
        let r = StackReserve::with_chunks(FIRST_CHUNK);
        let len = 4 * PAGE;
        let (a, _) = r.carve(len, 1).expect("carve");
        r.release();
        assert_eq!(r.chunk.lock().unmapped, FIRST_CHUNK - len);
        // The carved stack is still there, and the next carve maps anew.
        // SAFETY: the carved range is this test's, mapped read-write.
        unsafe { a.as_ptr().add(len - 1).write(1) };
        let (b, _) = r.carve(len, 1).expect("carve after release");
        // SAFETY: the carved ranges are this test's.
        unsafe {
            mman::munmap(a.cast(), len).unwrap();
            mman::munmap(b.cast(), len).unwrap();
        }
    }

    #[test]
    fn without_chunks_each_batch_is_mapped_alone() {
        // 0: strict overcommit accounting; 1 << 62: a first chunk the
        // kernel refuses, after which the reserve stops trying.
        for first in [0, 1 << 62] {
            let r = StackReserve::with_chunks(first);
            let len = 5 * PAGE;
            for _ in 0..3 {
                let (a, n) = r.carve(len, 7).expect("carve");
                assert_eq!(n, 7, "first chunk {first:#x}");
                let c = r.chunk.lock();
                assert_eq!((c.next, c.end), (c.end, a.as_ptr() as usize + 7 * len));
                assert_eq!(c.grow, 0, "first chunk {first:#x}: still growing");
                drop(c);
                // SAFETY: the carved range is this test's.
                unsafe { mman::munmap(a.cast(), 7 * len).unwrap() };
            }
        }
    }

    #[test]
    fn chunks_grow_to_the_cap() {
        let r = StackReserve::with_chunks(FIRST_CHUNK);
        let len = FIRST_CHUNK;
        let mut sizes = Vec::new();
        for _ in 0..8 {
            // Each carve of one chunk-sized stack empties the chunk.
            let (a, n) = r.carve(len, 1).expect("carve");
            assert_eq!(n, 1);
            sizes.push(r.chunk.lock().end - a.as_ptr() as usize);
            // SAFETY: the carved range is this test's.
            unsafe { mman::munmap(a.cast(), len).unwrap() };
            r.release();
        }
        assert_eq!(sizes[0], FIRST_CHUNK);
        assert_eq!(sizes[1], 2 * FIRST_CHUNK);
        assert_eq!(*sizes.last().unwrap(), MAX_CHUNK);
    }
}
