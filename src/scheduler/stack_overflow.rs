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

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;

use super::guard_hit;

/// Size of each M's alternate signal stack (the handler needs little; the
/// rest is headroom for chained handlers).
const ALT_STACK_SIZE: usize = 64 * 1024;

static INSTALL: Once = Once::new();
static mut OLD_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
static mut OLD_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();

/// Installs the SIGSEGV/SIGBUS handler once per process.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: `sigaction` is given a fully initialised struct; the old
        // actions are written once, here, before the handler can run
        // (Once orders this before any use).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, ptr::addr_of_mut!(OLD_SEGV).cast());
            libc::sigaction(libc::SIGBUS, &sa, ptr::addr_of_mut!(OLD_BUS).cast());
        }
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(name) = guard_hit(addr) {
        report_and_abort(name);
    }
    // Not ours: hand over to the previous disposition.
    // SAFETY: OLD_* were written before this handler was installed.
    let old = unsafe {
        if sig == libc::SIGSEGV {
            ptr::addr_of!(OLD_SEGV).read().assume_init()
        } else {
            ptr::addr_of!(OLD_BUS).read().assume_init()
        }
    };
    if !crate::sys::call_previous_handler(&old, sig, info, ctx) {
        // SIG_DFL or SIG_IGN: restore the default action and return: the
        // faulting instruction runs again and the kernel delivers it.
        // SAFETY: sigaction is async-signal-safe; `sa` is a zeroed
        // (valid) sigaction with SIG_DFL.
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
        // SAFETY: write(2) is async-signal-safe; the slices are valid.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: abort is async-signal-safe and does not return.
    unsafe { libc::abort() }
}

/// An M's alternate signal stack; restores the previous one on drop.
pub(crate) struct AltStack {
    mem: *mut libc::c_void,
    old: libc::stack_t,
}

impl AltStack {
    /// Maps and installs an alternate signal stack for the calling thread.
    pub(crate) fn install() -> Option<AltStack> {
        // SAFETY: anonymous mapping, result checked.
        let mem = unsafe {
            libc::mmap(
                ptr::null_mut(),
                ALT_STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return None;
        }
        let new = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: zeroed stack_t is a valid out-parameter.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `new` describes memory we own for the thread's lifetime.
        if unsafe { libc::sigaltstack(&new, &mut old) } != 0 {
            // SAFETY: the mapping was never installed.
            unsafe { libc::munmap(mem, ALT_STACK_SIZE) };
            return None;
        }
        Some(AltStack { mem, old })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: dropped on the thread that installed it, outside any
        // handler; the previous stack (if any) is still owned by its owner.
        unsafe {
            let old = if self.old.ss_flags & libc::SS_DISABLE != 0 || self.old.ss_sp.is_null() {
                libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                }
            } else {
                self.old
            };
            libc::sigaltstack(&old, ptr::null_mut());
            libc::munmap(self.mem, ALT_STACK_SIZE);
        }
    }
}
