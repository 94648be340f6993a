//! Poll descriptors: the per-fd state the poller and the waiting green
//! threads share.
//!
//! Descriptors are never freed, only recycled through a free list, so an
//! event that a poller read just before the fd was closed still points at
//! valid memory; the generation carried in the event's data (and bumped on
//! every close) tells the poller the event is stale.
//!
//! **Drained streams.** A read of a stream socket that returns fewer bytes
//! than asked (but some) emptied its receive queue. Epoll is edge-triggered,
//! so whatever arrives after that read brings a fresh edge; the next read
//! can wait for it instead of failing with EAGAIN first (`mark_drained`,
//! `is_drained`; tokio does the same). Two things make that safe:
//!
//! - an edge notified *between* the start of that read and the marking may
//!   stand for bytes that came after the read: the read records the count
//!   of read edges before its syscall (`read_edges`) and the marking only
//!   happens if no edge came since;
//! - the last bytes can sit in front of an end of stream (or an error)
//!   whose edge was notified before the read: a short read then leaves the
//!   EOF unread and no edge will come for it. Events that say EOF, hang-up
//!   or error set a sticky `read_closed`, and such a descriptor is never
//!   marked drained.

use std::io;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::sys::sync::{AtomicBool, AtomicU32, ParkingLotMutex};

use super::waiters::{Slot, Woken};
use crate::scheduler::park::{block, BlockReason, Waker};
use crate::sys::clock;

/// Which readiness a waiter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

#[derive(Default)]
#[repr(C)]
struct State {
    gen: u16,
    closing: bool,
    /// An event said end of stream, hang-up or error (sticky until the
    /// descriptor is recycled): never mark it drained.
    read_closed: bool,
    /// An edge arrived since the last wait consumed one, per direction.
    read_ready: bool,
    write_ready: bool,
    /// The write slot holds a waiter. Kept here, in the first line, so
    /// that a write edge nobody waits for (one comes with nearly every
    /// ACK of a request/response connection) leaves the second line of
    /// the descriptor alone.
    write_waited: bool,
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

    fn ready(&mut self, interest: Interest) -> &mut bool {
        match interest {
            Interest::Read => &mut self.read_ready,
            Interest::Write => &mut self.write_ready,
        }
    }

    /// Brings `write_waited` up to date after the write slot changed.
    fn note_write_waiters(&mut self) {
        self.write_waited = self.write.waiter.is_some();
    }
}

/// One registered fd's readiness and waiters.
///
/// Its lock (and the free list's) is taken on green threads only under a
/// no-preemption scope: the poller takes it in `notify` in scheduler
/// context, holding its P, and a green thread preempted with it held
/// would stall that M, P and all, until the green thread ran again (with
/// one worker, never).
///
/// Laid out so that everything a read touches — the drained state, the
/// lock, the generation and flags, the read slot — is the first cache line
/// (the write slot follows): with thousands of connections each wake-up
/// finds its descriptor cold, and every line counts.
#[derive(Default)]
#[repr(C, align(64))]
pub(crate) struct PollDesc {
    /// Notified read edges (changed under `state`'s lock).
    read_edges: AtomicU32,
    /// A short read emptied the socket and no read edge came since.
    read_drained: AtomicBool,
    state: ParkingLotMutex<State>,
}

static FREE: Mutex<Vec<&'static PollDesc>> = Mutex::new(Vec::new());

/// Bits of the event data that hold the descriptor's address (x86-64 user
/// addresses fit in 47); the generation goes above them.
const ADDR_BITS: u32 = 48;

impl PollDesc {
    /// A fresh or recycled descriptor, open.
    pub(crate) fn alloc() -> &'static PollDesc {
        let pooled = {
            let _np = crate::preempt::no_preempt();
            FREE.lock().pop()
        };
        // A new one is allocated outside the lock.
        let pd = pooled.unwrap_or_else(|| Box::leak(Box::default()));
        let _np = crate::preempt::no_preempt();
        let mut s = pd.state.lock();
        *s = State {
            gen: s.gen,
            ..State::default()
        };
        pd.read_drained.store(false, Ordering::Relaxed);
        drop(s);
        pd
    }

    /// The epoll data word naming this descriptor at its generation.
    pub(crate) fn token(&'static self) -> u64 {
        let addr = self as *const PollDesc as u64;
        debug_assert!(addr >> ADDR_BITS == 0);
        let _np = crate::preempt::no_preempt();
        addr | (u64::from(self.state.lock().gen) << ADDR_BITS)
    }

    /// The descriptor an event's data names, and the generation it names.
    ///
    /// # Safety
    /// `token` must come from [`PollDesc::token`]; descriptors are never
    /// freed, so the address stays valid.
    pub(crate) unsafe fn from_token(token: u64) -> (&'static PollDesc, u16) {
        // SAFETY: per the contract, a leaked, never-freed PollDesc.
        (
            unsafe { &*Self::token_address(token) },
            (token >> ADDR_BITS) as u16,
        )
    }

    /// The address a token names (for a prefetch: any token may be
    /// passed, and the result is not to be followed).
    pub(crate) fn token_address(token: u64) -> *const PollDesc {
        (token & ((1 << ADDR_BITS) - 1)) as *const PollDesc
    }

    /// Records readiness from an event of generation `gen`, returning the
    /// waiters to wake (stale events are ignored).
    pub(crate) fn notify(&self, gen: u16, ready: Readiness) -> Woken {
        let mut woken = Woken::default();
        let mut guard = self.state.lock();
        let s = &mut *guard;
        if s.gen != gen || s.closing {
            return woken;
        }
        if ready.read {
            self.read_edges.fetch_add(1, Ordering::Release);
            self.read_drained.store(false, Ordering::Release);
        }
        s.read_closed |= ready.closed;
        if ready.read {
            s.read_ready = true;
            s.read.take_all(&mut woken);
        }
        if ready.write {
            s.write_ready = true;
            if s.write_waited {
                s.write.take_all(&mut woken);
                s.write_waited = false;
            }
        }
        woken
    }

    /// Wakes the waiters `ready` concerns as an event saying it would,
    /// for a change epoll does not report (see `NetFd::wake_writers`).
    pub(crate) fn notify_now(&self, ready: Readiness) -> usize {
        let gen = self.state.lock().gen;
        self.notify(gen, ready).wake_all()
    }

    /// Waits until an edge for `interest` arrives (or has arrived since the
    /// last wait), the descriptor is closed, or `deadline` (monotonic ns)
    /// passes. The caller must be able to park (a green thread), and must
    /// retry its operation after an `Ok` (which consumed the readiness).
    ///
    /// Never inlined, with the park inlined into it: this is the one
    /// frame a socket operation adds to a parked green thread's stack.
    #[inline(never)]
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        // Not preempted while holding the state lock, which the poller
        // (scheduler context) takes too (see `PollDesc`); the scope also
        // covers `leave` on unwind.
        let _np = crate::preempt::no_preempt();
        let me = Waker::current();
        let mut parked = false;
        loop {
            {
                let mut s = self.state.lock();
                let done = Self::check(&mut s, interest, &me, parked, deadline);
                if done.is_none() && !parked {
                    s.slot(interest).push(me.clone());
                    parked = true;
                }
                if interest == Interest::Write {
                    s.note_write_waiters();
                }
                if let Some(result) = done {
                    return result;
                }
            }
            super::poller_needed();
            // A cancelled green thread unwinds out of `block`: take it out
            // of the slot (an event would otherwise wake a finished G,
            // and the slot would keep it counted as waiting).
            let leave = LeaveOnUnwind {
                desc: self,
                interest,
                me: &me,
            };
            block(deadline, BlockReason::Socket);
            std::mem::forget(leave);
        }
    }

    /// Takes `me` out of `interest`'s slot (see `LeaveOnUnwind`).
    fn leave(&self, interest: Interest, me: &Waker) {
        self.state.lock().slot(interest).remove(me);
    }

    /// One look at the state for `wait`: Some(result) when the wait is
    /// over (and `me` is out of the slot), None to park.
    fn check(
        s: &mut State,
        interest: Interest,
        me: &Waker,
        parked: bool,
        deadline: Option<u64>,
    ) -> Option<io::Result<()>> {
        if s.closing {
            s.slot(interest).remove(me);
            return Some(Err(closed()));
        }
        // An event took us out of the slot (it may have woken others too,
        // and one of them may have consumed the readiness first), or an
        // edge came since the last wait.
        let woken = parked && !s.slot(interest).contains(me);
        let ready = s.ready(interest);
        if woken || *ready {
            *ready = false;
            s.slot(interest).remove(me);
            return Some(Ok(()));
        }
        if deadline.is_some_and(|d| clock::now() >= d) {
            s.slot(interest).remove(me);
            return Some(Err(io::ErrorKind::TimedOut.into()));
        }
        None
    }

    /// Read edges notified so far: a stream read takes this just before
    /// its syscall, for [`PollDesc::mark_drained`].
    pub(crate) fn read_edges(&self) -> u32 {
        self.read_edges.load(Ordering::Acquire)
    }

    /// After a short read that started when `read_edges()` was `seen`:
    /// the socket is empty and the next read should wait for an edge
    /// first — unless an edge came since (it may stand for bytes the read
    /// did not see) or the stream has ended (see the module docs).
    pub(crate) fn mark_drained(&self, seen: u32) {
        let _np = crate::preempt::no_preempt();
        let mut s = self.state.lock();
        if s.closing || s.read_closed || self.read_edges.load(Ordering::Acquire) != seen {
            return;
        }
        // Any edge so far came before the read, which took its bytes.
        s.read_ready = false;
        self.read_drained.store(true, Ordering::Release);
    }

    /// Whether the last read drained the socket and nothing came since.
    pub(crate) fn is_drained(&self) -> bool {
        self.read_drained.load(Ordering::Acquire)
    }

    /// Marks the descriptor closed: wakes its waiters (they get an error)
    /// and makes any event still in flight stale. Then recycles it.
    pub(crate) fn close(&'static self) {
        let mut woken = Woken::default();
        {
            let _np = crate::preempt::no_preempt();
            let mut s = self.state.lock();
            s.closing = true;
            s.gen = s.gen.wrapping_add(1);
            self.read_drained.store(false, Ordering::Release);
            s.read.take_all(&mut woken);
            s.write.take_all(&mut woken);
            s.write_waited = false;
        }
        woken.wake_all();
        let _np = crate::preempt::no_preempt();
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

/// What an epoll event says about a descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) read: bool,
    pub(crate) write: bool,
    /// End of stream, hang-up or error: reads will not block again.
    pub(crate) closed: bool,
}

/// Which slots an epoll event makes ready: errors and hang-ups wake both
/// sides, so the next read or write returns the error or EOF.
pub(crate) fn readiness(events: u32) -> Readiness {
    let err = events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
    Readiness {
        read: err || events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 != 0,
        write: err || events & libc::EPOLLOUT as u32 != 0,
        closed: err || events & libc::EPOLLRDHUP as u32 != 0,
    }
}

/// Leaves a poll descriptor's slot if dropped (only on unwind: `wait`
/// forgets it otherwise).
struct LeaveOnUnwind<'a> {
    desc: &'a PollDesc,
    interest: Interest,
    me: &'a Waker,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        self.desc.leave(self.interest, self.me);
    }
}

#[cfg(test)]
#[path = "desc_tests.rs"]
mod tests;

#[cfg(all(test, loom))]
#[path = "desc_loom_tests.rs"]
mod loom_tests;
