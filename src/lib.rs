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
mod scheduler;
mod splice;
mod stack;
pub mod sync;
mod sys;
pub mod task;
pub mod time;

pub use greenrt_macros::{main, test};
pub use scheduler::{run, Builder, Runtime, DEFAULT_SHUTDOWN_TIMEOUT};
pub use stack::DEFAULT_STACK_SIZE;
pub use task::{spawn, yield_now, Cancelled, JoinHandle};
pub use time::sleep;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
