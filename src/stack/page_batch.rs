//! One system call for a page of each stack of a batch.
//!
//! `Stack::new_many` makes a P's cache's worth of stacks at once when
//! green threads start faster than others finish. Each stack needs its
//! guard page, and each will touch its top page as soon as it runs. One
//! `madvise` per stack, or one page fault per stack, is a kernel entry per
//! green thread. `process_madvise(2)` takes a vector of ranges: aimed at
//! the calling process (the `PIDFD_SELF_THREAD_GROUP` sentinel, Linux
//! 6.15+, so no pidfd is opened), it accepts any advice (6.13+), so one
//! call advises a page of up to [`MAX_BATCH`] stacks:
//!
//! - [`install_guards`]: `MADV_GUARD_INSTALL` on each guard page.
//!   Measured on this project's 2-CPU machine: 0.25–0.3 µs saved per
//!   stack mapped (about 2.0 µs against 2.3 µs for map, guard and first
//!   touch).
//! - [`populate_tops`]: `MADV_POPULATE_WRITE` on each top page, so the
//!   green thread's first frames land on memory already there instead of
//!   taking a page fault each (2.2 µs per stack against 2.7–3.2 µs for a
//!   fault, 200 000 stacks of 260 KiB in a C program on that machine: the
//!   exception entry and exit are what the batch saves).
//!
//! Where the kernel refuses (older kernels: EINVAL, EBADF, ENOSYS, or
//! EPERM under a seccomp filter), each function says so once: the caller
//! installs the remaining guards one stack at a time, as before, and the
//! unpopulated top pages are faulted in on first touch, as before.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{GUARD_LEN, MADV_GUARD_INSTALL, PAGE};

/// `PIDFD_SELF_THREAD_GROUP` from linux/pidfd.h: "the calling process"
/// for pidfd-taking calls (not yet in every libc crate).
const PIDFD_SELF_THREAD_GROUP: libc::c_int = -10001;
/// Ranges per `process_madvise` call (the kernel allows `UIO_MAXIOV`,
/// 1024; the vector lives on the caller's stack, which may be a small
/// green-thread stack, so keep it to 1 KiB).
pub(super) const MAX_BATCH: usize = 64;

/// Set once the kernel has refused a batched guard install.
static GUARDS_UNSUPPORTED: AtomicBool = AtomicBool::new(false);
/// Set once the kernel has refused a batched populate.
static POPULATE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Installs the guard page (`GUARD_LEN` bytes) at `base + i * stride` for
/// the first stacks of `0..count`, `MAX_BATCH` at a time, and returns how
/// many (from the first) got theirs: `count` on success, fewer where the
/// kernel stopped or refused (the caller installs the rest one by one,
/// which also reports any real error).
///
/// # Safety
/// Every `[base + i * stride, + GUARD_LEN)` for `i < count` must be the
/// guard page of a stack the caller owns and nothing uses yet: the
/// advice makes those pages fault on access.
pub(super) unsafe fn install_guards(base: *mut u8, stride: usize, count: usize) -> usize {
    let each = Pages {
        base,
        stride,
        offset: 0,
        len: GUARD_LEN,
    };
    // SAFETY: the caller's contract, passed on (offset 0 is the guard).
    unsafe { advise_each(each, count, MADV_GUARD_INSTALL, &GUARDS_UNSUPPORTED) }
}

/// Commits the top page (the highest `PAGE` bytes) of each of the
/// `count` stacks at `base + i * stride`, each `stride` bytes long,
/// `MAX_BATCH` at a time. Best effort: a page the kernel did not commit
/// (refused call, no memory just now) is faulted in on first touch as
/// without this, so the caller needs no answer.
///
/// # Safety
/// Every `[base + i * stride, + stride)` for `i < count` must be a stack
/// mapping the caller owns, readable and writable at its top page.
pub(super) unsafe fn populate_tops(base: *mut u8, stride: usize, count: usize) {
    let each = Pages {
        base,
        stride,
        offset: stride - PAGE,
        len: PAGE,
    };
    // SAFETY: the caller's contract; populating changes nothing a
    // program can see (a fresh anonymous page reads as zeroes either way).
    unsafe {
        advise_each(
            each,
            count,
            libc::MADV_POPULATE_WRITE,
            &POPULATE_UNSUPPORTED,
        )
    };
}

/// The `i`th range is `[base + i * stride + offset, + len)`.
struct Pages {
    base: *mut u8,
    stride: usize,
    offset: usize,
    len: usize,
}

/// Gives `advice` for the first `count` ranges of `each`, `MAX_BATCH`
/// per call, and returns how many (from the first) the kernel advised. A
/// refusal sets `unsupported`, after which no call is tried.
///
/// # Safety
/// Every range must lie in a mapping the caller owns, and `advice` on it
/// must break nothing the caller relies on.
unsafe fn advise_each(
    each: Pages,
    count: usize,
    advice: libc::c_int,
    unsupported: &AtomicBool,
) -> usize {
    let mut done = 0;
    while done < count && !unsupported.load(Ordering::Relaxed) {
        let n = (count - done).min(MAX_BATCH);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        for (k, v) in iov[..n].iter_mut().enumerate() {
            let at = (done + k) * each.stride + each.offset;
            v.iov_base = each.base.wrapping_add(at).cast();
            v.iov_len = each.len;
        }
        // libc: nix has no process_madvise.
        // SAFETY: the vector's `n` entries are ranges the caller vouches
        // for (this function's contract); the kernel only reads the
        // vector, which outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF_THREAD_GROUP,
                iov.as_ptr(),
                n,
                advice,
                0,
            )
        };
        if rc < 0 {
            let refused = matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EINVAL | libc::EBADF | libc::ENOSYS | libc::EPERM)
            );
            if refused {
                unsupported.store(true, Ordering::Relaxed);
            }
            break;
        }
        // The kernel advises the ranges in order and returns the bytes
        // done: a short count means it stopped part-way (the rest are
        // left to the caller).
        let advised = rc as usize / each.len;
        done += advised.min(n);
        if advised < n {
            break;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::{Stack, GUARD_LEN, PAGE};

    /// Held by the tests that read or fake the `*_UNSUPPORTED` flags, so
    /// that one test's simulated refusal does not change what another
    /// sees (new_many populates only the stacks whose guards the batch
    /// installed).
    static FLAGS: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    /// Whether the calling process can read `len` bytes at `addr`: asked
    /// of the kernel (`process_vm_readv` on ourselves), which answers
    /// EFAULT for a guard page instead of raising a signal.
    fn readable(addr: usize, len: usize) -> bool {
        let mut buf = vec![0u8; len];
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: `local` is our own buffer of `len` bytes; the kernel
        // checks the remote range and fails cleanly where it faults.
        let rc = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        rc == len as isize
    }

    /// Whether the page at `addr` is resident (`mincore`).
    fn resident(addr: usize) -> bool {
        let mut vec = 0u8;
        // SAFETY: `addr` is a page-aligned address in a mapping the test
        // owns; the kernel writes one byte into `vec`.
        let rc = unsafe { libc::mincore(addr as *mut libc::c_void, PAGE, &mut vec) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec & 1 == 1
    }

    #[test]
    fn each_stack_of_a_batch_starts_with_only_its_top_page_committed() {
        let _flags = FLAGS.lock();
        let mut stacks = Vec::new();
        let reserve = super::super::StackReserve::new();
        let first =
            Stack::new_many(16 * 1024, 100, &reserve, |s| stacks.push(s)).expect("map stacks");
        stacks.push(first);
        let batches = super::super::guard_mode() == super::super::GuardMode::Madvise;
        if super::POPULATE_UNSUPPORTED.load(Ordering::Relaxed) || !batches {
            eprintln!(
                "skipped: no batch of stacks here (mprotect guards), or \
                 process_madvise(MADV_POPULATE_WRITE) refused"
            );
            return;
        }
        for s in &stacks {
            let top_page = s.top() as usize - PAGE;
            assert!(resident(top_page), "top page {top_page:#x} not committed");
            assert!(
                !resident(top_page - PAGE),
                "the page below the top {:#x} was committed too",
                top_page - PAGE
            );
        }
    }

    /// Maps 100 stacks with `new_many` and checks each one's pages.
    fn check_a_batch() {
        let mut stacks = Vec::new();
        let reserve = super::super::StackReserve::new();
        let first =
            Stack::new_many(16 * 1024, 100, &reserve, |s| stacks.push(s)).expect("map stacks");
        stacks.push(first);
        if super::super::guard_mode() != super::super::GuardMode::Madvise {
            eprintln!(
                "skipped: mprotect guards here (GREENRT_GUARD or an older kernel): no batches"
            );
            return;
        }
        assert_eq!(stacks.len(), 100, "all 100 stacks came back");
        for s in &stacks {
            let (guard, usable) = s.guard();
            assert!(
                !readable(guard, GUARD_LEN),
                "guard page of {guard:#x} is readable"
            );
            assert!(
                readable(usable, PAGE),
                "first usable page {usable:#x} is not"
            );
            assert!(
                readable(s.top() as usize - PAGE, PAGE),
                "top page is not readable"
            );
        }
    }

    #[test]
    fn every_stack_of_a_batch_has_its_guard_and_usable_pages() {
        let _flags = FLAGS.lock();
        check_a_batch();
        if super::GUARDS_UNSUPPORTED.load(Ordering::Relaxed) {
            eprintln!("process_madvise refused here: the guards were installed one by one");
        }
    }

    /// Where the kernel refuses the batched call, the stacks get their
    /// guards one by one (simulated: another test's batch may still go
    /// through the batched path meanwhile, which is as correct).
    #[test]
    fn a_refused_batch_falls_back_to_one_guard_per_stack() {
        let _flags = FLAGS.lock();
        let was = super::GUARDS_UNSUPPORTED.swap(true, Ordering::Relaxed);
        check_a_batch();
        super::GUARDS_UNSUPPORTED.store(was, Ordering::Relaxed);
    }
}
