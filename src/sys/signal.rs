//! Chaining to the signal disposition that was installed before ours.
//!
//! Takes the raw `libc::sigaction`, not nix's `SigAction`: the SIGSEGV/SIGBUS
//! install (scheduler/stack_overflow.rs) still stores raw ones, and nix
//! offers no conversion from `libc::sigaction` to `SigAction`.

/// Calls the handler `old` describes for a signal that is not greenrt's
/// (SA_SIGINFO or plain). Returns false, calling nothing, when `old` is
/// SIG_DFL or SIG_IGN: what the default action means is the caller's to
/// decide. Async-signal-safe.
pub(crate) fn call_previous_handler(
    old: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    uctx: *mut libc::c_void,
) -> bool {
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        return false;
    }
    if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: `old` is a disposition the kernel reported; with
        // SA_SIGINFO set, sigaction(2) defines `sa_sigaction` as the
        // three-argument handler, and it is neither DFL nor IGN (checked
        // above), so it is the address of such a function: usize and an
        // `extern "C" fn` have the same size on x86-64.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig, info, uctx);
    } else {
        // SAFETY: `old` is a disposition the kernel reported; without
        // SA_SIGINFO, `sa_sigaction` holds the plain one-argument
        // `sa_handler` (the two share storage), neither DFL nor IGN
        // (checked above), so the address of such a function.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig);
    }
    true
}
