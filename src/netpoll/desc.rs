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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::scheduler::park::{block, ReadyList, Waker};
use crate::sys::clock;

/// Which readiness a waiter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// One direction's waiters. Small (32 bytes) so that a descriptor's
/// lock, state and read slot share one cache line (see [`PollDesc`]).
#[derive(Default)]
#[repr(C)]
struct Slot {
    /// The parked waiter; `more` holds any others (green threads sharing
    /// a socket, e.g. reading through `&TcpStream` at once). An event
    /// wakes them all.
    waiter: Option<Waker>,
    /// Boxed: rarely used, and 8 bytes here instead of a `Vec`'s 24,
    /// which keeps the read slot inside the descriptor's first line.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Waker>>>,
}

impl Slot {
    fn push(&mut self, w: Waker) {
        if self.waiter.is_none() {
            self.waiter = Some(w);
        } else {
            self.more.get_or_insert_with(Box::default).push(w);
        }
        WAITERS.fetch_add(1, Ordering::Relaxed);
    }

    fn others(&self) -> &[Waker] {
        self.more.as_deref().map_or(&[], |v| v.as_slice())
    }

    fn contains(&self, me: &Waker) -> bool {
        self.waiter.iter().chain(self.others()).any(|w| same(w, me))
    }

    fn remove(&mut self, me: &Waker) {
        if self.waiter.as_ref().is_some_and(|w| same(w, me)) {
            self.waiter = self.more.as_mut().and_then(|v| v.pop());
        } else if let Some(i) = self.others().iter().position(|w| same(w, me)) {
            self.more.as_mut().expect("found in it").swap_remove(i);
        } else {
            return;
        }
        WAITERS.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes every waiter, to be woken once the lock is released.
    fn take_all(&mut self, woken: &mut Woken) {
        if let Some(w) = self.waiter.take() {
            WAITERS.fetch_sub(1 + self.others().len(), Ordering::Relaxed);
            woken.push(w);
            for w in self.more.iter_mut().flat_map(|v| v.drain(..)) {
                woken.push(w);
            }
        }
    }
}

/// Whether two wakers wake the same thread.
fn same(a: &Waker, b: &Waker) -> bool {
    match (a, b) {
        (Waker::Green(a), Waker::Green(b)) => a.as_ptr() == b.as_ptr(),
        (Waker::Os(a), Waker::Os(b)) => a.id() == b.id(),
        _ => false,
    }
}

/// Waiters taken from a descriptor's slots, woken outside its lock. The
/// usual one per slot needs no allocation.
#[derive(Default)]
pub(crate) struct Woken {
    first: [Option<Waker>; 2],
    more: Vec<Waker>,
}

impl Woken {
    fn push(&mut self, w: Waker) {
        match self.first.iter_mut().find(|f| f.is_none()) {
            Some(free) => *free = Some(w),
            None => self.more.push(w),
        }
    }

    /// Wakes them all the poller's way (see `Waker::ready_into`): green
    /// threads go to `ready`. Returns how many waiters there were.
    pub(crate) fn ready_into(self, ready: &mut ReadyList) -> usize {
        let mut n = 0;
        for w in self.first.into_iter().flatten().chain(self.more) {
            w.ready_into(ready);
            n += 1;
        }
        n
    }

    /// Wakes them all; returns how many.
    pub(crate) fn wake_all(self) -> usize {
        let mut n = 0;
        for w in self.first.into_iter().flatten().chain(self.more) {
            w.wake_by_value();
            n += 1;
        }
        n
    }
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

    /// Waits until an edge for `interest` arrives (or has arrived since the
    /// last wait), the descriptor is closed, or `deadline` (monotonic ns)
    /// passes. The caller must be able to park (a green thread), and must
    /// retry its operation after an `Ok` (which consumed the readiness).
    ///
    /// Never inlined, with the park inlined into it: this is the one
    /// frame a socket operation adds to a parked green thread's stack.
    #[inline(never)]
    pub(crate) fn wait(&self, interest: Interest, deadline: Option<u64>) -> io::Result<()> {
        // Never preempted while holding the state lock, which the poller
        // (scheduler context) takes too.
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
            block(deadline);
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
            let mut s = self.state.lock();
            s.closing = true;
            s.gen = s.gen.wrapping_add(1);
            self.read_drained.store(false, Ordering::Release);
            s.read.take_all(&mut woken);
            s.write.take_all(&mut woken);
            s.write_waited = false;
        }
        woken.wake_all();
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
mod tests {
    use super::*;

    /// A descriptor with no fd behind it, and its current generation.
    fn desc() -> (&'static PollDesc, u16) {
        let pd = PollDesc::alloc();
        let gen = pd.state.lock().gen;
        (pd, gen)
    }

    const READ: Readiness = Readiness {
        read: true,
        write: false,
        closed: false,
    };

    #[test]
    fn short_read_with_no_edge_since_drains_until_the_next_edge() {
        let (pd, gen) = desc();
        pd.notify(gen, READ);
        let seen = pd.read_edges();
        pd.mark_drained(seen);
        assert!(pd.is_drained());
        assert!(
            !pd.state.lock().read_ready,
            "the edge before the read is spent"
        );
        pd.notify(gen, READ);
        assert!(!pd.is_drained());
        assert!(pd.state.lock().read_ready);
        pd.close();
    }

    #[test]
    fn an_edge_during_the_read_keeps_the_socket_undrained() {
        let (pd, gen) = desc();
        let seen = pd.read_edges(); // the read starts
        pd.notify(gen, READ); // bytes arrive after it; another M notifies
        pd.mark_drained(seen); // the short read returns
        assert!(!pd.is_drained());
        assert!(pd.state.lock().read_ready, "the new edge must not be lost");
        pd.close();
    }

    #[test]
    fn an_ended_stream_is_never_drained() {
        let (pd, gen) = desc();
        pd.notify(gen, readiness((libc::EPOLLIN | libc::EPOLLRDHUP) as u32));
        let seen = pd.read_edges();
        pd.mark_drained(seen); // the last bytes, with the EOF behind them
        assert!(!pd.is_drained());
        // Sticky: later edges without RDHUP do not clear it.
        pd.notify(gen, READ);
        pd.mark_drained(pd.read_edges());
        assert!(!pd.is_drained());
        pd.close();
        // A recycled descriptor starts afresh.
        let (pd, gen) = desc();
        pd.notify(gen, READ);
        pd.mark_drained(pd.read_edges());
        assert!(pd.is_drained());
        pd.close();
    }

    #[test]
    fn a_read_touches_one_cache_line() {
        let pd = PollDesc::default();
        let base = &pd as *const PollDesc as usize;
        let s = pd.state.lock();
        let read_end = &s.read as *const Slot as usize + std::mem::size_of::<Slot>();
        assert_eq!(base % 64, 0);
        assert!(
            read_end - base <= 64,
            "read slot ends at byte {}",
            read_end - base
        );
        let flags = &s.write_waited as *const bool as usize;
        assert!(flags - base < 64, "write_waited at byte {}", flags - base);
    }

    #[test]
    fn a_write_edge_wakes_a_parked_writer_only() {
        let (pd, gen) = desc();
        let write = Readiness {
            write: true,
            ..Readiness::default()
        };
        // Nobody waits: the edge is remembered, nothing is woken.
        assert_eq!(pd.notify(gen, write).wake_all(), 0);
        assert!(pd.state.lock().write_ready);
        // A (fake) writer waits: the next edge takes it out of the slot.
        let me = Waker::Os(std::thread::current());
        {
            let mut s = pd.state.lock();
            s.write_ready = false;
            s.write.push(me.clone());
            s.note_write_waiters();
        }
        assert!(pd.state.lock().write_waited);
        assert_eq!(pd.notify(gen, write).wake_all(), 1);
        let s = pd.state.lock();
        assert!(!s.write_waited && !s.write.contains(&me) && s.write_ready);
        drop(s);
        pd.close();
    }

    #[test]
    fn errors_and_hang_ups_count_as_ended() {
        for ev in [libc::EPOLLERR, libc::EPOLLHUP, libc::EPOLLRDHUP] {
            let r = readiness(ev as u32);
            assert!(r.read && r.closed, "{ev:#x}: {r:?}");
        }
        assert!(!readiness(libc::EPOLLIN as u32).closed);
    }
}
