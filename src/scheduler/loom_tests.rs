//! Loom model checks of the scheduler's lock-free protocols (run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`, or `.ci/loom`; see
//! docs/DESIGN.md, "Model checking"). Each test drives the runtime's own
//! protocol code (`PreemptedQueue`, `Handoff`, the idle-P halves,
//! `SpareSlots`; `ParkState` in `loom_park_tests.rs`), generic over or apart from the heavy types
//! (G, P, M) it is used with there; what stands around it — a run queue,
//! the netpoller's eventfd, the scheduler's park path — is modelled, and
//! each model names the code it mirrors.

use std::cell::UnsafeCell as StdUnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::handoff::{Handoff, Wake};
use super::idle::{claim_spinner, idle_p_for_work, recheck_after_idle};
use super::preempted::{PreemptedQueue, Queued};
use super::spares::SpareSlots;
use crate::sys::sync::{model, AtomicPtr, AtomicUsize};

// ---------------------------------------------------------------------
// The preempted-G queue.

/// A stand-in for a G: the queue's intrusive fields, and a payload that
/// the pushing M writes (the G's saved context) and the M that pops it
/// reads, which loom checks for a data race.
struct Node {
    id: usize,
    link: AtomicPtr<Node>,
    held: StdUnsafeCell<Option<std::sync::Arc<Node>>>,
    payload: UnsafeCell<usize>,
}

// SAFETY: `held` and `payload` are only touched by the node's owner or by
// the queue (under its protocol), which is what the test checks.
unsafe impl Sync for Node {}
// SAFETY: as above.
unsafe impl Send for Node {}

// SAFETY: `link` and `held` are the node's queue fields, used by nothing
// else; an Arc keeps its node alive.
unsafe impl Queued for Node {
    type Ref = std::sync::Arc<Node>;
    fn node(r: &Self::Ref) -> *const Node {
        std::sync::Arc::as_ptr(r)
    }
    fn link(&self) -> &AtomicPtr<Node> {
        &self.link
    }
    fn held(&self) -> *mut Option<Self::Ref> {
        self.held.get()
    }
}

fn node(id: usize) -> std::sync::Arc<Node> {
    std::sync::Arc::new(Node {
        id,
        link: AtomicPtr::new(std::ptr::null_mut()),
        held: StdUnsafeCell::new(None),
        payload: UnsafeCell::new(0),
    })
}

/// The pushing M's side: it writes the G's state, then queues it.
fn push(q: &PreemptedQueue<Node>, n: std::sync::Arc<Node>) {
    // SAFETY: nobody else has the node yet.
    n.payload.with_mut(|p| unsafe { *p = n.id + 100 });
    // SAFETY: the node is ours and not queued.
    unsafe { q.push(n) };
}

/// Pops until the queue is empty (what shutdown's release does).
fn drain(q: &PreemptedQueue<Node>) -> Vec<std::sync::Arc<Node>> {
    let mut out = Vec::new();
    while let Some(n) = q.pop() {
        out.push(n);
    }
    out
}

/// The popping M's side: it reads the state the pusher wrote.
fn popped(n: &Node) -> usize {
    // SAFETY: the queue handed the node to us alone.
    let v = n.payload.with(|p| unsafe { *p });
    assert_eq!(v, n.id + 100, "popped a G whose state is not visible");
    n.id
}

/// PreemptedQueue (scheduler/preempted.rs): two Ms queue preempted Gs
/// (one of them two in a row) while a third pops with `pop` and
/// `try_pop`. Checks: every G comes out exactly once, with the state its
/// M wrote before queueing it visible (no data race); Gs queued by one M
/// come out in the order it queued them (FIFO); once all is popped the
/// queue says it is empty.
#[test]
fn loom_preempted_queue_fifo_and_exactly_once() {
    model(|| {
        let q = Arc::new(PreemptedQueue::<Node>::default());
        let q1 = q.clone();
        let t1 = thread::spawn(move || {
            push(&q1, node(1));
            push(&q1, node(2));
        });
        let q2 = q.clone();
        let t2 = thread::spawn(move || push(&q2, node(3)));
        let mut out = Vec::new();
        out.extend(q.pop().map(|n| popped(&n)));
        out.extend(q.try_pop().map(|n| popped(&n)));
        t1.join().unwrap();
        t2.join().unwrap();
        out.extend(drain(&q).iter().map(|n| popped(n)));
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3], "lost or duplicated: {out:?}");
        let pos = |id| out.iter().position(|&x| x == id).unwrap();
        assert!(pos(1) < pos(2), "not FIFO: {out:?}");
        assert!(q.is_empty());
    });
}

// ---------------------------------------------------------------------
// The M hand-off.

/// What is handed over (a P in the runtime), with its contents: what the
/// giving M last wrote to the P (its queues), which the M it goes to
/// reads; loom checks that read for a data race.
struct Token {
    id: usize,
    contents: UnsafeCell<usize>,
}

// SAFETY: `contents` belongs to whoever holds the token (the protocol
// under test hands it over).
unsafe impl Sync for Token {}

fn new_token(id: usize) -> &'static Token {
    Box::leak(Box::new(Token {
        id,
        contents: UnsafeCell::new(0),
    }))
}

/// The giving M's last writes to the P, then the pointer handed over.
fn fill(t: &Token) -> NonNull<Token> {
    // SAFETY: the giver holds the token.
    t.contents.with_mut(|c| unsafe { *c = t.id * 10 });
    NonNull::from(t)
}

/// The receiving M reads what the giver wrote.
fn received(p: NonNull<Token>) -> usize {
    // SAFETY: tokens live until their test frees them.
    let t = unsafe { p.as_ref() };
    // SAFETY: the hand-off gave the token to us alone.
    let c = t.contents.with(|c| unsafe { *c });
    assert_eq!(c, t.id * 10, "handed a P whose contents are not visible");
    t.id
}

/// Frees a token leaked by `new_token`.
///
/// # Safety
/// Nobody uses it any more.
unsafe fn free_token(t: &'static Token) {
    // SAFETY: `t` came from `Box::leak` in `new_token`, and the caller
    // vouches that nothing uses it any more.
    drop(unsafe { Box::from_raw(t as *const Token as *mut Token) });
}

/// Handoff (scheduler/handoff.rs), futex path: an M waits (`wait`, as
/// `stop_m` and the preemption path do) while another hands it a P and a
/// third kicks it. Checks: no lost wake-up (a lost one leaves the waiter
/// asleep on the futex model, which loom reports as a deadlock); a kick
/// never swallows the P: the M, waiting again after a kick as `stop_m`
/// does, gets it, with the P's contents and the spinning flag the giver
/// wrote visible.
#[test]
fn loom_handoff_give_and_kick_wake_the_waiter() {
    model(|| {
        let h = Arc::new(Handoff::<Token>::new());
        let p = new_token(7);
        let giver = {
            let h = h.clone();
            thread::spawn(move || h.give(fill(p), true, || {}))
        };
        let kicker = {
            let h = h.clone();
            thread::spawn(move || h.kick(|| {}))
        };
        let (got, spinning) = loop {
            match h.wait(None, None) {
                Wake::P(p, spinning) => break (p, spinning),
                Wake::Kicked => continue,
                Wake::Timeout | Wake::Polled => unreachable!("no deadline, no poll"),
            }
        };
        assert_eq!(received(got), 7);
        assert!(spinning, "the hand-off's spinning flag was lost");
        giver.join().unwrap();
        kicker.join().unwrap();
        // SAFETY: nobody uses the token now.
        unsafe { free_token(p) };
    });
}

/// The netpoller's eventfd, as far as a blocked poller cares: a write
/// (`break_wait`) makes a blocked or later epoll_wait return.
#[derive(Default)]
struct EventFd {
    written: Mutex<bool>,
    readable: Condvar,
}

impl EventFd {
    fn write(&self) {
        *self.written.lock().unwrap() = true;
        self.readable.notify_all();
    }

    /// epoll_wait with no timeout on nothing but the eventfd, and the
    /// read that consumes it.
    fn wait(&self) {
        let mut w = self.written.lock().unwrap();
        while !*w {
            w = self.readable.wait(w).unwrap();
        }
        *w = false;
    }
}

/// Handoff's `in_poll` pairing (scheduler/handoff.rs `bump` and
/// `enter_poll`): an M waits in the netpoller rather than on the futex
/// (the poll closure mirrors `netpoll::block`: announce, bail out if a P
/// or kick came first, else epoll_wait until the eventfd is written,
/// then withdraw) while another M hands it a P. Checks: no M sleeps in
/// epoll_wait with a P handed to it — either the giver sees `in_poll`
/// and writes the eventfd, or the poller sees the P before blocking (a
/// miss leaves the poller blocked: loom reports a deadlock).
#[test]
fn loom_handoff_breaks_the_netpoller_wait() {
    model(|| {
        let h = Arc::new(Handoff::<Token>::new());
        let efd = Arc::new(EventFd::default());
        let p = new_token(1);
        let giver = {
            let (h, efd) = (h.clone(), efd.clone());
            thread::spawn(move || h.give(fill(p), false, || efd.write()))
        };
        let mut poll = |_timeout: Option<u64>| {
            if h.enter_poll() {
                h.leave_poll();
                return Some(0);
            }
            efd.wait();
            h.leave_poll();
            Some(0)
        };
        match h.wait(None, Some(&mut poll)) {
            Wake::P(got, _) => assert_eq!(received(got), 1),
            _ => panic!("woke without the P"),
        }
        giver.join().unwrap();
        // SAFETY: nobody uses the token now.
        unsafe { free_token(p) };
    });
}

// ---------------------------------------------------------------------
// wakep and the idle P.

/// The idle-P pairing (scheduler/idle.rs: `claim_spinner`, used by
/// `wakep`; `recheck_after_idle`, used by `find_runnable` after
/// `drop_p`). One M holds the only P, finds nothing and gives it up
/// (`put_idle_p`'s count, modelled) and re-checks the queues; meanwhile
/// another thread makes a G runnable (the global queue's push, modelled
/// with a relaxed counter: weaker than crossbeam's, so only the fences
/// carry it) and calls wakep. Checks: no lost wake-up — either wakep sees
/// the idle P (and claims the spinner) or the M that dropped it sees the
/// work.
#[test]
fn loom_wakep_sees_idle_p_or_idle_m_sees_work() {
    model(|| {
        let npidle = Arc::new(AtomicUsize::new(0));
        let nmspinning = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let m = {
            let (npidle, queued) = (npidle.clone(), queued.clone());
            thread::spawn(move || {
                npidle.fetch_add(1, Ordering::SeqCst); // put_idle_p
                recheck_after_idle(|| queued.load(Ordering::Relaxed) != 0)
            })
        };
        queued.store(1, Ordering::Relaxed); // injector.push
        let woke = claim_spinner(&npidle, &nmspinning);
        let m_saw_work = m.join().unwrap();
        assert!(
            woke || m_saw_work,
            "lost wake-up: wakep saw no idle P and the idling M saw no work"
        );
        if woke {
            assert_eq!(nmspinning.load(Ordering::SeqCst), 1);
        }
    });
}

/// The same pairing for preempted Gs (scheduler/preempted.rs:
/// `resume_preempted_on_idle_p`, after a retaken G is queued with no P
/// to hand on; `find_runnable`'s re-check of `preempted.is_empty()`),
/// with the real queue. Checks: either the queueing M sees the idle P
/// (and pops a G to hand it to), or the idling M sees the queued G.
#[test]
fn loom_preempted_g_sees_idle_p_or_idle_m_sees_it() {
    model(|| {
        let npidle = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(PreemptedQueue::<Node>::default());
        let m = {
            let (npidle, q) = (npidle.clone(), q.clone());
            thread::spawn(move || {
                npidle.fetch_add(1, Ordering::SeqCst); // put_idle_p
                recheck_after_idle(|| !q.is_empty())
            })
        };
        push(&q, node(1));
        let handed = idle_p_for_work(&npidle) && q.pop().is_some_and(|n| popped(&n) == 1);
        let m_saw_g = m.join().unwrap();
        assert!(
            handed || m_saw_g,
            "lost wake-up: a preempted G waits with a P idle"
        );
        drop(drain(&q));
    });
}

// ---------------------------------------------------------------------
// Spare Ms.

/// SpareSlots (scheduler/spares.rs): one slot; a new spare M's thread
/// publishes itself (`ready`; the errand thread counted it in `starting`
/// before starting it); the errand thread, in a later `ensure_spares`,
/// reads `wanted` and publishes an idle M for it; two Ms claim a spare at
/// once (the signal handler's retake, the preemption path). Checks: each
/// spare is claimed at most once; none is lost (every M whose publication
/// succeeded is claimed or still in the slot; one that failed is in no
/// slot, and its thread exits); `starting` goes back to zero. (`wanted`
/// can over-count by one for a moment: it reads the slots before
/// `starting`, and a new spare may publish itself in between; the
/// errand's publication then fails and `ensure_spares` puts the M back
/// on the idle list.)
#[test]
fn loom_spare_claimed_once_never_lost() {
    model(|| {
        let slots = Arc::new(SpareSlots::<Token>::new(1));
        let (m1, m2) = (new_token(1), new_token(2));
        slots.starting();
        let new_spare = {
            let slots = slots.clone();
            thread::spawn(move || slots.ready(m1))
        };
        let errand = {
            let slots = slots.clone();
            thread::spawn(move || slots.wanted() > 0 && slots.publish(m2))
        };
        let claimer = {
            let slots = slots.clone();
            // SAFETY: the tokens live until the end of the test.
            thread::spawn(move || slots.claim().map(|m| unsafe { m.as_ref() }.id))
        };
        // SAFETY: as above.
        let claimed = slots.claim().map(|m| unsafe { m.as_ref() }.id);
        let m1_published = new_spare.join().unwrap();
        let m2_published = errand.join().unwrap();
        let claimed2 = claimer.join().unwrap();
        // SAFETY: as above.
        let left = slots.claim().map(|m| unsafe { m.as_ref() }.id);
        assert!(slots.claim().is_none());
        assert_eq!(slots.wanted(), 1, "`starting` did not go back to zero");
        let mut seen: Vec<usize> = [claimed, claimed2, left].into_iter().flatten().collect();
        seen.sort_unstable();
        let published: Vec<usize> = [(1, m1_published), (2, m2_published)]
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(seen, published, "a spare was lost or handed out twice");
        // SAFETY: nobody uses the tokens now.
        unsafe {
            free_token(m1);
            free_token(m2);
        }
    });
}
