//! The queue of preempted Gs.
//!
//! A preempted G keeps its M (see `preempt`), so it is queued here, not on
//! a run queue: whichever M picks it up hands its P to the waiting M. Both
//! sides may run where nothing may allocate and no lock that interrupted
//! code could hold may be taken (the preemption path pushes; the
//! preemption path, the handler's retake and the scheduler pop), so the
//! queue is intrusive through the Gs' own `preempt_next` links:
//!
//! - `incoming`: a lock-free stack the pushers prepend to;
//! - `ready`: a FIFO that consumers fill, when it is empty, by
//!   reversing the whole `incoming` chain, oldest first, under a lock that
//!   is only ever held for a few pointer moves (never across an
//!   allocation, a free or a preemption point), so preempted Gs take
//!   turns fairly.

use std::ptr;
use std::sync::atomic::Ordering;

use crate::sys::sync::{fence, AtomicPtr, AtomicUsize};
use crate::sys::{FutexGuard, FutexLock};

use super::g::{GRef, G};
use super::p::PPtr;
use super::shared::Shared;

/// What the queue links through: a G (a test's own node in the loom
/// tests, which drive this very queue).
///
/// # Safety
/// `node` must return the node that `r` keeps alive, and the node's
/// `link` and `held` must be used by nothing but this queue while the
/// node is queued.
pub(crate) unsafe trait Queued: Sized {
    /// The reference the queue holds while the node is queued.
    type Ref;
    fn node(r: &Self::Ref) -> *const Self;
    /// The intrusive link.
    fn link(&self) -> &AtomicPtr<Self>;
    /// Where the queue keeps its reference.
    fn held(&self) -> *mut Option<Self::Ref>;
}

// SAFETY: `preempt_next` and `preempt_ref` are the G's queue fields, used
// only here; a GRef keeps its header alive.
unsafe impl Queued for G {
    type Ref = GRef;
    fn node(r: &GRef) -> *const G {
        r.as_ptr()
    }
    fn link(&self) -> &AtomicPtr<G> {
        &self.preempt_next
    }
    fn held(&self) -> *mut Option<GRef> {
        self.preempt_ref.get()
    }
}

/// The FIFO is refilled only when empty, so it needs no tail.
struct Fifo<N> {
    head: *const N,
}

// SAFETY: the raw pointers are only followed under the queue's lock, and
// every queued G is kept alive by its `preempt_ref`.
unsafe impl<N> Send for Fifo<N> {}

pub(crate) struct PreemptedQueue<N: Queued = G> {
    incoming: AtomicPtr<N>,
    ready: FutexLock<Fifo<N>>,
    len: AtomicUsize,
}

impl<N: Queued> Default for PreemptedQueue<N> {
    fn default() -> Self {
        PreemptedQueue {
            incoming: AtomicPtr::new(ptr::null_mut()),
            ready: FutexLock::new(Fifo { head: ptr::null() }),
            len: AtomicUsize::new(0),
        }
    }
}

impl<N: Queued> PreemptedQueue<N> {
    /// Queues the running G. Lock-free and allocation-free.
    ///
    /// # Safety
    /// `g` must be the caller's own running G, not queued here already.
    pub(crate) unsafe fn push(&self, g: N::Ref) {
        let raw = N::node(&g) as *mut N;
        // SAFETY: the caller runs `g`, so nobody else touches its queue
        // fields until the exchange below publishes it.
        unsafe { *(*raw).held() = Some(g) };
        let mut head = self.incoming.load(Ordering::Relaxed);
        loop {
            // SAFETY: `raw` is the G we hold a reference to (stored in its
            // `preempt_ref` just above), so it is alive; its link is ours
            // until the exchange below publishes it.
            unsafe { (*raw).link().store(head, Ordering::Relaxed) };
            match self.incoming.compare_exchange_weak(
                head,
                raw,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.len.fetch_add(1, Ordering::Release);
    }

    /// Gs queued now (for metrics).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// The longest-waiting preempted G. Allocation-free; takes the
    /// queue's own short lock.
    pub(crate) fn pop(&self) -> Option<N::Ref> {
        if self.is_empty() {
            return None;
        }
        self.pop_locked(self.ready.lock())
    }

    /// As `pop`, but gives up rather than wait for the lock: for the
    /// signal handler, which may have interrupted the lock's holder on
    /// this very thread.
    pub(crate) fn try_pop(&self) -> Option<N::Ref> {
        if self.is_empty() {
            return None;
        }
        self.pop_locked(self.ready.try_lock()?)
    }

    fn pop_locked(&self, mut fifo: FutexGuard<'_, Fifo<N>>) -> Option<N::Ref> {
        if fifo.head.is_null() {
            // Take the whole pushed chain (newest first) and append it
            // reversed, so the oldest comes out first.
            let mut p = self.incoming.swap(ptr::null_mut(), Ordering::Acquire) as *const N;
            let mut reversed: *const N = ptr::null();
            while !p.is_null() {
                // SAFETY: pushed Gs stay alive through `preempt_ref`, and
                // the swap made this chain ours alone.
                let g = unsafe { &*p };
                let next = g.link().load(Ordering::Relaxed);
                g.link().store(reversed as *mut N, Ordering::Relaxed);
                reversed = p;
                p = next;
            }
            fifo.head = reversed;
        }
        let first = fifo.head;
        if first.is_null() {
            return None;
        }
        // SAFETY: a queued G is kept alive by its `preempt_ref`, and the
        // FIFO's Gs and links are only touched under the lock we hold.
        let g = unsafe { &*first };
        fifo.head = g.link().load(Ordering::Relaxed);
        g.link().store(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: the G left the queue under the lock; its reference is
        // ours to take.
        let r = unsafe { (*g.held()).take() }.expect("greenrt: queued G");
        drop(fifo);
        self.len.fetch_sub(1, Ordering::Release);
        Some(r)
    }
}

impl Shared {
    /// A G was queued as preempted without a P to hand on (a retaken G):
    /// if a P is idle, hand it to the longest-waiting preempted G. Asking
    /// sysmon's errand thread instead would not do: it may itself wait
    /// for the allocator lock that very G holds. Allocation-free; `sched`
    /// is never held across an allocation or a preemption point.
    pub(crate) fn resume_preempted_on_idle_p(&self) {
        // Pairs with the fence in `find_runnable` after a P goes idle:
        // either that M sees the queued G, or we see its idle P.
        if !super::idle::idle_p_for_work(&self.npidle) {
            return;
        }
        let Some(p) = self.get_idle_p() else {
            return;
        };
        match self.preempted.pop() {
            Some(next) => self.hand_to_preempted(next, p),
            None => self.put_idle_p(p),
        }
    }

    /// Shutdown: every queued preempted G runs on without a P (detached)
    /// on its own M (`release_preempted_g`). Called by shutdown's stop
    /// step after it sets `shutdown`, and by the preemption path when it
    /// sees `shutdown` set after queueing its G. Allocation-free; takes
    /// only the queue's own lock.
    pub(crate) fn release_preempted(&self) {
        // The caller set or saw `shutdown`; pairs with the fence in
        // `park_preempted` (push; fence; read `shutdown`): either this
        // drain finds that G or that path sees `shutdown` and drains.
        fence(Ordering::SeqCst);
        while let Some(g) = self.preempted.pop() {
            self.release_preempted_g(g);
        }
    }

    /// A preempted G taken off the queue that no P will be handed to
    /// (shutdown): clears its `locked_m` and kicks that M, which then runs
    /// it on without a P. As in `hand_to_preempted`, the queue's reference
    /// is dropped first: until `locked_m` is cleared the waiting M's own
    /// reference keeps the G alive, so the drop never frees (this runs on
    /// the preemption path too).
    pub(crate) fn release_preempted_g(&self, g: GRef) {
        let raw: *const G = g.as_ptr();
        drop(g);
        // SAFETY: alive (see above): its M waits in the preemption path
        // until `locked_m` is cleared, here, or it is handed a P, which
        // only whoever took the G off the queue (we) could do.
        let m = unsafe { &*raw }
            .locked_m
            .swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: handles live as long as the runtime (`allm`).
        if let Some(m) = unsafe { m.as_ref() } {
            m.kick();
        }
    }

    /// Hands `p` to the M that holds the preempted G `g` (popped from
    /// `preempted`), which resumes it. Lock-free and allocation-free:
    /// also used on the preemption path and in the signal handler.
    ///
    /// Takes the queue's reference to `g` and drops it *before* the
    /// hand-off: until then the waiting M's own reference (its running G)
    /// keeps the G alive, so this drop never frees; after it the G may
    /// run to its end at once, and a reference held here could be the
    /// last, freeing memory in a critical path (or a signal handler).
    pub(crate) fn hand_to_preempted(&self, g: GRef, p: PPtr) {
        let m = g.locked_m.swap(std::ptr::null_mut(), Ordering::AcqRel);
        drop(g);
        // SAFETY: the preempting M stored its handle before queueing the G
        // and waits on it; handles live as long as the runtime.
        let m = unsafe { m.as_ref() }.expect("greenrt: preempted G without its M");
        // Resuming a G is a scheduling round like `execute`: the tick
        // moves (else the 1-in-61 branch would pick this path forever,
        // and sysmon would not see a fresh slice).
        // SAFETY: we own the P until we give it away below.
        let id = unsafe { p.get() }.id;
        self.ticks[id].fetch_add(1, Ordering::Relaxed);
        m.give(p, false);
    }
}
