//! Every live G of a runtime, so shutdown can cancel them all.
//!
//! A parked green thread is referenced only by whatever it waits on (a
//! wait queue, a poll descriptor, a timer, a join packet), none of which
//! the scheduler can enumerate. Like Go's `allgs`, the registry lists
//! them all: a G joins when spawned and leaves when it exits (or is
//! abandoned unstarted). It is an intrusive doubly-linked list per shard
//! (links in the G, no allocation), sharded by P so that two workers
//! spawning at once seldom share a lock; the list holds a strong
//! reference to each member (the G's `registered` slot).

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::g::{GRef, G};
use super::shared::Padded;

/// Links a G carries for the registry; touched only under its shard's
/// lock.
pub(crate) struct Links {
    prev: Cell<*const G>,
    next: Cell<*const G>,
    /// The shard the G is in (usize::MAX: none).
    shard: Cell<usize>,
    /// The registry's own reference to the G while it is listed.
    this: Cell<Option<GRef>>,
}

impl Default for Links {
    fn default() -> Links {
        Links {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            shard: Cell::new(usize::MAX),
            this: Cell::new(None),
        }
    }
}

struct Shard {
    head: *const G,
}

// SAFETY: the raw head is only followed under the shard's lock, and every
// listed G is kept alive by its `Links::this`.
unsafe impl Send for Shard {}

pub(crate) struct Registry {
    shards: Box<[Padded<Mutex<Shard>>]>,
    live: AtomicUsize,
}

impl Registry {
    pub(crate) fn new(shards: usize) -> Registry {
        Registry {
            shards: (0..shards.max(1))
                .map(|_| Padded(Mutex::new(Shard { head: ptr::null() })))
                .collect(),
            live: AtomicUsize::new(0),
        }
    }

    /// Number of listed Gs.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Lists `g` (a new G, not listed yet) in shard `hint % shards`.
    pub(crate) fn insert(&self, g: &GRef, hint: usize) {
        let idx = hint % self.shards.len();
        let links = &g.links;
        // Called from green threads (spawn): a G preempted holding a
        // shard lock would stall every spawner behind it, since runtime
        // locks block the worker, not just the green thread.
        let _np = crate::preempt::no_preempt();
        let mut s = self.shards[idx].lock();
        let raw = g.as_ptr();
        links.prev.set(ptr::null());
        links.next.set(s.head);
        if !s.head.is_null() {
            // SAFETY: listed Gs are alive (held by `this`); their links
            // are ours under the shard lock.
            unsafe { (*s.head).links.prev.set(raw) };
        }
        s.head = raw;
        links.shard.set(idx);
        links.this.set(Some(g.clone()));
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    /// Unlists `g` if it is listed; returns the registry's reference to
    /// it (drop it outside any runtime lock: it may be the last one).
    pub(crate) fn remove(&self, g: &G) -> Option<GRef> {
        let links = &g.links;
        // The shard index is written under a shard lock while the G is
        // being created (before anyone else can see it) or removed (by
        // the one M that finishes it), so reading it first is race-free.
        let idx = links.shard.get();
        if idx == usize::MAX {
            return None;
        }
        let _np = crate::preempt::no_preempt();
        let mut s = self.shards[idx].lock();
        let (prev, next) = (links.prev.get(), links.next.get());
        if prev.is_null() {
            s.head = next;
        } else {
            // SAFETY: `prev` is listed in this shard, so its `this`
            // reference keeps it alive; links are ours under the lock.
            unsafe { (*prev).links.next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: `next` is listed in this shard, so its `this`
            // reference keeps it alive; links are ours under the lock.
            unsafe { (*next).links.prev.set(prev) };
        }
        links.prev.set(ptr::null());
        links.next.set(ptr::null());
        links.shard.set(usize::MAX);
        let this = links.this.take();
        drop(s);
        self.live.fetch_sub(1, Ordering::SeqCst);
        this
    }

    /// A reference to every listed G.
    pub(crate) fn snapshot(&self) -> Vec<GRef> {
        let mut out = Vec::with_capacity(self.live());
        for shard in self.shards.iter() {
            let s = shard.lock();
            let mut p = s.head;
            while !p.is_null() {
                // SAFETY: every G reachable from a shard's head is listed,
                // held alive by its `this`, and we hold the shard's lock.
                let g = unsafe { &*p };
                let this = g.links.this.take();
                out.extend(this.clone());
                g.links.this.set(this);
                p = g.links.next.get();
            }
        }
        out
    }
}
