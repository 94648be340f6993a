//! Scoped green threads: `greenrt::scope`, std::thread::scope's API.
//!
//! The design is std's: the scope's shared [`ScopeData`] counts running
//! scoped green threads, each spawned closure is boxed with its lifetime
//! erased, and every scoped green thread owns (with its join handle) an
//! [`ScopedPacket`] whose drop — after the closure and its result are
//! gone — counts it out. `scope` returns only once the count is zero.
//! What is greenrt's own is how the scope waits (through cancellation,
//! see `ScopeData::wait_all`) and that the scope's own stack is pinned
//! while it is open (see `scope`).

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use super::{Builder, JoinHandle};
use crate::scheduler::park::{self, Waker};
use crate::scheduler::{self, Shared};

/// A scope to spawn green threads in that may borrow from the caller's
/// stack (see [`scope`]).
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    rt: Arc<Shared>,
    /// Invariance over 'scope, so it cannot shrink (as std's).
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// An owned permission to join a scoped green thread.
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<()>,
    packet: Arc<ScopedPacket<'scope, T>>,
}

/// What a scope and its green threads share.
struct ScopeData {
    /// Scoped green threads whose packet is still alive.
    running: AtomicUsize,
    /// Set when one panicked and nobody joined it to take the panic.
    a_thread_panicked: AtomicBool,
    /// How to wake the scope's owner once `running` reaches zero.
    owner: parking_lot::Mutex<Option<Waker>>,
}

/// Where a scoped green thread leaves its result (std's `Packet`).
struct ScopedPacket<'scope, T> {
    scope: Arc<ScopeData>,
    /// Written once by the green thread, before its `JoinHandle<()>` says
    /// it finished; read by the joiner after that.
    result: UnsafeCell<Option<thread::Result<T>>>,
    _scope: PhantomData<&'scope ()>,
}

// SAFETY: `result` is written by the scoped green thread before its
// underlying JoinHandle reports it finished (the packet's DONE, Release)
// and taken by the single joiner only after it saw that (Acquire), or by
// the drop of the last reference; a `T` crosses threads that way, hence
// T: Send.
unsafe impl<T: Send> Sync for ScopedPacket<'_, T> {}

/// Runs `f` with a [`Scope`] whose green threads may borrow non-`'static`
/// data from the caller: like `std::thread::scope`, every green thread
/// spawned in the scope is joined before `scope` returns.
///
/// If `f` panics, the panic is resumed once all of them have finished. If
/// a scoped green thread panicked and nobody joined it, `scope` panics
/// (with "a scoped green thread panicked") after all have finished. The
/// caller waits by parking (its worker runs other green threads).
///
/// ```
/// greenrt::run(|| {
///     let mut counts = vec![0u64; 4];
///     let text = String::from("a borrowed string");
///     greenrt::scope(|s| {
///         for (i, c) in counts.iter_mut().enumerate() {
///             let text = &text;
///             s.spawn(move || *c = (i * text.len()) as u64);
///         }
///     });
///     assert_eq!(counts, [0, 17, 34, 51]);
/// });
/// ```
///
/// # Cancellation
/// When the runtime shuts down, the scope still waits for every scoped
/// green thread to finish (they unwind with [`Cancelled`](crate::Cancelled)
/// at their next blocking call) before it returns or unwinds: its wait does
/// not unwind. One that never finishes (never reaches a blocking call)
/// keeps the scope waiting and its borrowed data alive for good.
///
/// # Panics
/// When called outside a green thread, as [`spawn`](crate::spawn) does.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let Some(rt) = scheduler::current_runtime() else {
        panic!("greenrt::scope called outside a green thread (use greenrt::run, Runtime::block_on or Runtime::spawn)");
    };
    // The scope's own stack (where `'env` data usually lives) must stay
    // mapped while scoped green threads may use it, even if shutdown
    // abandons this green thread in a run queue (see `abandon_queued`).
    scheduler::with_current_g(|g| g.expect("on a green thread").pin_stack());
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: AtomicUsize::new(0),
            a_thread_panicked: AtomicBool::new(false),
            owner: parking_lot::Mutex::new(None),
        }),
        rt,
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    {
        // Returning (or unwinding) before every scoped green thread is done
        // would free what they borrow: never let an unwind out of here.
        let abort = AbortOnUnwind;
        scope.data.wait_all();
        std::mem::forget(abort);
    }
    scheduler::with_current_g(|g| g.expect("on a green thread").unpin_stack());
    match result {
        Err(payload) => resume_unwind(payload),
        Ok(_) if crate::task::is_cancelled() => {
            // The wait above was a blocking call of a cancelled green
            // thread: unwind from it now that it is over.
            park::unwind_if_cancelled();
            unreachable!("a cancelled green thread unwinds")
        }
        Ok(_) if scope.data.a_thread_panicked.load(Ordering::Relaxed) => {
            panic!("a scoped green thread panicked")
        }
        Ok(r) => r,
    }
}

/// Aborts the process if dropped: a scope's wait must not unwind.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        eprintln!("greenrt: a scope's wait for its green threads unwound; aborting");
        std::process::abort();
    }
}

impl ScopeData {
    fn increment(&self) {
        if self.running.fetch_add(1, Ordering::Relaxed) > usize::MAX / 2 {
            self.decrement();
            panic!("too many running green threads in greenrt::scope");
        }
    }

    fn decrement(&self) {
        // SeqCst, and the owner's re-check after it stored its waker is
        // SeqCst: one of the two sees the other (see `wait_all`).
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waker = self.owner.lock().take();
            if let Some(w) = waker {
                w.wake_by_value();
            }
        }
    }

    /// Blocks until every scoped green thread's packet is gone.
    ///
    /// It parks through a cancellation (`block_through_cancel`): a
    /// cancelled owner that unwound from here would free what its scoped
    /// green threads borrow while they still run (they unwind only at
    /// their next blocking call, or run on detached after the runtime
    /// stopped). The caller unwinds afterwards.
    fn wait_all(&self) {
        while self.running.load(Ordering::Acquire) != 0 {
            // A green thread parks; an unwinding one (in a destructor)
            // blocks its OS thread, as every greenrt wait does then.
            let green = park::current_green().is_some();
            *self.owner.lock() = Some(Waker::current());
            if self.running.load(Ordering::SeqCst) == 0 {
                break;
            }
            if green {
                park::block_through_cancel(park::BlockReason::Join);
            } else {
                park::block(None, park::BlockReason::Join);
            }
        }
        // Acquire the scoped green threads' last writes (their packets'
        // drops) for whatever the caller reads next.
        std::sync::atomic::fence(Ordering::Acquire);
        drop(self.owner.lock().take());
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a scoped green thread running `f`, which may borrow from
    /// outside the scope. It is joined when the scope ends, if not before
    /// through its handle.
    ///
    /// # Panics
    /// If its stack cannot be mapped (use [`Builder::spawn_scoped`] to get
    /// the error instead).
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        Builder::new()
            .spawn_scoped(self, f)
            .unwrap_or_else(|e| panic!("greenrt: failed to spawn green thread: {e}"))
    }
}

impl Builder {
    /// Spawns a scoped green thread with this configuration (see
    /// [`Scope::spawn`]); errors if its stack cannot be mapped.
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet = Arc::new(ScopedPacket {
            scope: scope.data.clone(),
            result: UnsafeCell::new(None),
            _scope: PhantomData,
        });
        let their_packet = packet.clone();
        let main = move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            // SAFETY: written once, here, before the green thread finishes
            // (see ScopedPacket's Sync); the joiner reads it only after.
            unsafe { *their_packet.result.get() = Some(r) };
            drop(their_packet);
        };
        scope.data.increment();
        let main: Box<dyn FnOnce() + Send + 'scope> = Box::new(main);
        // SAFETY: only the lifetime changes ('scope to 'static; same
        // layout). The closure borrows for 'scope, which outlives the call
        // to `scope` that made the Scope; that call returns (or unwinds)
        // only after `running` is zero, that is after every packet —
        // including the one inside this closure — is dropped, which
        // happens only once the closure has run to its end or been
        // dropped unrun. A green thread whose closure did neither (its
        // runtime abandoned it mid-run, its stack unmapped, at shutdown)
        // keeps its packet forever and the scope waits forever: borrowed
        // data is never freed under it. And the scope's own stack is
        // pinned (leaked, not unmapped, if its owner is abandoned) while
        // the closure may run. So nothing 'scope is used after 'scope ends.
        let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
        let handle = self.spawn_on(&scope.rt, main)?;
        Ok(ScopedJoinHandle { handle, packet })
    }
}

impl<'scope, T> ScopedJoinHandle<'scope, T> {
    /// Waits for the scoped green thread to finish and returns its result:
    /// `Err` with the panic payload if it panicked (the scope then does
    /// not panic for it), or with [`Cancelled`](crate::Cancelled) if it was
    /// cancelled before it ran.
    pub fn join(self) -> thread::Result<T> {
        let underlying = self.handle.join();
        // SAFETY: the green thread has finished (the join above saw its
        // DONE with Acquire), so the single write to `result` — if it ran
        // at all — happened before, and nothing writes it again; `join`
        // takes `self`, so this is the only access from the joiner's side.
        let result = unsafe { (*self.packet.result.get()).take() };
        match (result, underlying) {
            (Some(r), _) => r,
            (None, Err(payload)) => Err(payload),
            (None, Ok(())) => unreachable!("greenrt: a scoped green thread left no result"),
        }
    }

    /// True once the scoped green thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The green thread's id (as `task::current_id` reports it inside).
    pub fn id(&self) -> u64 {
        self.handle.id()
    }
}

impl<T> Drop for ScopedPacket<'_, T> {
    fn drop(&mut self) {
        let unhandled_panic = matches!(self.result.get_mut(), Some(Err(_)));
        // Drop the result (a `T` may borrow for 'scope) before counting
        // out; its destructor must not unwind out of here.
        if catch_unwind(AssertUnwindSafe(|| *self.result.get_mut() = None)).is_err() {
            eprintln!("greenrt: a scoped green thread's result panicked on drop; aborting");
            std::process::abort();
        }
        if unhandled_panic {
            self.scope.a_thread_panicked.store(true, Ordering::Relaxed);
        }
        self.scope.decrement();
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.load(Ordering::Relaxed))
            .field(
                "a_thread_panicked",
                &self.data.a_thread_panicked.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}
