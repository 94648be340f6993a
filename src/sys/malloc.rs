//! The C allocator's tuning for many green threads (glibc only).
//!
//! Every green thread is a heap allocation (its header, closure and
//! join slot), made and freed on the worker threads, which glibc serves
//! from per-thread arenas. An arena's heap grows in steps of `M_TOP_PAD`
//! (128 KiB by default), each an `mprotect`, and is trimmed with
//! `madvise` whenever its free top passes that pad again, so a burst of
//! spawns and exits kept every worker in those system calls and on the
//! address space's lock, stalling the others' page faults: a million
//! green threads sleeping a second took 3.7 s in all, 3.2 s with a
//! 64 MiB pad (`benches/scale.rs`, cell sleep 10^6; spawning them 1.2 s
//! against 0.4 s). A 64 MiB pad (an arena heap's whole size) commits a
//! heap at once and keeps up to that much freed memory at an arena's
//! top for reuse rather than returning it at once; Go's runtime keeps
//! freed memory likewise. Setting a pad also fixes glibc's threshold for
//! serving an allocation with its own `mmap`, which otherwise rises with
//! use up to 32 MiB: left at its 128 KiB start, every large buffer (a
//! 1 MiB copy buffer, a growing `Vec`) would be mapped and unmapped on
//! each use, so it is set to that 32 MiB maximum. Set once, at the first
//! runtime's build, unless the process chose its own (`GLIBC_TUNABLES`
//! naming `top_pad` or `mmap_threshold`).

/// The pad: glibc's largest heap for a thread's arena on 64-bit.
#[cfg(target_env = "gnu")]
const TOP_PAD: libc::c_int = 64 << 20;
/// glibc's own ceiling for its rising mmap threshold on 64-bit.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Tunes the allocator once per process (see the module docs).
pub(crate) fn tune_once() {
    #[cfg(target_env = "gnu")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let chosen = std::env::var_os("GLIBC_TUNABLES").is_some_and(|t| {
                let t = t.to_string_lossy();
                t.contains("top_pad") || t.contains("mmap_threshold")
            });
            if !chosen {
                // SAFETY: mallopt only sets allocator parameters; glibc
                // takes its own lock, and both values are in range.
                unsafe {
                    libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                    libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
                }
            }
        });
    }
}
