//! Stopping a runtime: cancel every green thread, let them unwind, stop
//! the Ms, and give back what the runtime made.
//!
//! The protocol (docs/DESIGN.md, "Shutdown and cancellation"):
//!
//! 1. **Cancel.** `cancelling` is set, then every G in the registry is
//!    marked cancelled and woken. A parked G resumes in `park`, sees the
//!    mark and unwinds with [`crate::Cancelled`]; a running or preempted
//!    one runs on (the Ms keep scheduling, preempted Gs keep getting
//!    their turns) until its next blocking call, where it unwinds. Gs
//!    spawned from now on are born cancelled. The mark is stored before
//!    the wake-up token (both SeqCst), so a G that sees the token sees
//!    the mark.
//! 2. **Wait** until the registry is empty (every G exited) or the
//!    timeout passes with no new low of the live count: unwinding parked Gs is like
//!    dropping tokio's futures, always done however many there are (it
//!    only takes turns on the Ps); the timeout is for Gs that reach no
//!    blocking call.
//! 3. **Stop.** `shutdown` is set: Ms leave their scheduling loops and
//!    exit; an M still running a G (it did not reach a blocking call in
//!    time) is detached: its thread runs the G on without a P, like a
//!    plain thread, and unwinds it at its next blocking call. Preempted
//!    Gs are taken out of their queue and their Ms kicked, so they too run
//!    on, detached. The others are joined.
//! 4. **Drain** what will never run: queued Gs that never started get
//!    their closure dropped and their joiner a `Cancelled` error; timer
//!    entries are dropped (only the references: a G in a timer may be
//!    running or preempted, and a stack is never freed under an M that
//!    may run on it); pooled stacks are unmapped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g::{GRef, DEAD};
use super::shared::Shared;

/// Green threads a shutdown did not see finish.
pub(crate) struct Unfinished {
    /// Running (they reached no blocking call): they run on, detached.
    pub(crate) detached: usize,
    /// Cancelled but queued when the runtime stopped, never to run
    /// again: their stacks are leaked, their destructors never run.
    pub(crate) abandoned: usize,
}

/// Longest nap while waiting for cancelled green threads to finish.
const MAX_NAP: Duration = Duration::from_millis(1);

impl Shared {
    /// Stops the runtime (see the module docs); waits for its green
    /// threads to unwind until `timeout` passes with no new low of the
    /// live count.
    pub(crate) fn shutdown(self: &Arc<Self>, timeout: Duration) -> Unfinished {
        self.cancel_all();
        let mut nap = Duration::from_micros(20);
        let mut live = self.registry.live();
        let mut low = live;
        // None: no limit (`Duration::MAX`).
        let mut deadline = Instant::now().checked_add(timeout);
        while live > 0 {
            // Progress is looked at before the deadline, after each nap.
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
            // Progress is a new low of the live count: Gs born during the
            // cancellation (spawned by a G that never blocks, or by the
            // destructor of an unwinding one) finish at once but cannot
            // keep the deadline moving, so the wait is bounded by (Gs
            // live at the cancel + 1) timeouts.
            live = self.registry.live();
            if live < low {
                low = live;
                deadline = Instant::now().checked_add(timeout);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        let detached = self.stop_ms();
        self.drain_queued();
        Unfinished {
            detached,
            abandoned: self.abandoned_started.load(Ordering::Acquire),
        }
    }

    /// Step 1: marks every live G cancelled and wakes it.
    fn cancel_all(&self) {
        self.cancelling.store(true, Ordering::SeqCst);
        // Mark every G before waking any: a woken G that finishes could
        // otherwise wake another (its joiner, a lock waiter) before that
        // one is marked, and it would carry on as if nothing happened.
        let all = self.registry.snapshot();
        for g in &all {
            g.cancel();
        }
        for g in all {
            g.unpark_owned();
        }
        // A G locked to its OS thread waits as an OS thread does, in
        // `thread::park` (see `scheduler::locked`): wake every M's thread
        // (a spurious wake-up is harmless to any other waiter there).
        for (t, _) in self.threads.lock().iter() {
            t.thread().unpark();
        }
    }

    /// Step 3: stops the Ms; joins those not running a green thread and
    /// detaches the rest. Returns how many were detached.
    fn stop_ms(&self) -> usize {
        let mut detached = 0;
        self.shutdown.store(true, Ordering::SeqCst);
        // Preempted Gs run on, detached, on their own Ms (one queued from
        // now on is released by its own preemption path).
        self.release_preempted();
        for m in self.sched.lock().midle.iter() {
            m.kick();
        }
        let mut pending = std::mem::take(&mut *self.threads.lock());
        for (_, m) in &pending {
            m.kick();
        }
        loop {
            let mut i = 0;
            while i < pending.len() {
                let (t, m) = &pending[i];
                if t.is_finished() {
                    let (t, _) = pending.swap_remove(i);
                    let _ = t.join();
                } else if m.in_g.load(Ordering::Acquire) {
                    // Detached: dropping the JoinHandle lets the thread
                    // clean up after itself when its green thread ends.
                    drop(pending.swap_remove(i));
                    detached += 1;
                } else {
                    i += 1;
                }
            }
            if pending.is_empty() {
                return detached;
            }
            std::thread::sleep(MAX_NAP);
        }
    }

    /// Step 4: gives up on everything still queued and frees pooled
    /// stacks. No M takes work any more (`shutdown` is set, and idle Ps
    /// can no longer be taken: `get_idle_p` refuses).
    fn drain_queued(&self) {
        // Dropping a G may drop values whose Drop readies other Gs (into
        // the global queue), so drain until quiet.
        loop {
            let mut gs: Vec<GRef> = Vec::new();
            while let crossbeam_deque::Steal::Success(g) = self.injector.steal() {
                gs.push(g);
            }
            for s in self.stealers.iter() {
                while let crossbeam_deque::Steal::Success(g) = s.steal() {
                    gs.push(g);
                }
            }
            {
                let s = self.sched.lock();
                for p in s.pidle.iter().chain(s.parked.iter()) {
                    // SAFETY: an idle P is owned by nobody, and none can
                    // be taken off the list after shutdown.
                    let p = unsafe { p.get() };
                    gs.extend(p.drain());
                    p.stacks.borrow_mut().clear();
                }
            }
            if gs.is_empty() {
                break;
            }
            for g in gs {
                self.abandon_queued(g);
            }
        }
        // References only: these Gs may be running (detached) or gone.
        for t in self.timers.iter() {
            drop(t.drain());
        }
        // Empty by now (see `stop_ms`); a G found here would otherwise
        // keep its M waiting for good.
        self.release_preempted();
        crate::stack::clear_pool(&self.stacks);
        self.stack_reserve.release();
    }

    /// A queued G will never run: its joiner learns it was cancelled.
    /// Its stack, if it never started, is unmapped. A started G's stack
    /// (it was parked and woken, or yielded, and is in a run queue, so no
    /// M runs on it) is leaked instead: values on it are not dropped, and
    /// frames that never unwound may still be listed elsewhere — a
    /// wait-queue entry in a `Mutex` or channel shared with threads that
    /// outlive the runtime, a buffer the kernel is filling — so unmapping
    /// it would let them write into freed memory
    /// (tests/shutdown_abandoned.rs). Only a G that never got to run
    /// again after the shutdown began ends this way.
    pub(crate) fn abandon_queued(&self, g: GRef) {
        let abandon = std::panic::AssertUnwindSafe(|| g.abandon());
        let started = std::panic::catch_unwind(abandon).unwrap_or_else(|_| {
            eprintln!(
                "greenrt: panic while dropping green thread '{}' at shutdown",
                g.display_name()
            );
            true
        });
        g.set_state(DEAD);
        // SAFETY: the G was queued, so it is not running, and after
        // shutdown nothing resumes it.
        let stack = unsafe { g.take_stack() };
        if started {
            self.abandoned_started.fetch_add(1, Ordering::AcqRel);
        }
        if started || g.stack_pinned() {
            // Its frames may be referenced from elsewhere (see above), or
            // (inside a `greenrt::scope`) scoped green threads may borrow
            // from this stack and run on, detached: leak it.
            std::mem::forget(stack);
        } else {
            drop(stack);
        }
        drop(self.registry.remove(&g));
    }
}
