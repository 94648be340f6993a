//! Chaining to the signal disposition that was installed before ours.

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
        // SAFETY: with SA_SIGINFO set, `sa_sigaction` was installed as a
        // three-argument handler (sigaction(2)), and neither DFL nor IGN.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig, info, uctx);
    } else {
        // SAFETY: without SA_SIGINFO, `sa_sigaction` holds a plain
        // one-argument `sa_handler` (the two share storage).
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig);
    }
    true
}
