//! Spawning and joining green threads, scoped or not: `std::thread`'s API
//! for green threads.
//!
//! - [`spawn`] (also `greenrt::spawn`) starts a green thread and returns a
//!   [`JoinHandle`]; [`JoinHandle::join`] waits for its value, a panic
//!   coming back as `Err(payload)`. [`Builder`] names a green thread and
//!   sets its stack size, returning an error instead of panicking when
//!   no stack can be had.
//! - [`scope`] runs green threads that borrow from the caller's stack,
//!   all joined before it returns ([`Scope`], [`ScopedJoinHandle`]).
//! - [`yield_now`] lets the worker run other green threads; [`current_id`]
//!   and [`current_name`] say which green thread is running.
//! - [`task_local!`](crate::task_local) (module [`local`]) declares
//!   per-green-thread values, where `std::thread_local!` would be per OS
//!   thread.
//! - Dropping a runtime cancels its unfinished green threads: each
//!   unwinds from its blocking call with a [`Cancelled`] payload
//!   ([`is_cancelled`] tells a green thread it is being cancelled).
//!
//! ```
//! use greenrt::task;
//!
//! greenrt::run(|| {
//!     let h = task::Builder::new()
//!         .name("worker")
//!         .stack_size(64 * 1024)
//!         .spawn(|| task::current_name())
//!         .unwrap();
//!     assert_eq!(h.join().unwrap().as_deref(), Some("worker"));
//! });
//! ```

mod cancel;
mod cell;
mod join;
pub mod local;
mod scope;

use std::io;
use std::sync::Arc;

pub use cancel::{is_cancelled, Cancelled};
use cell::Cell;
pub use join::JoinHandle;
pub use scope::{scope, Scope, ScopedJoinHandle};

use crate::scheduler::{self, Shared, G};
use crate::stack;

/// Configures a green thread before spawning it, like `std::thread::Builder`.
///
/// ```
/// greenrt::run(|| {
///     let h = greenrt::task::Builder::new()
///         .name("worker")
///         .stack_size(64 * 1024)
///         .spawn(|| greenrt::task::current_name().unwrap().to_string())
///         .unwrap();
///     assert_eq!(h.join().unwrap(), "worker");
/// });
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the runtime's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the green thread (shown in panic and stack-overflow messages).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Stack size in bytes, rounded up to whole pages (at least 16 KiB).
    /// Defaults to the runtime's (256 KiB unless configured).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the green thread on the current runtime.
    ///
    /// Errors if its stack cannot be mapped; the message names the cause,
    /// e.g. the kernel's `vm.max_map_count` limit and how to raise it.
    ///
    /// # Panics
    /// When called outside a green thread (use `Runtime::spawn` there).
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(rt) = scheduler::current_runtime() else {
            panic!("greenrt::spawn called outside a green thread (use greenrt::run, Runtime::block_on or Runtime::spawn)");
        };
        self.spawn_on(&rt, f)
    }

    pub(crate) fn spawn_on<F, T>(self, rt: &Arc<Shared>, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let size = stack::normalize_size(self.stack_size.unwrap_or(rt.cfg.stack_size))?;
        // Where stacks cost kernel mappings, map now so the caller gets the
        // error; otherwise bind one when the green thread first runs.
        let stack = if stack::mappings_per_stack() > 1 {
            Some(scheduler::alloc_stack(rt, size)?)
        } else {
            None
        };
        let id = rt.next_gid();
        let name = self.name.map(String::into_boxed_str);
        // SAFETY: the header is made with the vtable the cell passes.
        let (g, packet) =
            unsafe { Cell::make(|vtable| G::new(rt.clone(), vtable, id, name, size), f) };
        if let Some(stack) = stack {
            // SAFETY: the G was made just above and is not yet in any
            // registry or queue, nor is its cell shared: it has not
            // started, and this function owns it alone (bind_stack's
            // contract).
            unsafe { g.bind_stack(stack) };
        }
        // SAFETY: `packet` is the result slot of `g`'s cell, of type T.
        let handle = unsafe { JoinHandle::new(g.clone(), packet, id) };
        scheduler::register(rt, &g);
        // Into the current P's LIFO slot (as Go does), or the global queue
        // from outside the runtime.
        scheduler::ready(g);
        if rt.is_shutdown() {
            // Spawned after the runtime stopped (from a detached green
            // thread, or a destructor run by shutdown): nothing will run
            // it, so give it up now rather than leave its joiner waiting.
            scheduler::abandon_global_queue(rt);
        }
        Ok(handle)
    }
}

/// Spawns a green thread running `f` on the current runtime.
///
/// # Panics
/// Outside a green thread, or if the stack cannot be mapped (the message
/// says why; use [`Builder::spawn`] to get the error instead).
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // `match`: a closure would lose the caller's location.
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("greenrt: failed to spawn green thread: {e}"),
    }
}

/// Lets other green threads run; the caller goes to the back of its
/// worker's queue.
///
/// # Panics
/// Outside a green thread (use `std::thread::yield_now` there).
#[track_caller]
pub fn yield_now() {
    scheduler::yield_now()
}

/// Id of the running green thread (unique within its runtime), or None
/// outside green threads.
pub fn current_id() -> Option<u64> {
    scheduler::with_current_g(|g| g.map(|g| g.id))
}

/// Name of the running green thread, if it is one and has a name.
pub fn current_name() -> Option<String> {
    scheduler::with_current_g(|g| g.and_then(|g| g.name.as_deref().map(str::to_owned)))
}

/// Wires the calling green thread to its current OS thread, as Go's
/// `runtime.LockOSThread`: until the matching [`unlock_os_thread`], it
/// runs only on this OS thread, and no other green thread runs there.
///
/// For thread-affine work: `setns(2)` into a network namespace, C
/// libraries with thread-local state, and locks keyed by OS thread, such
/// as the `ReentrantLock` behind `std::io::stdout().lock()`. Held across
/// a greenrt blocking call, such a lock is otherwise re-entered by
/// whichever green thread runs next on the same OS thread.
///
/// While locked, greenrt's blocking calls (sleep, channels, locks, joins,
/// sockets) block the OS thread, handing its worker to another OS thread
/// meanwhile, and [`yield_now`] lets the worker run others while the
/// green thread waits on its own OS thread; preemption keeps the OS
/// thread anyway. Calls nest: each lock needs its own unlock. A green
/// thread that finishes locked is unlocked (Go would end the OS thread
/// instead: state it changed, a namespace say, stays with the worker;
/// restore it before returning). Off a green thread this does nothing:
/// an OS thread is always its own.
///
/// ```
/// greenrt::run(|| {
///     greenrt::task::lock_os_thread();
///     let tid = std::thread::current().id();
///     greenrt::sleep(std::time::Duration::from_millis(1));
///     assert_eq!(std::thread::current().id(), tid);
///     greenrt::task::unlock_os_thread();
/// });
/// ```
pub fn lock_os_thread() {
    scheduler::locked::lock()
}

/// Undoes one [`lock_os_thread`]; the green thread is free to move again
/// once every lock is undone. Does nothing if it is not locked, or off a
/// green thread.
pub fn unlock_os_thread() {
    scheduler::locked::unlock()
}
