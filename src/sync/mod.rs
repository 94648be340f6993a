//! Green-aware synchronisation: contention parks the green thread, never
//! its worker. Every type also works from plain OS threads, and between
//! green and OS threads.
//!
//! The names and signatures follow `std::sync`, so code moves over by
//! changing an import:
//!
//! - [`Mutex`], [`RwLock`] (writer-preferring: a waiting writer holds new
//!   readers back), [`Condvar`] and [`Barrier`], poisoning included;
//! - [`mpsc`]: `channel`, `sync_channel` and their error types, plus
//!   `Receiver::recv_deadline`;
//! - [`WaitGroup`], Go's: wait until a count of tasks is done.
//!
//! ```
//! use std::sync::Arc;
//! use greenrt::sync::{Condvar, Mutex};
//!
//! greenrt::run(|| {
//!     let ready = Arc::new((Mutex::new(false), Condvar::new()));
//!     let waiter = {
//!         let ready = Arc::clone(&ready);
//!         greenrt::spawn(move || {
//!             let (lock, cvar) = &*ready;
//!             let mut ready = lock.lock().unwrap();
//!             while !*ready {
//!                 ready = cvar.wait(ready).unwrap(); // parks the green thread
//!             }
//!         })
//!     };
//!     *ready.0.lock().unwrap() = true;
//!     ready.1.notify_one();
//!     waiter.join().unwrap();
//! });
//! ```
//!
//! A green thread shut down by its runtime while it waits unwinds out of
//! the wait and releases what it holds, without poisoning.

mod barrier;
mod condvar;
pub mod mpsc;
mod mutex;
mod rwlock;
mod waitgroup;
pub(crate) mod waitq;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use waitgroup::WaitGroup;
