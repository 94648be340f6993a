//! A poll descriptor's waiters: who is parked on each direction of an fd
//! (`Slot`) and who an event took out to wake (`Woken`).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::scheduler::park::{ReadyList, Waker};

/// Parked waiters over all descriptors: the poller only blocks in
/// epoll_wait (rather than a futex) when someone waits for I/O.
pub(crate) static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// One direction's waiters. Small (32 bytes) so that a descriptor's
/// lock, state and read slot share one cache line (see [`PollDesc`]).
#[derive(Default)]
#[repr(C)]
pub(super) struct Slot {
    /// The parked waiter; `more` holds any others (green threads sharing
    /// a socket, e.g. reading through `&TcpStream` at once). An event
    /// wakes them all.
    pub(super) waiter: Option<Waker>,
    /// Boxed: rarely used, and 8 bytes here instead of a `Vec`'s 24,
    /// which keeps the read slot inside the descriptor's first line.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Waker>>>,
}

impl Slot {
    pub(super) fn push(&mut self, w: Waker) {
        if self.waiter.is_none() {
            self.waiter = Some(w);
        } else {
            self.more.get_or_insert_with(Box::default).push(w);
        }
        WAITERS.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn others(&self) -> &[Waker] {
        self.more.as_deref().map_or(&[], |v| v.as_slice())
    }

    pub(super) fn contains(&self, me: &Waker) -> bool {
        self.waiter.iter().chain(self.others()).any(|w| same(w, me))
    }

    pub(super) fn remove(&mut self, me: &Waker) {
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
    pub(super) fn take_all(&mut self, woken: &mut Woken) {
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
    pub(super) fn push(&mut self, w: Waker) {
        match self.first.iter_mut().find(|f| f.is_none()) {
            Some(free) => *free = Some(w),
            None => self.more.push(w),
        }
    }

    /// Starts loading the headers of the green threads among them, which
    /// `ready_into` is about to change (see `Poller::poll`).
    pub(crate) fn prefetch(&self) {
        for w in self.first.iter().flatten().chain(&self.more) {
            w.prefetch();
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
