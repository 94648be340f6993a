//! Reporting a green thread's stack overflow.
//!
//! A green thread that runs off the bottom of its stack touches the guard
//! page and gets SIGSEGV. On that (exhausted) stack no handler could run, so
//! every M has its own alternate signal stack. The handler checks whether
//! the fault address lies in the guard page of the green thread running on
//! this M; if so it prints `green thread '<name>' has overflowed its stack`
//! and aborts, as std does for OS threads. Any other fault goes to the
//! handler that was installed before greenrt's (std's, usually), or to the
//! default action.

use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};
use std::sync::{Once, OnceLock};

use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::guard_hit;

/// Size of each M's alternate signal stack (the handler needs little; the
/// rest is headroom for chained handlers).
const ALT_STACK_SIZE: usize = 64 * 1024;

static INSTALL: Once = Once::new();
/// The dispositions ours replaced, each set just after its install (a
/// fault landing in between finds it empty and gets the default action);
/// the handler reads them with an atomic load, never waits.
static OLD_SEGV: OnceLock<SigAction> = OnceLock::new();
static OLD_BUS: OnceLock<SigAction> = OnceLock::new();

/// Installs the SIGSEGV/SIGBUS handler once per process.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        let sa = SigAction::new(
            SigHandler::SigAction(handler),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
            SigSet::empty(),
        );
        for (sig, old) in [(Signal::SIGSEGV, &OLD_SEGV), (Signal::SIGBUS, &OLD_BUS)] {
            // SAFETY: `handler` has the SA_SIGINFO signature and does only
            // async-signal-safe work (atomics, write(2), abort, sigaction);
            // SA_ONSTACK runs it on the alternate stack each M installs.
            // Faults that are not guard-page hits go on to the disposition
            // stored here.
            if let Ok(prev) = unsafe { signal::sigaction(sig, &sa) } {
                let _ = old.set(prev);
            }
        }
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid, aligned
    // siginfo_t, alive until we return; for SIGSEGV/SIGBUS si_addr is the
    // union member the kernel filled in (the faulting address).
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(name) = guard_hit(addr) {
        report_and_abort(name);
    }
    // Not ours: hand over to the previous disposition.
    let old = if sig == libc::SIGSEGV {
        OLD_SEGV.get()
    } else {
        OLD_BUS.get()
    };
    if !old.is_some_and(|old| crate::sys::call_previous_handler(old, sig, info, ctx)) {
        // SIG_DFL or SIG_IGN (or none recorded yet): restore the default
        // action and return: the faulting instruction runs again and the
        // kernel delivers it.
        // Raw libc, not nix: this is the handler body, kept as it was.
        // SAFETY: sigaction(2) is async-signal-safe; all-zero is a valid
        // sigaction (empty mask, no flags) and `sa_sigaction` is set to
        // SIG_DFL; a null old-action pointer asks for nothing back.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, ptr::null_mut());
        }
    }
}

/// Writes the overflow message with write(2) only, then aborts.
fn report_and_abort(name: &[u8]) -> ! {
    let parts: [&[u8]; 3] = [
        b"\ngreen thread '",
        name,
        b"' has overflowed its stack\nfatal runtime error: stack overflow, aborting\n",
    ];
    for part in parts {
        // SAFETY: write(2) is async-signal-safe; `part` is a live slice,
        // valid for reads of `part.len()` bytes; fd 2 is only written.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: abort(3) has no preconditions, is async-signal-safe and
    // does not return.
    unsafe { libc::abort() }
}

/// An M's alternate signal stack; restores the previous one on drop.
pub(crate) struct AltStack {
    mem: NonNull<libc::c_void>,
    old: libc::stack_t,
}

impl AltStack {
    /// Maps and installs an alternate signal stack for the calling thread.
    pub(crate) fn install() -> Option<AltStack> {
        let len = NonZeroUsize::new(ALT_STACK_SIZE).expect("non-zero");
        // SAFETY: a fresh anonymous private mapping with no address hint
        // cannot alias or replace any existing memory.
        let mem = unsafe {
            mman::mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .ok()?;
        let new = libc::stack_t {
            ss_sp: mem.as_ptr(),
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: stack_t is plain integers and pointers, for which
        // all-zero is a valid value; it is only an out-parameter here.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // libc, not nix: nix 0.29 has no sigaltstack wrapper.
        // SAFETY: `new` describes the ALT_STACK_SIZE bytes just mapped,
        // owned by this AltStack until its drop uninstalls them first;
        // `old` is a valid, writable stack_t.
        if unsafe { libc::sigaltstack(&new, &mut old) } != 0 {
            // SAFETY: `mem` is the mapping made above, of ALT_STACK_SIZE
            // bytes, never installed nor referenced anywhere else.
            let _ = unsafe { mman::munmap(mem, ALT_STACK_SIZE) };
            return None;
        }
        Some(AltStack { mem, old })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let old = if self.old.ss_flags & libc::SS_DISABLE != 0 || self.old.ss_sp.is_null() {
            libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            }
        } else {
            self.old
        };
        // libc, not nix: nix 0.29 has no sigaltstack wrapper.
        // SAFETY: dropped on the thread that installed it, outside any
        // handler (so not running on this stack); `old` is either disabled
        // or the previous stack, which its owner still keeps mapped.
        unsafe { libc::sigaltstack(&old, ptr::null_mut()) };
        // SAFETY: `self.mem` is this AltStack's own ALT_STACK_SIZE-byte
        // mapping, no longer the thread's signal stack (just replaced), and
        // nothing else points into it.
        let _ = unsafe { mman::munmap(self.mem, ALT_STACK_SIZE) };
    }
}
