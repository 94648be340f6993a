//! Chaining to the signal disposition that was installed before ours.

use nix::sys::signal::{SigAction, SigHandler};

/// Calls the handler `old` describes for a signal that is not greenrt's
/// (SA_SIGINFO or plain). Returns false, calling nothing, when `old` is
/// SIG_DFL or SIG_IGN: what the default action means is the caller's to
/// decide. Async-signal-safe: `SigAction::handler` only decodes the stored
/// `sa_sigaction` and `sa_flags` (no allocation, lock or system call).
pub(crate) fn call_previous_handler(
    old: &SigAction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    uctx: *mut libc::c_void,
) -> bool {
    // nix picks the one- or three-argument form from SA_SIGINFO, as
    // sigaction(2) defines it (the two share storage).
    match old.handler() {
        SigHandler::SigDfl | SigHandler::SigIgn => false,
        SigHandler::SigAction(f) => {
            f(sig, info, uctx);
            true
        }
        SigHandler::Handler(f) => {
            f(sig);
            true
        }
    }
}
