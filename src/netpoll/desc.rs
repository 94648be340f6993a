//! Poll descriptors: the per-fd state the poller and the waiting green
//! threads share.
//!
//! Descriptors are never freed, only recycled through a free list, so an
//! event that a poller read just before the fd was closed still points at
//! valid memory; the generation carried in the event's data (and bumped on
//! every close) tells the poller the event is stale.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::scheduler::park::{block, Waker};
use crate::time;

/// Which readiness a waiter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

#[derive(Default)]
struct Slot {
    /// An edge arrived since the last wait consumed one.
    ready: bool,
    waiter: Option<Waker>,
}

#[derive(Default)]
struct State {
    gen: u16,
    closing: bool,
    read: Slot,
    write: Slot,
}

impl State {
    fn slot(&mut self, interest: Interest) -> &mut Slot {
        match interest {
            Interest::Read => &mut self.read,
            Interest::Write => &mut self.write,
        }
    }
}

/// One registered fd's readiness and waiters.
#[derive(Default)]
pub(crate) struct PollDesc {
    state: Mutex<State>,
}

/// Parked waiters over all descriptors: the poller only blocks in
/// epoll_wait (rather than a futex) when someone waits for I/O.
pub(crate) static WAITERS: AtomicUsize = AtomicUsize::new(0);

static FREE: Mutex<Vec<&'static PollDesc>> = Mutex::new(Vec::new());

/// Bits of the event data that hold the descriptor's address (x86-64 user
/// addresses fit in 47); the generation goes above them.
const ADDR_BITS: u32 = 48;

impl PollDesc {
    /// A fresh or recycled descriptor, open.
    pub(crate) fn alloc() -> &'static PollDesc {
        let pd = FREE
            .lock()
            .pop()
            .unwrap_or_else(|| Box::leak(Box::default()));
        let mut s = pd.state.lock();
        s.closing = false;
        s.read = Slot::default();
        s.write = Slot::default();
        drop(s);
        pd
    }

    /// The epoll data word naming this descriptor at its generation.
    pub(crate) fn token(&'static self) -> u64 {
        let addr = self as *const PollDesc as u64;
        debug_assert!(addr >> ADDR_BITS == 0);
        addr | (u64::from(self.state.lock().gen) << ADDR_BITS)
    }

    /// The descriptor an event's data names, and the generation it names.
    ///
    /// # Safety
    /// `token` must come from [`PollDesc::token`]; descriptors are never
    /// freed, so the address stays valid.
    pub(crate) unsafe fn from_token(token: u64) -> (&'static PollDesc, u16) {
        let addr = token & ((1 << ADDR_BITS) - 1);
        // SAFETY: per the contract, a leaked, never-freed PollDesc.
        (
            unsafe { &*(addr as *const PollDesc) },
            (token >> ADDR_BITS) as u16,
        )
    }

    /// Records readiness from an event of generation `gen`, returning the
    /// waiters to wake (stale events are ignored).
    pub(crate) fn notify(&self, gen: u16, read: bool, write: bool) -> [Option<Waker>; 2] {
        let mut s = self.state.lock();
        if s.gen != gen || s.closing {
            return [None, None];
        }
        let take = |slot: &mut Slot, hit: bool| {
            if !hit {
                return None;
            }
            slot.ready = true;
            let waiter = slot.waiter.take();
            if waiter.is_some() {
                WAITERS.fetch_sub(1, Ordering::Relaxed);
            }
            waiter
        };
        let r = take(&mut s.read, read);
        let w = take(&mut s.write, write);
        [r, w]
    }

    /// Waits until an edge for `interest` arrives (or has arrived since the
    /// last wait), the descriptor is closed, or `deadline` (monotonic ns)
    /// passes. The caller must be able to park (a green thread).
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        // Never preempted while holding the state lock, which the poller
        // (scheduler context) takes too.
        let _np = crate::preempt::disable();
        loop {
            {
                let mut s = self.state.lock();
                if s.closing {
                    return Err(closed());
                }
                let slot = s.slot(interest);
                if std::mem::take(&mut slot.ready) {
                    if slot.waiter.take().is_some() {
                        WAITERS.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                if deadline.is_some_and(|d| time::now() >= d) {
                    if slot.waiter.take().is_some() {
                        WAITERS.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Err(io::ErrorKind::TimedOut.into());
                }
                if slot.waiter.is_none() {
                    WAITERS.fetch_add(1, Ordering::Relaxed);
                }
                slot.waiter = Some(Waker::current());
            }
            super::poller_needed();
            block(deadline);
        }
    }

    /// Marks the descriptor closed: wakes its waiters (they get an error)
    /// and makes any event still in flight stale. Then recycles it.
    pub(crate) fn close(&'static self) {
        let woken = {
            let mut s = self.state.lock();
            s.closing = true;
            s.gen = s.gen.wrapping_add(1);
            [s.read.waiter.take(), s.write.waiter.take()]
        };
        for w in woken.into_iter().flatten() {
            WAITERS.fetch_sub(1, Ordering::Relaxed);
            w.wake();
        }
        FREE.lock().push(self);
    }
}

/// The error a waiter gets when its socket is closed under it.
pub(crate) fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "greenrt: the socket was closed while waiting on it",
    )
}

/// Which slots an epoll event makes ready: errors and hang-ups wake both
/// sides, so the next read or write returns the error or EOF.
pub(crate) fn readiness(events: u32) -> (bool, bool) {
    let err = events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
    let read = err || events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 != 0;
    let write = err || events & libc::EPOLLOUT as u32 != 0;
    (read, write)
}
