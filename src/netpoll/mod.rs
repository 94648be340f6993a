//! The netpoller: one epoll instance for the process, after Go's
//! netpoll_epoll.go.
//!
//! - Every fd is registered once, edge-triggered, for both directions
//!   (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET). The event's data names its
//!   [`PollDesc`] and the descriptor's generation, so an event that arrives
//!   after the fd was closed (and perhaps reused) is recognised and dropped.
//! - A green thread that gets EAGAIN parks in its descriptor's read or
//!   write slot ([`PollDesc::wait`]); an event wakes it.
//! - Who calls epoll_wait: an M about to sleep for lack of work blocks in
//!   the poller instead, with the next timer as its timeout — one M at a
//!   time (`BLOCKED`); an M looking for work polls without blocking; sysmon
//!   polls if nobody has for 10 ms. An eventfd breaks a blocking wait when
//!   that M is handed a P or kicked (`scheduler::handoff`).
//!
//! The poller is process-wide, so one socket can move between runtimes;
//! waking a green thread always goes to its own runtime's queues.

mod desc;
mod fd;
pub(crate) mod uring;
mod waiters;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::scheduler::park::ReadyList;
use crate::sys::cvt;
use waiters::Woken;

pub(crate) use desc::{Interest, PollDesc};
pub(crate) use fd::{timeout_as_would_block, NetFd};

use crate::sys::clock;

/// Events read per epoll_wait.
const EVENTS: usize = 128;
/// The eventfd's event data (no descriptor has this address).
const EVENTFD_TOKEN: u64 = 0;
/// The event data of io_uring ring `i`'s completion eventfd is
/// `URING_TOKEN + i` (see `uring`); descriptors' addresses are far above.
const URING_TOKEN: u64 = 1;
const URING_TOKEN_END: u64 = 4096;
/// sysmon has the errand thread poll if nobody has for this long.
pub(crate) const STALE_POLL_NS: u64 = 10_000_000;

struct Poller {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    /// A break is on its way (coalesces eventfd writes).
    wake_sent: AtomicBool,
}

static POLLER: OnceLock<Poller> = OnceLock::new();
/// An M is blocked in epoll_wait.
static BLOCKED: AtomicBool = AtomicBool::new(false);
/// When epoll_wait last returned (monotonic ns).
static LAST_POLL: AtomicU64 = AtomicU64::new(0);
/// epoll_wait calls so far (for metrics: `RuntimeMetrics::netpoll_polls`).
static POLLS: AtomicU64 = AtomicU64::new(0);

fn poller() -> io::Result<&'static Poller> {
    if let Some(p) = POLLER.get() {
        return Ok(p);
    }
    let p = Poller::new()?;
    // A racing initialiser may win; its poller is used and ours closed.
    Ok(POLLER.get_or_init(|| p))
}

impl Poller {
    fn new() -> io::Result<Poller> {
        // SAFETY: a plain syscall taking no pointers.
        let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epoll` was just created (cvt checked it) and nothing
        // else owns it: the OwnedFd becomes its one owner.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: a plain syscall taking no pointers.
        let efd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `efd` was just created (cvt checked it) and nothing else
        // owns it.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: EVENTFD_TOKEN,
        };
        // SAFETY: both fds are open; `ev` is a valid event.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, efd, &mut ev) })?;
        Ok(Poller {
            epoll,
            eventfd,
            wake_sent: AtomicBool::new(false),
        })
    }

    /// Waits up to `timeout_ns` (None: forever, 0: just look) for fds to
    /// become ready; adds the green threads waiting on them to `ready`
    /// (the caller queues them) and wakes OS threads waiting on them.
    /// Returns how many waiters it woke. `returned` runs as soon as
    /// epoll_wait returns.
    fn poll(
        &self,
        max: usize,
        timeout_ns: Option<u64>,
        returned: impl FnOnce(),
        ready: &mut ReadyList,
    ) -> usize {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let n = epoll_wait(
            self.epoll.as_raw_fd(),
            &mut events[..max.clamp(1, EVENTS)],
            timeout_ns,
        );
        returned();
        LAST_POLL.store(clock::now(), Ordering::Relaxed);
        let mut woken = 0;
        // With many connections every descriptor an event names is cold:
        // start loading them all before the first is locked.
        for ev in &events[..n] {
            crate::sys::prefetch(PollDesc::token_address(ev.u64));
        }
        // And every woken G's header: each descriptor's waiters are made
        // ready `LAG` events late, so the load of their headers (started
        // by `prefetch`) overlaps the next descriptors' notifications.
        const LAG: usize = 4;
        let mut late: [Woken; LAG] = Default::default();
        let mut k = 0;
        for ev in &events[..n] {
            let token = ev.u64;
            if (URING_TOKEN..URING_TOKEN_END).contains(&token) {
                woken += uring::reap((token - URING_TOKEN) as usize, ready);
                continue;
            }
            if token == EVENTFD_TOKEN {
                // A break meant for the blocked poller: only a blocking
                // poll consumes it (the eventfd stays readable otherwise),
                // or a non-blocking poll could swallow it and leave that
                // M asleep with a P handed to it (as Go does).
                if timeout_ns == Some(0) {
                    continue;
                }
                let mut buf = 0u64;
                // SAFETY: reading 8 bytes into a u64 from our eventfd
                // (non-blocking: EAGAIN if another poller drained it).
                unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
                self.wake_sent.store(false, Ordering::Release);
                continue;
            }
            // SAFETY: every other token was made by PollDesc::token.
            let (pd, gen) = unsafe { PollDesc::from_token(token) };
            let now = pd.notify(gen, desc::readiness(ev.events));
            now.prefetch();
            woken += std::mem::replace(&mut late[k % LAG], now).ready_into(ready);
            k += 1;
        }
        // The last ones, in the order they came.
        late.rotate_left(k % LAG);
        woken + late.into_iter().map(|w| w.ready_into(ready)).sum::<usize>()
    }

    /// Makes a blocked epoll_wait return.
    fn break_wait(&self) {
        if self.wake_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        let one = 1u64;
        // SAFETY: writing 8 bytes from a u64 to our eventfd; a full counter
        // (EAGAIN) still leaves it readable, which is all we need.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// epoll_wait with a nanosecond timeout (epoll_pwait2 where the kernel has
/// it, else milliseconds rounded up). EINTR counts as no events.
fn epoll_wait(epfd: RawFd, events: &mut [libc::epoll_event], timeout_ns: Option<u64>) -> usize {
    static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
    let max = events.len() as libc::c_int;
    let ptr = events.as_mut_ptr();
    POLLS.fetch_add(1, Ordering::Relaxed);
    if !NO_PWAIT2.load(Ordering::Relaxed) {
        let ts = timeout_ns.map(crate::sys::timespec_from_ns);
        let ts_ptr = crate::sys::timespec_ptr(&ts);
        // SAFETY: `events` has room for `max` entries; the timeout pointer
        // is null or valid; no signal mask.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                epfd,
                ptr,
                max,
                ts_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n >= 0 {
            return n as usize;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return 0;
        }
        NO_PWAIT2.store(true, Ordering::Relaxed);
    }
    let ms = match timeout_ns {
        None => -1,
        Some(ns) => ns.div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int,
    };
    // SAFETY: `ptr` points at `events`, which has room for `max` entries
    // and outlives the call; `epfd` is the caller's epoll fd.
    let n = unsafe { libc::epoll_wait(epfd, ptr, max, ms) };
    n.max(0) as usize
}

/// Adds the io_uring ring's completion eventfd to the epoll set
/// (level-triggered: it stays readable until a reaper drains it).
fn add_completion_source(fd: RawFd, index: usize) -> io::Result<()> {
    let poller = poller()?;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: URING_TOKEN + index as u64,
    };
    // SAFETY: the epoll fd is open; `fd` is the ring's open eventfd.
    cvt(unsafe { libc::epoll_ctl(poller.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
        .map(drop)
}

/// Registers `fd` (already non-blocking) with the poller; the returned
/// descriptor must be given back with [`deregister`] before `fd` closes.
pub(crate) fn register(fd: RawFd) -> io::Result<&'static PollDesc> {
    let poller = poller()?;
    let pd = PollDesc::alloc();
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: pd.token(),
    };
    // SAFETY: the epoll fd is open; `fd` is the caller's open fd.
    let added =
        cvt(unsafe { libc::epoll_ctl(poller.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) });
    if let Err(e) = added {
        pd.close();
        return Err(e);
    }
    Ok(pd)
}

/// Removes `fd` from the poller and closes its descriptor (waking any
/// waiter with an error). Call before closing `fd`.
pub(crate) fn deregister(fd: RawFd, pd: &'static PollDesc) {
    if let Some(poller) = POLLER.get() {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: the epoll fd is open; `fd` is still open. An error (the
        // fd was never added) leaves nothing to remove.
        unsafe { libc::epoll_ctl(poller.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }
    pd.close();
}

/// How many events a non-blocking poll by an M whose P's local queue has
/// `free` free slots should take: that many (up to [`EVENTS`]), and none
/// when the queue is full.
///
/// Why: the Gs a poll readies join the polling P's queue; more than fit
/// would overflow into the global queue (`P::put` moves the queue's older
/// half there), where a busy P serves one G per 61 ticks. Under overload
/// (a thousand connections each with a request outstanding) the Gs that
/// once landed there waited tens of milliseconds while the ones in the
/// local queues cycled: issue 14 measured p99 48 ms, max 90 ms for 1 000
/// echo connections on 2 cores. Left in epoll's ready list, which is a
/// FIFO of the fds that became ready, every connection instead waits its
/// turn in order of readiness: the same throughput, a much shorter tail
/// (docs/benchmarks.md, echo).
pub(crate) fn poll_budget(free: usize) -> Option<usize> {
    (free > 0).then(|| free.min(EVENTS))
}

/// Green threads waiting in the netpoller (for an fd, or a file
/// operation's completion), over every runtime (for metrics).
pub(crate) fn waiters() -> usize {
    waiters::WAITERS.load(Ordering::Relaxed)
}

/// epoll_wait calls the netpoller made so far, over every runtime (for
/// metrics).
pub(crate) fn polls() -> u64 {
    POLLS.load(Ordering::Relaxed)
}

/// Does any green thread wait for I/O?
pub(crate) fn has_waiters() -> bool {
    waiters::WAITERS.load(Ordering::Relaxed) > 0
}

/// Polls without blocking (an M looking for work): green threads whose fds
/// are ready go to `ready`; returns how many waiters were woken.
/// Skipped while an M is blocked in the poller: it sees the events
/// anyway, and two pollers would contend for them (as Go does).
///
/// At most `max` events are taken (at least one, at most [`EVENTS`]): a
/// busy M asks for only as many as its P's local queue has room for, and
/// the rest stay in epoll's ready list, which is FIFO (see
/// [`poll_budget`]).
pub(crate) fn poll_now(ready: &mut ReadyList, max: usize) -> usize {
    // File operations queued on the ring go in first: some complete in
    // the submitting call (page-cache hits), and this poll reaps them.
    uring::submit_pending();
    match POLLER.get() {
        Some(p) if has_waiters() && !BLOCKED.load(Ordering::Relaxed) => {
            p.poll(max, Some(0), || {}, ready)
        }
        _ => 0,
    }
}

/// sysmon: polls if green threads wait and nobody has polled for
/// [`STALE_POLL_NS`].
pub(crate) fn poll_if_stale(now: u64, ready: &mut ReadyList) -> usize {
    let stale = now.saturating_sub(LAST_POLL.load(Ordering::Relaxed)) >= STALE_POLL_NS;
    if stale {
        poll_now(ready, EVENTS)
    } else {
        0
    }
}

/// Whether green threads wait for I/O and nobody has polled for
/// [`STALE_POLL_NS`] (sysmon then has the errand thread poll). Lock-free.
pub(crate) fn poll_is_stale(now: u64) -> bool {
    POLLER.get().is_some()
        && has_waiters()
        && !BLOCKED.load(Ordering::Relaxed)
        && now.saturating_sub(LAST_POLL.load(Ordering::Relaxed)) >= STALE_POLL_NS
}

/// Blocks the calling M in epoll_wait for up to `timeout_ns`, unless
/// another M already does, no green thread waits for I/O, or `announce`
/// says not to: it announces the M (its handle's `in_poll`, which makes
/// wakers break the wait) and returns whether a P or kick came first
/// (`Handoff::enter_poll`); `leave` withdraws the announcement. Green
/// threads it makes runnable go to `ready`. Returns None if it did not
/// poll, else how many waiters it woke.
pub(crate) fn block(
    timeout_ns: Option<u64>,
    announce: impl FnOnce() -> bool,
    leave: impl Fn(),
    ready: &mut ReadyList,
) -> Option<usize> {
    let poller = POLLER.get()?;
    uring::submit_pending();
    if !has_waiters() || BLOCKED.swap(true, Ordering::AcqRel) {
        return None;
    }
    let interrupted = announce();
    // Awake again (before handing anything out, so a hand-off to this M
    // does not write the eventfd for nothing): cleared exactly once, as
    // another M may take `BLOCKED` right after.
    let awake = || {
        leave();
        BLOCKED.store(false, Ordering::Release);
    };
    if interrupted {
        awake();
        return Some(0);
    }
    Some(poller.poll(EVENTS, timeout_ns, awake, ready))
}

/// Makes the blocked poller (if any) return, to act on a hand-off.
pub(crate) fn break_wait() {
    if let Some(p) = POLLER.get() {
        p.break_wait();
    }
}

/// A green thread is about to park for I/O. Its M will poll the netpoller
/// itself when it runs out of work; if it has other work queued and no M
/// is blocked in the poller, get an idle P's M going, which will be.
pub(crate) fn poller_needed() {
    if !BLOCKED.load(Ordering::Relaxed) {
        crate::scheduler::park::wakep_if_local_work();
    }
}
