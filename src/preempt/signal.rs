//! The SIGURG handler: decide, and rewrite the interrupted context.
//!
//! Async-signal-safe only: it reads thread-local and atomic state, writes
//! the ucontext and the interrupted stack, and (for a blocking hand-off)
//! gives the P to a spare M through atomics and a futex.

use std::ptr;
use std::sync::OnceLock;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::{text, trampoline};
use crate::scheduler;

/// Tag in the sigval of sysmon's SIGURGs, so the handler recognises its
/// own signals and passes every other SIGURG on.
pub(super) const PREEMPT_TAG: usize = 0x6772_6565_6e72_7421;

/// Sends SIGURG to thread `tid` of this process, tagged as greenrt's
/// (rt_tgsigqueueinfo with SI_QUEUE and `PREEMPT_TAG`).
pub(crate) fn send_preempt_signal(tid: libc::pid_t) {
    // siginfo_t for SI_QUEUE on x86-64: signo, errno, code, padding, then
    // pid (16), uid (20), sigval (24).
    let mut info = [0u64; 16];
    // SAFETY: getpid/getuid have no preconditions.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    info[0] = libc::SIGURG as u32 as u64;
    info[1] = (libc::SI_QUEUE as u32 as u64) & 0xffff_ffff;
    info[2] = (pid as u32 as u64) | ((uid as u64) << 32);
    info[3] = PREEMPT_TAG as u64;
    // SAFETY: a fully initialised 128-byte siginfo for our own process.
    unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            libc::SIGURG,
            info.as_ptr(),
        );
    }
}

/// SysV red zone: 128 bytes below rsp that leaf code may use unannounced.
const RED_ZONE: usize = 128;
/// Stack the trampoline and the parking path need below the red zone,
/// beyond the XSAVE area: saved GPRs, alignment, and Rust frames.
const PARK_STACK: usize = 16 * 1024;

/// Whether the handler got installed (decided once per process).
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// The SIGURG disposition ours replaced. Set just after the install, so a
/// foreign SIGURG landing in between finds it empty (SIGURG's default is
/// to ignore it); the handler reads it with an atomic load, never waits.
static OLD_URG: OnceLock<SigAction> = OnceLock::new();

/// Installs the SIGURG handler once per process, remembering the previous
/// one: SIGURGs greenrt did not send are passed on to it.
pub(super) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        text::init();
        let sa = SigAction::new(
            SigHandler::SigAction(on_sigurg),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `on_sigurg` has the SA_SIGINFO signature and does only
        // async-signal-safe work (module docs); SA_ONSTACK gives it each
        // M's alternate stack. Foreign SIGURGs keep reaching the previous
        // disposition, which we store right away for `forward`.
        match unsafe { signal::sigaction(Signal::SIGURG, &sa) } {
            Ok(old) => {
                let _ = OLD_URG.set(old);
                true
            }
            Err(_) => false,
        }
    })
}

extern "C" fn on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let _critical = super::Critical::enter();
    // SAFETY: the kernel passes valid siginfo and ucontext pointers.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    // SAFETY: getpid is async-signal-safe.
    let from_us = code == libc::SI_QUEUE
        && pid == unsafe { libc::getpid() }
        // SAFETY: SI_QUEUE signals carry a sigval.
        && unsafe { (*info).si_value() }.sival_ptr as usize == PREEMPT_TAG;
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
        return; // ours, but stale: the G it was meant for is gone
    }
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid, aligned
    // ucontext_t in this thread's signal frame, alive until we return and
    // referenced by nothing else meanwhile; what we write to it takes
    // effect at sigreturn.
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
            target.enter_preemption();
            uc.uc_mcontext.gregs[libc::REG_RSP as usize] = new_sp as i64;
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = tramp as i64;
            return;
        }
    }
    if level >= scheduler::RETAKE && in_syscall(uc) && target.retake_p() {
        trampoline::count_retake();
    }
}

/// Was the thread in a system call when the signal came (not computing in
/// libc or the vDSO)? Only then is its P retaken: a computing green thread
/// is preempted when a signal lands in its own code. When a signal
/// interrupts a blocking syscall, the kernel either rewinds rip to the
/// `syscall` instruction (to restart it) or returns -EINTR just after it.
/// A call the kernel does not interrupt (a read of a regular file or of
/// /dev/zero) runs to its end with the signal pending, which is then
/// delivered just after the `syscall` instruction whatever the call
/// returned: the thread spent the time since sysmon's request (at least
/// the grace period, at the RETAKE level) in the kernel, or in calls
/// back to back, and is as stuck for its P as a blocked one.
fn in_syscall(uc: &libc::ucontext_t) -> bool {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let offset = rip % 4096;
    // SAFETY: rip is where the thread was executing, so its page is mapped
    // and readable code (greenrt assumes no execute-only mappings);
    // offset <= 4094 keeps both bytes in that page; read_unaligned needs no
    // alignment.
    if offset <= 4094 && unsafe { ptr::read_unaligned(rip as *const [u8; 2]) } == SYSCALL {
        return true;
    }
    if offset < 2 {
        return false;
    }
    // SAFETY: offset >= 2, so rip - 2 and rip - 1 lie in rip's own page,
    // which is mapped and readable (the thread was executing there);
    // read_unaligned needs no alignment.
    unsafe { ptr::read_unaligned((rip - 2) as *const [u8; 2]) == SYSCALL }
}

/// Hands a SIGURG that is not ours to the handler installed before us.
fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SIGURG's default action is to ignore it: nothing to do for DFL/IGN,
    // nor before `install` has stored the previous disposition.
    if let Some(old) = OLD_URG.get() {
        crate::sys::call_previous_handler(old, sig, info, uctx);
    }
}
