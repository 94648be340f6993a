//! The channel itself: a buffer and the callers waiting on it, under one
//! lock, with Go's direct hand-off (`chansend` to a waiting receiver,
//! `chanrecv` refilling from a waiting sender).
//!
//! A caller that has to wait puts a [`Slot`] on its own stack and lists
//! it in the channel. Whoever completes the wait does all the work under
//! the channel's lock — moves the value into (or out of) the slot, unlists
//! it, takes its waker — and the waiter, once woken, returns without
//! taking the lock again. So a receiver woken by a send finds its message
//! in hand, and a bounded channel's receive refills the buffer from the
//! longest-waiting sender in the same critical section: no wait queue
//! of its own to lock on every receive.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use super::{RecvTimeoutError, TrySendError};
use crate::scheduler::park::{BlockReason, StackWaker, Woken};
use crate::time;

/// One waiting caller, on its own stack (green stacks never move).
///
/// While the slot is listed in the channel's [`State`], its `value` and
/// `waker` belong to whoever holds the channel's lock. The caller that
/// unlists it (still under the lock) completes it: sets `done` to
/// COMPLETING, wakes the waiter through its reference-free waker (the
/// waiter, alive until it sees DONE, keeps the pointer valid), then sets
/// DONE; after that only the waiter touches the slot. A waiter that sees
/// COMPLETING waits the few instructions until DONE. One that gives up
/// (timeout, unwind) takes the lock, where `done` is never COMPLETING,
/// and unlists itself unless it is DONE.
struct Slot<T> {
    /// A waiting sender's message (taken by the receiver that completes
    /// the wait; still there if the receiver left), or the message handed
    /// to a waiting receiver (None: woken because the last sender left).
    value: UnsafeCell<Option<T>>,
    waker: UnsafeCell<Option<StackWaker>>,
    done: AtomicU8,
    /// Whether the waiter is a green thread (its waker's kind, kept where
    /// the waiter may read it while the completer takes the waker).
    green: bool,
}

/// `Slot::done`: listed, and waiting.
const WAITING: u8 = 0;
/// Unlisted; its completer is waking the waiter.
const COMPLETING: u8 = 1;
/// Completed: the slot is the waiter's again.
const DONE: u8 = 2;

impl<T> Slot<T> {
    fn new(value: Option<T>) -> Slot<T> {
        let waker = StackWaker::current();
        Slot {
            value: UnsafeCell::new(value),
            green: waker.is_green(),
            waker: UnsafeCell::new(Some(waker)),
            done: AtomicU8::new(WAITING),
        }
    }

    /// Waits for a completer (or `deadline`): see `park::block`.
    #[inline(always)]
    fn block(&self, deadline: Option<u64>) {
        StackWaker::block(self.green, deadline, BlockReason::Channel);
    }

    /// Whether the wait is over, waiting out a completer that is still
    /// waking us (it holds the channel's lock for a few instructions).
    fn is_done(&self) -> bool {
        let mut spins = 0u32;
        loop {
            match self.done.load(Ordering::Acquire) {
                WAITING => return false,
                DONE => return true,
                _ if spins < 128 => std::hint::spin_loop(),
                // The completer's OS thread lost its CPU.
                _ => std::thread::yield_now(),
            }
            spins += 1;
        }
    }
}

/// A listed [`Slot`].
struct SlotPtr<T>(NonNull<Slot<T>>);

// SAFETY: a listed slot is only touched under the channel's lock (see
// `Slot`), by whichever thread holds it; moving the value across threads
// that way needs `T: Send`, which the channel's own Send/Sync bounds
// (through the public halves holding `Arc<Chan<T>>`) already require.
unsafe impl<T: Send> Send for SlotPtr<T> {}

impl<T> SlotPtr<T> {
    /// Finishes the wait: lets `f` move the value and wakes the waiter
    /// (see [`Slot`]). Call under the channel's lock, on a slot just
    /// unlisted; finish the returned wake-up after unlocking.
    fn complete(self, f: impl FnOnce(&mut Option<T>)) -> Woken {
        // SAFETY: the slot was listed until the caller unlisted it under
        // the lock it still holds, so the waiter has not seen DONE and is
        // waiting (its frame, holding the slot, is alive); the fields are
        // ours until DONE is stored below, and untouched after. Fields
        // through the raw pointer, so that no reference to the whole slot
        // is live across the store that frees it.
        unsafe {
            let slot = self.0.as_ptr();
            f(&mut *(*slot).value.get());
            let waker = (*(*slot).waker.get())
                .take()
                .expect("a listed slot has its waker");
            // From here the waiter may see its wait completed, but not
            // leave before DONE: its G stays alive while `wake` runs (as
            // `StackWaker::wake` requires). Set before the wake-up, so a
            // waiter that runs on the token finds its wait over.
            (*slot).done.store(COMPLETING, Ordering::Release);
            let woken = waker.wake();
            (*slot).done.store(DONE, Ordering::Release);
            woken
        }
    }
}

pub(super) struct State<T> {
    buf: VecDeque<T>,
    /// None: unbounded. Some(0): rendezvous (nothing is ever buffered:
    /// a message goes from a sender's slot to the receiver).
    cap: Option<usize>,
    pub(super) senders: usize,
    receiver_alive: bool,
    /// The receiver, when it waits for a message (the buffer is empty).
    recv_waiter: Option<SlotPtr<T>>,
    /// Senders waiting for room, or (rendezvous) for a receiver.
    send_waiters: VecDeque<SlotPtr<T>>,
}

impl<T> State<T> {
    fn has_room(&self) -> bool {
        match self.cap {
            None => true,
            Some(c) => self.buf.len() < c,
        }
    }
}

pub(super) struct Chan<T> {
    pub(super) state: Mutex<State<T>>,
}

/// Which list a waiting slot is in (for giving up).
#[derive(Clone, Copy)]
enum Side {
    Recv,
    Send,
}

/// Unlists the slot if its waiter leaves early: on unwind (a cancelled
/// green thread) or timeout.
struct Listed<'a, T> {
    chan: &'a Chan<T>,
    slot: &'a Slot<T>,
    side: Side,
}

impl<T> Listed<'_, T> {
    /// Takes the slot out of the channel unless the wait was completed;
    /// returns whether it was.
    fn unlist(&self) -> bool {
        let mut s = self.chan.state.lock();
        // Under the lock no completer is half-way (COMPLETING).
        if self.slot.done.load(Ordering::Acquire) == DONE {
            return true;
        }
        let me = self.slot as *const Slot<T>;
        match self.side {
            Side::Recv => s.recv_waiter = None,
            Side::Send => s.send_waiters.retain(|w| w.0.as_ptr().cast_const() != me),
        }
        false
    }
}

impl<T> Drop for Listed<'_, T> {
    fn drop(&mut self) {
        self.unlist();
    }
}

impl<T> Chan<T> {
    pub(super) fn new(cap: Option<usize>) -> Chan<T> {
        Chan {
            state: Mutex::new(State {
                buf: VecDeque::new(),
                cap,
                senders: 1,
                receiver_alive: true,
                recv_waiter: None,
                send_waiters: VecDeque::new(),
            }),
        }
    }

    /// Sends `t`, waiting for room (or, rendezvous, for the receiver) if
    /// `wait`.
    pub(super) fn push(&self, t: T, wait: bool) -> Result<(), TrySendError<T>> {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        let mut s = self.state.lock();
        if !s.receiver_alive {
            return Err(TrySendError::Disconnected(t));
        }
        if let Some(r) = s.recv_waiter.take() {
            // The receiver waits, so the buffer is empty: hand it over.
            let woken = r.complete(|v| *v = Some(t));
            drop(s);
            woken.finish();
            return Ok(());
        }
        if s.has_room() {
            s.buf.push_back(t);
            return Ok(());
        }
        if !wait {
            return Err(TrySendError::Full(t));
        }
        let slot = Slot::new(Some(t));
        s.send_waiters.push_back(SlotPtr(NonNull::from(&slot)));
        drop(s);
        let listed = Listed {
            chan: self,
            slot: &slot,
            side: Side::Send,
        };
        while !slot.is_done() {
            slot.block(None);
        }
        std::mem::forget(listed);
        // Done: the slot is ours again. A receiver took the message, or
        // left without it (then it is still here).
        match slot.value.into_inner() {
            None => Ok(()),
            Some(t) => Err(TrySendError::Disconnected(t)),
        }
    }

    /// Takes a message, waiting until `deadline` if `wait`.
    pub(super) fn pop(&self, wait: bool, deadline: Option<u64>) -> Result<T, RecvTimeoutError> {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        loop {
            let mut s = self.state.lock();
            let (t, woken) = match s.buf.pop_front() {
                // Room now: the longest-waiting sender's message joins the
                // buffer's tail.
                Some(t) => match s.send_waiters.pop_front() {
                    Some(w) => {
                        let mut moved = None;
                        let woken = w.complete(|v| moved = v.take());
                        s.buf.push_back(moved.expect("a waiting sender's message"));
                        (t, woken)
                    }
                    None => return Ok(t),
                },
                // Empty: a waiting sender (rendezvous) hands over directly.
                None => match s.send_waiters.pop_front() {
                    Some(w) => {
                        let mut moved = None;
                        let woken = w.complete(|v| moved = v.take());
                        (moved.expect("a waiting sender's message"), woken)
                    }
                    None => {
                        if s.senders == 0 {
                            return Err(RecvTimeoutError::Disconnected);
                        }
                        if !wait || deadline.is_some_and(|d| time::now() >= d) {
                            return Err(RecvTimeoutError::Timeout);
                        }
                        match self.wait_for_message(s, deadline) {
                            Some(result) => return result,
                            // Woken because the last sender left: look
                            // again.
                            None => continue,
                        }
                    }
                },
            };
            drop(s);
            woken.finish();
            return Ok(t);
        }
    }

    /// Lists the receiver and waits for a sender to hand it a message.
    /// None: woken without one (every sender left); look again.
    fn wait_for_message(
        &self,
        mut s: parking_lot::MutexGuard<'_, State<T>>,
        deadline: Option<u64>,
    ) -> Option<Result<T, RecvTimeoutError>> {
        let slot = Slot::new(None);
        debug_assert!(s.recv_waiter.is_none(), "two receivers wait");
        s.recv_waiter = Some(SlotPtr(NonNull::from(&slot)));
        drop(s);
        let listed = Listed {
            chan: self,
            slot: &slot,
            side: Side::Recv,
        };
        loop {
            if slot.is_done() {
                break;
            }
            if deadline.is_some_and(|d| time::now() >= d) {
                if !listed.unlist() {
                    std::mem::forget(listed);
                    return Some(Err(RecvTimeoutError::Timeout));
                }
                // Completed while we timed out: the message counts.
                break;
            }
            slot.block(deadline);
        }
        std::mem::forget(listed);
        slot.value.into_inner().map(Ok)
    }

    /// One more sender.
    pub(super) fn add_sender(&self) {
        let _np = crate::preempt::no_preempt();
        self.state.lock().senders += 1;
    }

    /// A sender left; the last one wakes a waiting receiver (with no
    /// message: it sees the channel disconnected).
    pub(super) fn drop_sender(&self) {
        let _np = crate::preempt::no_preempt();
        let mut s = self.state.lock();
        s.senders -= 1;
        if s.senders != 0 {
            return;
        }
        let woken = s.recv_waiter.take().map(|r| r.complete(|_| {}));
        drop(s);
        if let Some(woken) = woken {
            woken.finish();
        }
    }

    /// The receiver left: drops the buffered messages and wakes every
    /// waiting sender, whose message stays in its slot (it gets it back in
    /// `SendError`).
    pub(super) fn drop_receiver(&self) {
        let _np = crate::preempt::no_preempt();
        let mut s = self.state.lock();
        s.receiver_alive = false;
        let buffered = std::mem::take(&mut s.buf);
        let woken: Vec<Woken> = std::mem::take(&mut s.send_waiters)
            .into_iter()
            .map(|w| w.complete(|_| {}))
            .collect();
        drop(s);
        drop(buffered);
        for w in woken {
            w.finish();
        }
    }
}
