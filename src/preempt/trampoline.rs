//! The trampoline's runtime half: where a preempted green thread parks.

use std::arch::global_asm;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Stats;
use crate::scheduler::preempt_park;

global_asm!(
    include_str!("../../asm/x86_64/preempt.S"),
    options(att_syntax)
);

extern "C" {
    pub(super) fn greenrt_preempt_trampoline();
    pub(super) fn greenrt_preempt_trampoline_end();
}

/// Bytes the trampoline reserves for XSAVE (read by the assembly).
#[no_mangle]
#[used]
static greenrt_xsave_size: AtomicU64 = AtomicU64::new(0);

static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
static RETAKES: AtomicU64 = AtomicU64::new(0);
static SIGNALS: AtomicU64 = AtomicU64::new(0);
static DIRECT_HANDOFFS: AtomicU64 = AtomicU64::new(0);

/// Process-wide preemption counters (all runtimes).
pub(crate) fn counters() -> Stats {
    Stats {
        preemptions: PREEMPTIONS.load(Ordering::Relaxed),
        retakes: RETAKES.load(Ordering::Relaxed),
        signals: SIGNALS.load(Ordering::Relaxed),
        direct_handoffs: DIRECT_HANDOFFS.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_direct_handoff() {
    DIRECT_HANDOFFS.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn count_retake() {
    RETAKES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_signal() {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Sizes the XSAVE area from CPUID leaf 0xD (the bytes needed for every
/// state component the OS enabled in XCR0: SSE, AVX, AVX-512, ...).
/// False if the OS does not enable XSAVE (then there is no preemption).
fn xsave_area_size() -> Option<u64> {
    // CPUID is available on every x86-64 CPU.
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !osxsave {
        return None;
    }
    // Leaf 0xD exists when OSXSAVE is set.
    let size = std::arch::x86_64::__cpuid_count(0xD, 0).ebx as u64;
    // At least legacy area + header; round up to the 64-byte alignment.
    Some(size.max(576).div_ceil(64) * 64)
}

/// The XSAVE area size in use (async-signal-safe).
pub(super) fn xsave_size() -> usize {
    greenrt_xsave_size.load(Ordering::Relaxed) as usize
}

pub(super) fn init() -> bool {
    match xsave_area_size() {
        Some(size) => {
            greenrt_xsave_size.store(size, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Called by the trampoline on the preempted green thread's stack, with
/// all its registers saved. Returns when the green thread may continue.
///
/// errno is part of the interrupted code's state too (it may have just
/// made a failing call and not yet read errno), but it lives in memory,
/// not in a register: save it here and put it back before returning. The
/// parking path's futex wait sets it (EINTR when another signal without
/// SA_RESTART lands on the parked thread, EAGAIN when the wake-up races
/// with the wait). A preempted green thread keeps its OS thread, so the
/// errno location is the same on the way out; reading and writing it
/// neither allocates nor locks.
#[no_mangle]
extern "C" fn greenrt_preempt_park() {
    // SAFETY: __errno_location returns this thread's errno slot, aligned
    // and valid for the thread's lifetime; only this thread accesses it.
    let errno = unsafe { *libc::__errno_location() };
    let parked = preempt_park();
    // SAFETY: a preempted G keeps its OS thread (doc comment above), so
    // __errno_location returns the same thread's aligned, live errno slot
    // as before the park; only this thread writes it, and nothing between
    // here and the interrupted code's resumption reads it.
    unsafe { *libc::__errno_location() = errno };
    if parked {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
    }
}
