//! The SIGURG handler: decide, and rewrite the interrupted context.
//!
//! Async-signal-safe only: it reads thread-local and atomic state, writes
//! the ucontext and the interrupted stack, and (for a blocking hand-off)
//! gives the P to a spare M through atomics and a futex.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;

use super::{text, trampoline};
use crate::scheduler;

/// SysV red zone: 128 bytes below rsp that leaf code may use unannounced.
const RED_ZONE: usize = 128;
/// Stack the trampoline and the parking path need below the red zone,
/// beyond the XSAVE area: saved GPRs, alignment, and Rust frames.
const PARK_STACK: usize = 16 * 1024;

static INSTALL: Once = Once::new();
static mut INSTALLED: bool = false;
static mut OLD_URG: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();

/// Installs the SIGURG handler once per process, remembering the previous
/// one: SIGURGs greenrt did not send are passed on to it.
pub(super) fn install() -> bool {
    INSTALL.call_once(|| {
        text::init();
        // SAFETY: a fully initialised sigaction; OLD_URG is written here,
        // once, before our handler can run (Once orders it).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigurg as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            INSTALLED = libc::sigaction(libc::SIGURG, &sa, ptr::addr_of_mut!(OLD_URG).cast()) == 0;
        }
    });
    // SAFETY: written once inside call_once, which has completed.
    unsafe { INSTALLED }
}

extern "C" fn on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    // SAFETY: getpid is async-signal-safe.
    let from_us = code == libc::SI_TKILL && pid == unsafe { libc::getpid() };
    let target = if from_us {
        scheduler::signal_target()
    } else {
        None
    };
    let Some(target) = target else {
        return forward(sig, info, uctx);
    };
    let level = target.take_request();
    if level == 0 {
        return forward(sig, info, uctx);
    }
    // SAFETY: as above; the ucontext is ours to modify until we return.
    let uc = unsafe { &mut *(uctx as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let rsp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize;
    if let Some(room_floor) = target.preemptible_stack(rsp) {
        let tramp = trampoline::greenrt_preempt_trampoline as *const () as usize;
        let tramp_end = trampoline::greenrt_preempt_trampoline_end as *const () as usize;
        let needed = RED_ZONE + 8 + trampoline::xsave_size() + PARK_STACK;
        let in_trampoline = rip >= tramp && rip < tramp_end;
        if text::in_main_text(rip) && !in_trampoline && rsp.saturating_sub(needed) > room_floor {
            // Make the interrupted code "call" the trampoline, leaving its
            // red zone alone: push rip below it and enter the trampoline,
            // which returns with `ret $128`.
            let new_sp = rsp - RED_ZONE - 8;
            // SAFETY: new_sp lies on the G's own stack, above its guard
            // (checked), below everything the interrupted code may use.
            unsafe { ptr::write(new_sp as *mut u64, rip as u64) };
            uc.uc_mcontext.gregs[libc::REG_RSP as usize] = new_sp as i64;
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = tramp as i64;
            return;
        }
    }
    if level >= scheduler::RETAKE && target.retake_p() {
        trampoline::count_retake();
    }
}

/// Hands a SIGURG that is not ours to the handler installed before us.
fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: OLD_URG was written before this handler was installed.
    let old = unsafe { ptr::addr_of!(OLD_URG).read().assume_init() };
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        return; // SIGURG's default action is to ignore it
    }
    if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: installed as an SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig, info, uctx);
    } else {
        // SAFETY: a plain handler takes the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig);
    }
}
