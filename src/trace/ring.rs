//! Where records go: per-writer buffers of fixed size, each written by
//! one thread only (an M, sysmon, or — under a lock — anybody else).
//!
//! A writer holds a current buffer and a spare. Recording normally, a
//! full buffer is retired (pushed on its runtime's lock-free list) and
//! the spare takes its place; the M refills its spare at a safe point
//! (on its scheduler stack, between two green threads), so the
//! preemption path and sysmon, which may neither allocate nor lock,
//! never need to. Without a spare the record is dropped and counted.
//! As a flight recorder the current buffer is a ring that overwrites
//! its oldest records instead.
//!
//! Slots are atomics written with relaxed stores (plain moves on x86):
//! a reader (the collector in `trace::stop`) may copy a buffer while its
//! writer goes on, and discards what may have been overwritten meanwhile,
//! as a seqlock reader does.

use std::ptr;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

use super::record::Record;

/// Records per buffer (32 bytes each: 2 MiB, one huge page).
pub(crate) const BUF_RECORDS: usize = 65536;

type Slot = [AtomicU64; 4];

/// Bytes of a buffer's slots.
const BUF_BYTES: usize = BUF_RECORDS * std::mem::size_of::<Slot>();

/// A buffer's slots: one 2 MiB-aligned anonymous mapping, so that with
/// transparent huge pages the writer takes one page fault per buffer
/// rather than 512 (in a VM a 4 KiB fault cost about 4 µs: 30 ns a
/// record, more than the rest of the recording).
struct Slots(ptr::NonNull<[Slot; BUF_RECORDS]>);

// SAFETY: the mapping is owned by the `Slots` alone, and its atomics are
// shared only through `&`.
unsafe impl Send for Slots {}
// SAFETY: as above.
unsafe impl Sync for Slots {}

impl Slots {
    fn map() -> Slots {
        // Twice the size, then trim to an aligned 2 MiB.
        // SAFETY: an anonymous private mapping; no pointer is passed in.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                2 * BUF_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<[Slot; BUF_RECORDS]>());
        }
        let start = raw as usize;
        let aligned = (start + BUF_BYTES - 1) & !(BUF_BYTES - 1);
        // SAFETY: both ranges lie in the mapping just made and outside
        // the aligned part kept; madvise is only a hint.
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let end = aligned + BUF_BYTES;
            if start + 2 * BUF_BYTES > end {
                libc::munmap(end as *mut libc::c_void, start + 2 * BUF_BYTES - end);
            }
            libc::madvise(aligned as *mut libc::c_void, BUF_BYTES, libc::MADV_HUGEPAGE);
        }
        // Fault the buffer in now, where it is mapped (at a refill point,
        // or a new M's start), not at its first record: that one may be
        // written by an M just handed a P (a preemption's hand-off), and
        // a huge page's fault (zeroing 2 MiB, perhaps compacting memory
        // first) took milliseconds there, during which the P ran nothing.
        // One write per 4 KiB page, in case no huge page was to be had.
        for page in (0..BUF_BYTES).step_by(4096) {
            // SAFETY: inside the mapping just made, writable; zero is what
            // a fresh anonymous page holds already.
            unsafe { ptr::write_volatile((aligned + page) as *mut u8, 0) };
        }
        // Fresh anonymous pages are zero: valid atomics.
        Slots(ptr::NonNull::new(aligned as *mut [Slot; BUF_RECORDS]).expect("mapped"))
    }
}

impl std::ops::Deref for Slots {
    type Target = [Slot; BUF_RECORDS];
    fn deref(&self) -> &Self::Target {
        // SAFETY: mapped for as long as `self` lives.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer referenced.
        unsafe { libc::munmap(self.0.as_ptr().cast(), BUF_BYTES) };
    }
}

/// A fixed-size buffer of records.
pub(crate) struct Buf {
    slots: Slots,
    /// Records ever written to it; record `i` lives in slot `i %
    /// BUF_RECORDS` (it only wraps as a flight recorder).
    len: AtomicU64,
    /// Link in the retired list.
    next: AtomicPtr<Buf>,
    /// The writer it belongs to (its address), so a retired buffer's
    /// records are still known to be that writer's.
    pub(crate) owner: usize,
}

impl Buf {
    fn new(owner: usize) -> *mut Buf {
        let slots = Slots::map();
        Box::into_raw(Box::new(Buf {
            slots,
            len: AtomicU64::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            owner,
        }))
    }

    /// Writes record number `n` (its writer's next) and publishes it.
    #[inline(always)]
    fn write(&self, n: u64, rec: &Record) {
        // Seqlock writer: the slot stores stay after the previous
        // record's `len` store (a compiler barrier on x86).
        fence(Ordering::Release);
        let slot = &self.slots[(n % BUF_RECORDS as u64) as usize];
        for (s, w) in slot.iter().zip(rec) {
            s.store(*w, Ordering::Relaxed);
        }
        self.len.store(n + 1, Ordering::Release);
    }

    /// Copies the records still held (the last `BUF_RECORDS` written)
    /// into `out`. With `wraps` (a flight recorder's current buffer) the
    /// writer may overwrite old records during the copy: those that may
    /// have been are left out.
    pub(crate) fn copy_into(&self, out: &mut Vec<Record>, wraps: bool) {
        let end = self.len.load(Ordering::Acquire);
        let begin = end.saturating_sub(BUF_RECORDS as u64);
        let from = out.len();
        for i in begin..end {
            let s = &self.slots[(i % BUF_RECORDS as u64) as usize];
            out.push([
                s[0].load(Ordering::Relaxed),
                s[1].load(Ordering::Relaxed),
                s[2].load(Ordering::Relaxed),
                s[3].load(Ordering::Relaxed),
            ]);
        }
        if !wraps {
            return;
        }
        // Seqlock check: the writer's record `n` may overwrite record
        // `n - BUF_RECORDS`; every record below `len_now + 1 - N` may
        // have been overwritten while we copied.
        fence(Ordering::Acquire);
        let now = self.len.load(Ordering::Relaxed);
        let valid_from = (now + 1).saturating_sub(BUF_RECORDS as u64).max(begin);
        let skip = (valid_from - begin).min(end - begin) as usize;
        out.drain(from..from + skip);
    }
}

/// A lock-free stack of retired (full) buffers: writers push, the
/// collector takes the whole stack at once (so no ABA).
#[derive(Default)]
pub(crate) struct Retired {
    head: AtomicPtr<Buf>,
}

impl Retired {
    fn push(&self, b: *mut Buf) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `b` was just retired by its writer; nobody else
            // touches its link until the exchange publishes it.
            unsafe { (*b).next.store(head, Ordering::Relaxed) };
            match self
                .head
                .compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every retired buffer (to own and free). Boxed: a buffer
    /// must not move (writers point at it, and its address names it).
    #[allow(clippy::vec_box)]
    pub(crate) fn take_all(&self) -> Vec<Box<Buf>> {
        let mut p = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        let mut out = Vec::new();
        while !p.is_null() {
            // SAFETY: retired buffers came from `Box::into_raw` and are
            // owned by the list; the swap made this chain ours.
            let b = unsafe { Box::from_raw(p) };
            p = b.next.load(Ordering::Relaxed);
            out.push(b);
        }
        out
    }
}

impl Drop for Retired {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

/// One producer's buffers. Only its owner thread writes records (and
/// moves `cur`); anyone may fill an empty `cur` or `spare` (compare-and-
/// swap from null), which is how they are refilled at safe points.
pub(crate) struct Writer {
    cur: AtomicPtr<Buf>,
    spare: AtomicPtr<Buf>,
    dropped: AtomicU64,
    /// The green thread this M runs (kept while recording, for sysmon's
    /// SIGURG records).
    pub(crate) running: AtomicU64,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// A writer without buffers (no allocation): records are dropped
    /// until `refill` gives it some.
    pub(crate) const fn new() -> Writer {
        Writer {
            cur: AtomicPtr::new(ptr::null_mut()),
            spare: AtomicPtr::new(ptr::null_mut()),
            dropped: AtomicU64::new(0),
            running: AtomicU64::new(0),
        }
    }

    /// Gives the writer a current and a spare buffer if it lacks either.
    /// Allocates: only at safe points (never on the preemption path, in
    /// sysmon or in a signal handler).
    pub(crate) fn refill(&self) {
        for slot in [&self.cur, &self.spare] {
            if slot.load(Ordering::Acquire).is_null() {
                let b = Buf::new(self as *const Writer as usize);
                if slot
                    .compare_exchange(ptr::null_mut(), b, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // SAFETY: ours from `Buf::new`, never published.
                    drop(unsafe { Box::from_raw(b) });
                }
            }
        }
    }

    /// The spare is gone (taken when a buffer filled): refill it soon.
    /// (`cur` is filled first, so a writer with a spare has both.)
    #[inline]
    pub(crate) fn needs_refill(&self) -> bool {
        self.spare.load(Ordering::Relaxed).is_null()
    }

    /// Appends a record. Lock-free and allocation-free.
    ///
    /// The common case (a current buffer with room, or a flight
    /// recorder's ring) is inline and saves no register; a full or
    /// missing buffer goes to the out-of-line `push_slow`.
    ///
    /// # Safety
    /// Only one thread at a time may push to a writer (its owner, or the
    /// holder of the lock that guards it), and a push must not interrupt
    /// another push to the same writer (no pushes from a signal handler;
    /// a green thread pushes under a no-preempt scope).
    #[inline(always)]
    pub(crate) unsafe fn push(&self, rec: Record, flight: bool, retired: &Retired) {
        // SAFETY: a writer's buffers live until the writer drops (retired
        // ones until the collector frees them, after their last push).
        if let Some(b) = unsafe { self.cur.load(Ordering::Relaxed).as_ref() } {
            let n = b.len.load(Ordering::Relaxed);
            if n < BUF_RECORDS as u64 || flight {
                return b.write(n, &rec);
            }
        }
        let [w0, w1, w2, w3] = rec;
        // SAFETY: the caller's contract.
        unsafe { self.push_slow(w0, w1, w2, w3, flight, retired) }
    }

    /// `push` without room: retire the full buffer and go on in the
    /// spare, or drop the record (and count it) if there is none. The
    /// record comes in four words, in registers: passed as an array it
    /// would be spilled to the stack on the common path too.
    ///
    /// # Safety
    /// As for `push`.
    #[cold]
    #[inline(never)]
    unsafe fn push_slow(
        &self,
        w0: u64,
        w1: u64,
        w2: u64,
        w3: u64,
        flight: bool,
        retired: &Retired,
    ) {
        let rec = [w0, w1, w2, w3];
        let buf = self.cur.load(Ordering::Relaxed);
        // SAFETY: as in `push`.
        let Some(b) = (unsafe { buf.as_ref() }) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let n = b.len.load(Ordering::Relaxed);
        if n < BUF_RECORDS as u64 || flight {
            return b.write(n, &rec);
        }
        match self.next_buf(buf, retired) {
            Some(next) => next.write(0, &rec),
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The current buffer `full` is full: retire it and take the spare
    /// (None: there is none, the records are dropped).
    #[cold]
    #[inline(never)]
    fn next_buf(&self, full: *mut Buf, retired: &Retired) -> Option<&Buf> {
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if spare.is_null() {
            return None;
        }
        self.cur.store(spare, Ordering::Release);
        retired.push(full);
        // SAFETY: the spare is ours now, and lives as the writer does
        // (until retired, then until the collector frees it).
        Some(unsafe { &*spare })
    }

    /// Copies what the current buffer holds (see `Buf::copy_into`).
    pub(crate) fn copy_into(&self, out: &mut Vec<Record>, wraps: bool) {
        let b = self.cur.load(Ordering::Acquire);
        // SAFETY: the current buffer lives while the writer does (a
        // buffer the writer retires meanwhile is freed only by the
        // collector, which is the caller, later).
        if let Some(b) = unsafe { b.as_ref() } {
            b.copy_into(out, wraps);
        }
    }

    /// The current buffer's address (to tell it apart from retired ones).
    pub(crate) fn current(&self) -> *const Buf {
        self.cur.load(Ordering::Acquire)
    }

    /// Records dropped for want of a buffer, ever.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        for p in [self.cur.get_mut(), self.spare.get_mut()] {
            if !p.is_null() {
                // SAFETY: owned by the writer, from `Buf::new`.
                drop(unsafe { Box::from_raw(*p) });
            }
        }
    }
}
