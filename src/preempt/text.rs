//! Where the main executable's code lies.
//!
//! Only code of the main executable is preempted: libc, ld.so, the vDSO
//! and other shared objects have locks, caches and errno that are not ours
//! to interrupt. The ranges are read once (dl_iterate_phdr, ordinary
//! context) and then only read by the signal handler.

use std::sync::atomic::{AtomicUsize, Ordering};

const MAX_RANGES: usize = 8;

static RANGES: [(AtomicUsize, AtomicUsize); MAX_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_RANGES];

/// Records the executable segments of the main program. Idempotent.
pub(super) fn init() {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        _data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info for each object; the
        // first one reported is the main program.
        let info = unsafe { &*info };
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let mut n = 0;
        for ph in phdrs {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && n < MAX_RANGES {
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                RANGES[n].0.store(start, Ordering::Relaxed);
                RANGES[n]
                    .1
                    .store(start + ph.p_memsz as usize, Ordering::Release);
                n += 1;
            }
        }
        1 // stop after the main program
    }
    // SAFETY: the callback only reads what the loader hands it.
    unsafe { libc::dl_iterate_phdr(Some(each), std::ptr::null_mut()) };
}

/// Is `ip` in the main executable's code? Async-signal-safe.
pub(super) fn in_main_text(ip: usize) -> bool {
    RANGES.iter().any(|(lo, hi)| {
        let hi = hi.load(Ordering::Acquire);
        hi != 0 && ip >= lo.load(Ordering::Relaxed) && ip < hi
    })
}
