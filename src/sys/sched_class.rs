//! How the kernel schedules sysmon's thread.
//!
//! sysmon is the preemption clock: it must run when its sleep ends. On
//! Linux's EEVDF scheduler a woken thread does not always preempt a
//! CPU-bound thread on its CPU (run-to-parity), and inside a VM an idle
//! vCPU can look "preempted" to the guest, so wake-ups are not moved
//! there. Measured on the 2-vCPU CI machine: sysmon's 200 µs sleeps ended
//! up to 4 ms late behind a green thread it was meant to preempt, and
//! slices at a 1 ms quantum reached 5 ms (p99).
//!
//! So sysmon asks, best effort, for SCHED_FIFO at the lowest real-time
//! priority (allowed to root, CAP_SYS_NICE or a non-zero RLIMIT_RTPRIO).
//! It sleeps almost all the time, so it takes next to no CPU. Failing
//! that, it asks for a short EEVDF slice (Linux ≥ 6.12), which lets its
//! wake-ups preempt sooner. If both are refused, it runs as a normal
//! thread and preemption is merely less punctual.
//!
//! New threads inherit their creator's policy, and sysmon starts spare Ms;
//! every M therefore calls [`reset_inherited`] first.

use std::io;

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER0 fields), for sched_setattr(2).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// For SCHED_OTHER: the requested slice in ns (0: the default).
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// sysmon's requested EEVDF slice when it cannot be real-time.
const SHORT_SLICE_NS: u64 = 100_000;

/// Raises the calling thread (sysmon) as far as the process may.
pub(crate) fn raise_sysmon() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pthread_self is the calling thread; `param` is a valid
    // sched_param for SCHED_FIFO (priority 1 is within 1..=99).
    if unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) } == 0 {
        return;
    }
    let attr = SchedAttr {
        policy: libc::SCHED_OTHER as u32,
        runtime: SHORT_SLICE_NS,
        ..SchedAttr::default()
    };
    // Not permitted either: sysmon stays in the normal class, and
    // preemption is only as prompt as the kernel schedules it.
    let _ = set_attr(attr);
}

/// Puts the calling thread back to the normal class with the default
/// slice if it inherited sysmon's. The nice value is kept, so a user's
/// `nice` still applies; a thread never raised is left alone.
pub(crate) fn reset_inherited() {
    let Ok(attr) = get_attr() else { return };
    let inherited = attr.policy != libc::SCHED_OTHER as u32 || attr.runtime == SHORT_SLICE_NS;
    if inherited {
        let _ = set_attr(SchedAttr {
            policy: libc::SCHED_OTHER as u32,
            nice: attr.nice,
            ..SchedAttr::default()
        });
    }
}

fn get_attr() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is writable and `size` bytes long; pid 0 is the
    // calling thread; flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if r == 0 {
        Ok(attr)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_attr(mut attr: SchedAttr) -> io::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid sched_attr of the size it declares; pid 0
    // is the calling thread; flags 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
