//! Private futex wait and wake on an `AtomicU32`: how Ms sleep and are
//! handed a P (allocation-free and async-signal-safe).

use std::sync::atomic::AtomicU32;

use super::{timespec_from_ns, timespec_ptr};

/// Sleeps while `*word == seen` (or until `timeout_ns`); spurious returns
/// are fine, callers loop.
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
