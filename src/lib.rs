//! greenrt: stackful green threads for Rust on an M:N work-stealing
//! scheduler, Go style.
//!
//! ```
//! let total = greenrt::run(|| {
//!     let (tx, rx) = greenrt::sync::mpsc::channel();
//!     for i in 0..100u64 {
//!         let tx = tx.clone();
//!         greenrt::spawn(move || tx.send(i).unwrap());
//!     }
//!     drop(tx);
//!     rx.iter().sum::<u64>()
//! });
//! assert_eq!(total, 4950);
//! ```
//!
//! Green threads are cheap (a pooled, lazily committed stack each), block
//! with a std-like API (`sleep`, `sync::Mutex`, `sync::mpsc`, `join`) and
//! are multiplexed over a few worker OS threads with work stealing.
//!
//! `std::thread_local!` is per OS thread, and a green thread may move to
//! another OS thread at any blocking runtime call: use [`task_local!`] for
//! per-green-thread state.
//! Locks keyed by OS thread (std's `ReentrantLock`, behind
//! `std::io::stdout().lock()`) are re-entered by the next green thread
//! on that thread if held across a greenrt blocking call: hold them (or
//! other OS-thread state) across one only after
//! [`task::lock_os_thread`], which keeps the green thread on its OS
//! thread, alone, until [`task::unlock_os_thread`].
//!
//! [`macro@main`] and [`macro@test`] run `fn main` or a test as the main
//! green thread of a runtime of its own:
//!
//! ```
//! #[greenrt::main(workers = 2)]
//! fn main() {
//!     assert_eq!(greenrt::spawn(|| 6 * 7).join().unwrap(), 42);
//! }
//! ```
//!
//! A panic on a green thread names it (`green thread 'name' (g42)
//! panicked at ...`) instead of the worker OS thread that ran it; see the
//! README, "API".
//!
//! # Environment variables
//!
//! Checked when a runtime is built: a value a variable does not accept
//! makes [`Builder::build`] fail with `InvalidInput`, naming the variable
//! and the accepted values. Booleans accept `off`, `0`, `false`, `no` and
//! `on`, `1`, `true`, `yes`, in any case.
//!
//! | variable | values | effect |
//! |---|---|---|
//! | `GREENRT_WORKERS` | a positive integer | workers (Ps) when [`Builder::workers`] is not called; default `available_parallelism()` |
//! | `GREENRT_PREEMPT` | boolean | preemption on (default) or off when [`Builder::preemption`] is not called |
//! | `GREENRT_IO_URING` | boolean | off: file operations never use io_uring; on (default): where the kernel allows |
//! | `GREENRT_GUARD` | `mprotect` or `auto` | stack guard pages: guard regions where the kernel has them (`auto`, default), or forced `mprotect` |
//! | `GREENRT_TRACE` | `path[,path]` (`.json`, `.svg`) | records a trace from the runtime's build to its drop, written to each path on drop |
//! | `GREENRT_SCHEDTRACE` | milliseconds | prints a line of scheduler state to stderr at that interval |

// Unsafe hygiene, kept by CI (clippy -D warnings): every unsafe operation
// in its own block with a SAFETY comment, and every public item documented.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("greenrt supports Linux on x86-64 only");

mod context;
mod env;
pub mod fs;
pub mod io;
pub mod net;
mod netpoll;
pub mod os;
pub mod preempt;
mod runtime_metrics;
mod scheduler;
mod splice;
mod stack;
pub mod sync;
mod sys;
pub mod task;
pub mod time;
pub mod trace;

pub use greenrt_macros::{main, test};
pub use runtime_metrics::{metrics, RuntimeMetrics};
pub use scheduler::{run, Builder, Runtime, DEFAULT_SHUTDOWN_TIMEOUT};
pub use stack::DEFAULT_STACK_SIZE;
pub use task::{scope, spawn, yield_now, Cancelled, JoinHandle, Scope, ScopedJoinHandle};
pub use time::{sleep, sleep_until};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
