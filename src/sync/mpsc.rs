//! Multi-producer, single-consumer channels with `std::sync::mpsc`'s API.
//!
//! A receiver or sender that has to wait parks its green thread (or its OS
//! thread, off the runtime). The error types are std's own.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

use super::waitq::WaitQueue;
use crate::scheduler::park::{block, Waker};
use crate::time;

struct State<T> {
    buf: VecDeque<T>,
    /// None: unbounded. Some(0): rendezvous.
    cap: Option<usize>,
    senders: usize,
    receiver_alive: bool,
    /// The receiver, when it waits for a message.
    recv_waiter: Option<Waker>,
    /// Messages pushed and taken so far (rendezvous hand-off tracking).
    pushed: u64,
    taken: u64,
}

impl<T> State<T> {
    fn has_room(&self) -> bool {
        match self.cap {
            None => true,
            Some(0) => self.buf.is_empty(),
            Some(c) => self.buf.len() < c,
        }
    }
}

struct Chan<T> {
    state: Mutex<State<T>>,
    /// Senders waiting for room (or, rendezvous, for their message to be
    /// taken). Its condition is checked under its own lock, so a wake-up
    /// between a sender's check and its sleep is never lost.
    send_q: WaitQueue,
}

impl<T> Chan<T> {
    fn new(cap: Option<usize>) -> Arc<Chan<T>> {
        Arc::new(Chan {
            state: Mutex::new(State {
                buf: VecDeque::new(),
                cap,
                senders: 1,
                receiver_alive: true,
                recv_waiter: None,
                pushed: 0,
                taken: 0,
            }),
            send_q: WaitQueue::new(),
        })
    }

    /// Pushes `t`, waiting for room if `wait`.
    fn push(&self, t: T, wait: bool) -> Result<(), TrySendError<T>> {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        loop {
            let mut s = self.state.lock();
            if !s.receiver_alive {
                return Err(TrySendError::Disconnected(t));
            }
            // A rendezvous try_send succeeds only if a receiver is blocked
            // waiting (std's rule); otherwise there is nobody to hand to.
            let rendezvous_ok = wait || s.cap != Some(0) || s.recv_waiter.is_some();
            if s.has_room() && rendezvous_ok {
                s.buf.push_back(t);
                s.pushed += 1;
                let ticket = s.pushed;
                let rendezvous = s.cap == Some(0);
                let w = s.recv_waiter.take();
                drop(s);
                if let Some(w) = w {
                    w.wake_by_value();
                }
                return if rendezvous && wait {
                    self.await_taken(ticket)
                } else {
                    Ok(())
                };
            }
            drop(s);
            if !wait {
                return Err(TrySendError::Full(t));
            }
            self.send_q.wait_if(
                || {
                    let s = self.state.lock();
                    s.receiver_alive && !s.has_room()
                },
                None,
            );
        }
    }

    /// Rendezvous: waits until the receiver took message number `ticket`.
    fn await_taken(&self, ticket: u64) -> Result<(), TrySendError<T>> {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        loop {
            let mut s = self.state.lock();
            if s.taken >= ticket {
                return Ok(());
            }
            if !s.receiver_alive {
                // Not taken: it is still the last message in the buffer.
                let t = s.buf.pop_back().expect("untaken rendezvous message");
                return Err(TrySendError::Disconnected(t));
            }
            drop(s);
            self.send_q.wait_if(
                || {
                    let s = self.state.lock();
                    s.receiver_alive && s.taken < ticket
                },
                None,
            );
        }
    }

    /// Pops a message, waiting until `deadline` if `wait`.
    fn pop(&self, wait: bool, deadline: Option<u64>) -> Result<T, RecvTimeoutError> {
        // Runtime locks are never held by a preempted green thread.
        let _np = crate::preempt::no_preempt();
        loop {
            let mut s = self.state.lock();
            if let Some(t) = s.buf.pop_front() {
                s.taken += 1;
                let rendezvous = s.cap == Some(0);
                let bounded = s.cap.is_some();
                drop(s);
                if rendezvous {
                    // Wakes both the sender whose message this was and
                    // those waiting for the slot.
                    self.send_q.wake_all();
                } else if bounded {
                    self.send_q.wake_one();
                }
                return Ok(t);
            }
            if s.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            if !wait || deadline.is_some_and(|d| time::now() >= d) {
                s.recv_waiter = None;
                return Err(RecvTimeoutError::Timeout);
            }
            s.recv_waiter = Some(Waker::current());
            drop(s);
            block(deadline);
        }
    }
}

/// Creates an unbounded channel: `send` never blocks.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Chan::new(None);
    (
        Sender { chan: chan.clone() },
        Receiver {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// Creates a channel holding at most `bound` messages; `send` blocks when
/// it is full. `bound == 0` makes a rendezvous channel: each `send` waits
/// until the receiver takes the message.
pub fn sync_channel<T>(bound: usize) -> (SyncSender<T>, Receiver<T>) {
    let chan = Chan::new(Some(bound));
    (
        SyncSender { chan: chan.clone() },
        Receiver {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// The sending half of [`channel`]; clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The sending half of [`sync_channel`]; clone it for more producers.
pub struct SyncSender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. Like std's, it is `Send` but not
/// `Sync`: one receiver at a time.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<T> Sender<T> {
    /// Sends `t`; fails, handing it back, only if the receiver is gone.
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.push(t, false).map_err(|e| match e {
            TrySendError::Disconnected(t) | TrySendError::Full(t) => SendError(t),
        })
    }
}

impl<T> SyncSender<T> {
    /// Sends `t`, blocking while the channel is full (rendezvous: until
    /// the receiver takes it). Fails only if the receiver is gone.
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        self.chan.push(t, true).map_err(|e| match e {
            TrySendError::Disconnected(t) | TrySendError::Full(t) => SendError(t),
        })
    }

    /// Sends `t` only if that needs no waiting.
    pub fn try_send(&self, t: T) -> Result<(), TrySendError<T>> {
        self.chan.push(t, false)
    }
}

macro_rules! sender_common {
    ($ty:ident) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                let _np = crate::preempt::no_preempt();
                self.chan.state.lock().senders += 1;
                $ty {
                    chan: self.chan.clone(),
                }
            }
        }

        impl<T> Drop for $ty<T> {
            fn drop(&mut self) {
                let _np = crate::preempt::no_preempt();
                let mut s = self.chan.state.lock();
                s.senders -= 1;
                let w = if s.senders == 0 {
                    s.recv_waiter.take()
                } else {
                    None
                };
                drop(s);
                if let Some(w) = w {
                    w.wake_by_value();
                }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    };
}
sender_common!(Sender);
sender_common!(SyncSender);

impl<T> Receiver<T> {
    /// Waits for a message; fails once every sender is gone and the
    /// channel is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.pop(true, None).map_err(|_| RecvError)
    }

    /// Takes a message if one is ready.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.pop(false, None).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Waits for a message for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.pop(true, Some(time::deadline_after(timeout)))
    }

    /// Blocking iterator; ends when every sender is gone.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// Iterator over the messages ready now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let _np = crate::preempt::no_preempt();
        let mut s = self.chan.state.lock();
        s.receiver_alive = false;
        // A rendezvous sender takes its untaken message back itself.
        let buffered = if s.cap == Some(0) {
            VecDeque::new()
        } else {
            std::mem::take(&mut s.buf)
        };
        drop(s);
        drop(buffered);
        self.chan.send_q.wake_all();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// Blocking iterator over a [`Receiver`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

/// Non-blocking iterator over a [`Receiver`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

/// Owning blocking iterator over a [`Receiver`].
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
