//! The netpoller's io_uring ring: file operations that park a green
//! thread until the kernel completes them.
//!
//! Regular files are not pollable, so epoll cannot tell when their reads
//! would not block; io_uring can do the read itself and say when it is
//! done. The process has one ring per P index (shared by the Ps of that
//! index in every runtime, as the epoll instance is shared), because the
//! kernel finishes a request on the thread that submitted it: with one
//! ring, one worker would submit, and take the completion interrupts of,
//! everything — on a 2-core virtio disk, random 4 KiB reads at depth 64
//! reach about 49k IOPS from one submitting thread and 68k from two
//! (fio). Each worker submits its own P's ring:
//!
//! - **Submit.** A green thread fills a submission entry whose user data
//!   is the address of a [`Slot`] on its own stack, queues it under
//!   `sq_lock` (held for a few stores, under `no_preempt`, never by user
//!   code), and parks. Nothing enters the kernel yet: a worker submits
//!   everything queued, in one `io_uring_enter`, when it looks at the
//!   netpoller (its run queue ran dry, or it is about to sleep), after
//!   [`BATCH`] entries, or once the oldest waited [`STALE_NS`] (checked
//!   on every scheduling round and by sysmon) — submissions are batched
//!   per scheduling round, not made one syscall per operation.
//! - **Complete.** A ring signals its eventfd on every completion; the
//!   eventfd sits in the netpoller's epoll set, so whoever polls (a
//!   worker looking for work, the one blocked in epoll_wait, sysmon's
//!   errand) drains the completion queue, under `cq_lock`, into the same
//!   ready list as socket wake-ups.
//! - **Cancel.** A waiter never leaves before its completion: the kernel
//!   may write into its buffer until then. A green thread cancelled by its
//!   runtime's shutdown asks the kernel to cancel the request
//!   (IORING_OP_ASYNC_CANCEL), then still waits for the completion.
//!
//! In-flight operations count as netpoll waiters, so the poller blocks
//! in epoll_wait (not a futex) while any are out. When the ring cannot
//! take an operation (its completion queue could overflow, or the
//! submission queue stays full), the caller runs it as a blocking syscall
//! instead.
//!
//! The `io-uring` crate owns the ring protocol (mmap layout, memory
//! ordering of the head and tail indices, the enter/register calls); see
//! docs/DESIGN.md, "Dependencies".

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use io_uring::{opcode, squeue, IoUring};

mod op;

pub(crate) use op::{Op, MAX_LEN};

use super::waiters::WAITERS;
use crate::scheduler::park::{self, GRef, ReadyList, Waker};
use crate::sys::{clock, FutexLock};

/// Submission queue entries per ring (the completion queue has twice as
/// many).
const ENTRIES: u32 = 512;
/// Most rings: P indices beyond share (index modulo the ring count).
const MAX_RINGS: usize = 64;
/// Queued entries that are submitted at once, whoever notices.
pub(crate) const BATCH: u32 = 32;
/// Queued entries older than this are submitted at the next chance.
pub(crate) const STALE_NS: u64 = 50_000;
/// User data of cancellation requests (whose completions are ignored); no
/// slot has this address.
const CANCEL_TOKEN: u64 = 1;
/// Times an operation cancelled by a submitter's exit is submitted again.
const MAX_RESUBMITS: u32 = 3;
/// Where a completion lands: on the waiting green thread's stack, alive
/// until `done` is seen (the waiter does not return before).
struct Slot {
    /// The waiter; taken by the reaper before it sets `done`.
    waiter: UnsafeCell<Option<GRef>>,
    result: AtomicI32,
    done: AtomicBool,
}

struct Ring {
    ring: IoUring,
    /// One pusher at a time (the queue's tail is single-producer).
    sq_lock: FutexLock<()>,
    /// One reaper at a time (the queue's head is single-consumer).
    cq_lock: FutexLock<()>,
    /// Entries queued and not yet submitted.
    queued: AtomicU32,
    /// When the oldest of them was queued (monotonic ns).
    first_queued: AtomicU64,
    /// Operations submitted or queued whose completion has not been
    /// reaped; kept at most the completion queue's size.
    in_flight: AtomicU32,
    cq_entries: u32,
    /// Signalled by the ring on each completion; in the epoll set.
    eventfd: OwnedFd,
}

/// Set once the rings exist (the process's first file operation).
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Whether this process has made its rings (a cheap test for the
/// scheduler's per-round check).
#[inline]
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

static RINGS: [OnceLock<Result<Ring, String>>; MAX_RINGS] = [const { OnceLock::new() }; MAX_RINGS];

/// How many rings: one per CPU this process may use, at most
/// `MAX_RINGS`.
fn ring_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_RINGS)
    })
}

/// Ring `index`. All rings are made together at the first use, so the
/// fds they hold (two each) are there from then on, not a few more
/// whenever a P first reads a file. A ring that cannot be made falls back
/// to ring 0; None if that cannot be made either.
fn ring_at(index: usize) -> Option<&'static Ring> {
    let first = RINGS[0]
        .get_or_init(|| {
            let first = Ring::new(0);
            if first.is_ok() {
                for (i, r) in RINGS.iter().enumerate().take(ring_count()).skip(1) {
                    r.get_or_init(|| Ring::new(i));
                }
                IN_USE.store(true, Ordering::Release);
            }
            first
        })
        .as_ref()
        .ok()?;
    if index == 0 {
        return Some(first);
    }
    Some(match RINGS[index].get() {
        Some(Ok(r)) => r,
        _ => first,
    })
}

/// The ring of the caller's P (ring 0 without one).
fn my_ring() -> Option<&'static Ring> {
    let index = crate::scheduler::park::current_p_id().unwrap_or(0) % ring_count();
    ring_at(index)
}

/// The rings made so far.
fn made_rings() -> impl Iterator<Item = &'static Ring> {
    RINGS[..ring_count()]
        .iter()
        .filter_map(|r| r.get().and_then(|r| r.as_ref().ok()))
}

/// Whether green threads' file operations use io_uring in this process.
pub(crate) fn available() -> bool {
    ring_at(0).is_some()
}

/// Why io_uring is not used, if it is not.
pub(crate) fn unavailable_reason() -> Option<String> {
    // Through `ring_at`, the one place the rings are set up.
    ring_at(0);
    RINGS[0].get().and_then(|r| r.as_ref().err().cloned())
}

impl Ring {
    fn new(index: usize) -> Result<Ring, String> {
        if std::env::var("GREENRT_IO_URING").is_ok_and(|v| v == "off" || v == "0") {
            return Err("GREENRT_IO_URING=off".into());
        }
        // ENOSYS (no io_uring), EPERM (seccomp, kernel.io_uring_disabled),
        // ENOMEM (RLIMIT_MEMLOCK on old kernels) all end up here.
        let ring = IoUring::builder()
            .setup_cqsize(2 * ENTRIES)
            .build(ENTRIES)
            .map_err(|e| format!("io_uring_setup failed: {e}"))?;
        // SAFETY: a plain syscall taking no pointers.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let efd = crate::sys::cvt(efd).map_err(|e| format!("eventfd failed: {e}"))?;
        // SAFETY: `efd` was just created (checked) and has no other owner.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter()
            .register_eventfd(eventfd.as_raw_fd())
            .map_err(|e| format!("registering the ring's eventfd failed: {e}"))?;
        super::add_completion_source(eventfd.as_raw_fd(), index)
            .map_err(|e| format!("adding the ring's eventfd to epoll failed: {e}"))?;
        let cq_entries = ring.params().cq_entries();
        Ok(Ring {
            ring,
            sq_lock: FutexLock::new(()),
            cq_lock: FutexLock::new(()),
            queued: AtomicU32::new(0),
            first_queued: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            cq_entries,
            eventfd,
        })
    }

    /// Queues `entry`; false if the ring has no room for it.
    fn push(&self, entry: &squeue::Entry) -> bool {
        let _np = crate::preempt::no_preempt();
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.cq_entries {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let pushed = {
            let _sq = self.sq_lock.lock();
            let mut pushed = self.push_locked(entry);
            if !pushed {
                // Full of entries nobody submitted yet: submit them here.
                self.submit();
                pushed = self.push_locked(entry);
            }
            pushed
        };
        if !pushed {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) == 0 {
            self.first_queued.store(clock::now(), Ordering::Relaxed);
        }
        true
    }

    fn push_locked(&self, entry: &squeue::Entry) -> bool {
        // SAFETY: `sq_lock` is held, so this is the only submission queue
        // handle in use; the entry's buffer stays valid until its
        // completion (the pusher's contract, see `submit_and_wait`).
        let mut sq = unsafe { self.ring.submission_shared() };
        // SAFETY: as above. Dropping `sq` publishes the new tail.
        unsafe { sq.push(entry) }.is_ok()
    }

    /// Submits everything queued (one io_uring_enter).
    fn submit(&self) {
        // Looked at on every netpoll: a plain load first, so the common
        // nothing-queued case writes no shared line.
        if self.queued.load(Ordering::Relaxed) == 0 {
            return;
        }
        let n = self.queued.swap(0, Ordering::AcqRel);
        if n == 0 {
            return;
        }
        match self.ring.submitter().submit() {
            // The kernel may take fewer than were queued (out of
            // resources midway): the rest stay in the ring, counted again
            // for the next chance.
            Ok(taken) if (taken as u32) < n => {
                self.queued.fetch_add(n - taken as u32, Ordering::AcqRel);
            }
            Ok(_) => {}
            // EAGAIN/EBUSY: all of them stay; try again at the next chance.
            Err(_) => {
                self.queued.fetch_add(n, Ordering::AcqRel);
            }
        }
    }

    /// Drains the completion queue: each waiter gets its result and goes
    /// to `ready`. Returns how many were woken.
    /// `only_if_posted`: look at the queue first and do nothing (no
    /// eventfd read) if it is empty.
    fn reap(&self, ready: &mut ReadyList, only_if_posted: bool) -> usize {
        // Another reaper is at it; the eventfd, unread, stays readable
        // (level-triggered), so nothing posted after it looked is lost.
        let Some(_cq) = self.cq_lock.try_lock() else {
            return 0;
        };
        // SAFETY: `cq_lock` is held: the only completion queue handle.
        if only_if_posted && unsafe { self.ring.completion_shared() }.is_empty() {
            return 0;
        }
        let mut count = 0u64;
        // Read the eventfd before looking: a completion posted after this
        // read signals it again. Non-blocking: EAGAIN if it was not set.
        // SAFETY: reading 8 bytes into a u64 from our eventfd.
        unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        let mut woken = 0;
        // SAFETY: `cq_lock` is held: the only completion queue handle.
        let cq = unsafe { self.ring.completion_shared() };
        for cqe in cq {
            // Every completion had its place counted in `in_flight` (a
            // cancel request's too: the queue must hold both).
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if cqe.user_data() == CANCEL_TOKEN {
                continue;
            }
            WAITERS.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: every other user data is the address of a Slot
            // whose waiter is still waiting for this very completion.
            let slot = unsafe { &*(cqe.user_data() as *const Slot) };
            // SAFETY: the waiter wrote this before queueing the entry
            // and does not touch it until `done`.
            let waiter = unsafe { (*slot.waiter.get()).take() };
            slot.result.store(cqe.result(), Ordering::Relaxed);
            // From here the slot may be gone (its waiter may return).
            slot.done.store(true, Ordering::Release);
            if let Some(g) = waiter {
                Waker::Green(g).ready_into(ready);
                woken += 1;
            }
        }
        woken
    }

    fn submission_due(&self, now: u64) -> bool {
        let n = self.queued.load(Ordering::Relaxed);
        n >= BATCH
            || (n > 0 && now.saturating_sub(self.first_queued.load(Ordering::Relaxed)) >= STALE_NS)
    }
}

/// Runs `op` on the ring from a green thread, parking it until the
/// completion arrives. Returns None (nothing submitted) if there is no
/// ring or it has no room: run the operation another way.
///
/// # Safety
///
/// The memory `op` names must stay valid (and, for a read, unaliased)
/// until this returns; it returns only after the kernel is done with it.
pub(crate) unsafe fn submit_and_wait(op: Op) -> Option<io::Result<i32>> {
    let g = park::current_green()?;
    let ring = my_ring()?;
    // A blocking call of the runtime: a cancelled green thread unwinds
    // here (before anything is in flight) rather than keep doing I/O.
    park::unwind_if_cancelled();
    let mut resubmits = 0;
    loop {
        let slot = Slot {
            waiter: UnsafeCell::new(Some(g.clone())),
            result: AtomicI32::new(0),
            done: AtomicBool::new(false),
        };
        let user_data = &slot as *const Slot as u64;
        WAITERS.fetch_add(1, Ordering::Relaxed);
        if !ring.push(&op.entry(user_data)) {
            WAITERS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        crate::netpoll::poller_needed();
        let mut cancel_sent = false;
        while !slot.done.load(Ordering::Acquire) {
            let cancelled = park::block_through_cancel(park::BlockReason::File);
            if cancelled && !cancel_sent && !slot.done.load(Ordering::Acquire) {
                cancel_sent = true;
                let cancel = opcode::AsyncCancel::new(user_data)
                    .build()
                    .user_data(CANCEL_TOKEN);
                // No room: the operation simply runs to its end. Its
                // completion is counted in `in_flight` like any other, so
                // the completion queue never holds more than it can.
                if ring.push(&cancel) {
                    ring.submit();
                }
            }
        }
        let res = slot.result.load(Ordering::Relaxed);
        // The kernel is done with the buffer: a cancelled green thread may
        // unwind now (whether or not the cancel request got there first).
        park::unwind_if_cancelled();
        // ECANCELED we did not ask for: the thread that submitted the
        // request exited, and the kernel cancels such requests. Again (a
        // few times: a file system may also answer ECANCELED itself).
        if res == -libc::ECANCELED && resubmits < MAX_RESUBMITS {
            resubmits += 1;
            continue;
        }
        return Some(if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res)
        });
    }
}

/// Submits whatever is queued on the caller's P's ring, or on every ring
/// for a caller without a P (a worker looking at the netpoller, the
/// errand thread).
#[inline]
pub(crate) fn submit_pending() {
    if in_use() {
        submit_pending_now();
    }
}

fn submit_pending_now() {
    match crate::scheduler::park::current_p_id() {
        Some(p) => {
            if let Some(r) = ring_at(p % ring_count()) {
                r.submit();
            }
        }
        None => made_rings().for_each(Ring::submit),
    }
}

/// Submits what is queued on P `p`'s ring (every ring for None: sysmon)
/// if enough has gathered or the oldest waited long enough.
pub(crate) fn submit_if_due(p: Option<usize>, now: impl Fn() -> u64) {
    if !in_use() {
        return;
    }
    let due = |r: &Ring| r.queued.load(Ordering::Relaxed) > 0 && r.submission_due(now());
    match p {
        Some(p) => {
            if let Some(r) = ring_at(p % ring_count()).filter(|r| due(r)) {
                r.submit();
            }
        }
        None => made_rings().filter(|r| due(r)).for_each(Ring::submit),
    }
}

/// The netpoller saw ring `index`'s eventfd: hand the completions'
/// waiters to `ready`.
pub(super) fn reap(index: usize, ready: &mut ReadyList) -> usize {
    match RINGS.get(index).and_then(|r| r.get()) {
        Some(Ok(r)) => r.reap(ready, false),
        _ => 0,
    }
}

/// A worker between green threads: takes the completions already posted
/// on its P's ring (no syscall when there are none), without waiting for
/// the eventfd to reach a poller. The kernel posts a request's completion
/// on the thread that submitted it — usually this one — so they are
/// often here before anyone polls.
pub(crate) fn reap_posted(p: usize, ready: &mut ReadyList) -> usize {
    match ring_at(p % ring_count()) {
        Some(r) if r.in_flight.load(Ordering::Relaxed) > 0 => r.reap(ready, true),
        _ => 0,
    }
}
