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
    /// The `dl_iterate_phdr` callback: records the first object's (the
    /// main program's) executable PT_LOAD segments, then stops.
    ///
    /// # Safety
    /// Only for `dl_iterate_phdr`: `info` must point at a valid
    /// `dl_phdr_info` whose `dlpi_phdr` holds `dlpi_phnum` program headers.
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        _data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: per this function's contract the loader passes a valid,
        // aligned `dl_phdr_info`, alive for the callback; we only read it.
        let info = unsafe { &*info };
        // SAFETY: `dlpi_phdr` points at the object's `dlpi_phnum` program
        // headers, mapped read-only for as long as the object is loaded
        // (the main program: for good); the slice is only read, here.
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
    // SAFETY: `each` has the callback signature dl_iterate_phdr expects and
    // upholds its contract (it only reads the info it is handed); the null
    // `data` is never dereferenced. Ordinary context, not a signal handler.
    unsafe { libc::dl_iterate_phdr(Some(each), std::ptr::null_mut()) };
}

/// Is `ip` in the main executable's code? Async-signal-safe.
pub(super) fn in_main_text(ip: usize) -> bool {
    RANGES.iter().any(|(lo, hi)| {
        let hi = hi.load(Ordering::Acquire);
        hi != 0 && ip >= lo.load(Ordering::Relaxed) && ip < hi
    })
}
