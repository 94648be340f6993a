//! Green-aware synchronisation: contention parks the green thread, never
//! its worker. Every type also works from plain OS threads, and between
//! green and OS threads.
//!
//! The names and signatures follow `std::sync`, so code moves over by
//! changing an import.

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
