//! Private futex wait and wake on an `AtomicU32`: how Ms sleep and are
//! handed a P (allocation-free and async-signal-safe).

#[cfg(not(all(test, loom)))]
use super::sync::AtomicU32;
#[cfg(not(all(test, loom)))]
use super::{timespec_from_ns, timespec_ptr};

#[cfg(all(test, loom))]
pub(crate) use model::{futex_wait, futex_wake};

/// Sleeps while `*word == seen` (or until `timeout_ns`); spurious returns
/// are fine, callers loop.
#[cfg(not(all(test, loom)))]
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, timeout_ns: Option<u64>) {
    let ts = timeout_ns.map(timespec_from_ns);
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word`, which the
    // caller keeps alive for the call; the timeout pointer is null or
    // points at `ts`, alive until the call returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            timespec_ptr(&ts),
        );
    }
}

/// Wakes one thread sleeping on `word`.
#[cfg(not(all(test, loom)))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it reads and
    // writes no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// The futex under loom, where a syscall would block the whole model (its
/// threads are coroutines on one OS thread). It keeps the kernel's
/// contract, which the protocols rely on: the check of `*word == seen`
/// and going to sleep are atomic with respect to `futex_wake` (the kernel
/// does both under its hash-bucket lock). Here one mutex stands for every
/// bucket and a condvar for the sleepers; a wake wakes them all, which
/// only adds spurious wake-ups (every caller loops and re-checks). So a
/// wake-up the protocol loses leaves the waiter asleep for good, and loom
/// reports the deadlock; a spurious-wake-only model (return at once) would
/// hide it. A wait with a timeout returns (after a yield) instead of
/// sleeping: the timeout may expire at any moment, and callers re-check.
#[cfg(all(test, loom))]
mod model {
    use std::sync::atomic::Ordering;

    use loom::sync::{Condvar, Mutex};

    use crate::sys::sync::AtomicU32;

    loom::lazy_static! {
        static ref FUTEX: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, timeout_ns: Option<u64>) {
        let (lock, sleepers) = &*FUTEX;
        let bucket = lock.lock().unwrap();
        // The kernel reads the word after a full barrier.
        if word.load(Ordering::SeqCst) != seen {
            return;
        }
        if timeout_ns.is_some() {
            drop(bucket);
            loom::thread::yield_now();
            return;
        }
        drop(sleepers.wait(bucket).unwrap());
    }

    pub(crate) fn futex_wake(_word: &AtomicU32) {
        let (lock, sleepers) = &*FUTEX;
        let _bucket = lock.lock().unwrap();
        sleepers.notify_all();
    }
}
