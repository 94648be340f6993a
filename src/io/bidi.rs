//! `copy_bidirectional` for two sockets: both directions at once, one on
//! the calling thread and one on a helper (a green thread when called from
//! one, else a scoped OS thread), with half-close and failure propagation.

use std::io;
use std::net::Shutdown;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicU8, Ordering};

use super::{copy_sockets, CopyOptions};
use crate::splice::Endpoint;
use crate::task::JoinHandle;

/// Copies a → b and b → a until both directions end. A direction that
/// reaches end of stream shuts down its destination's write half (its peer
/// sees end of stream); one that fails shuts down both sockets entirely,
/// so the other direction ends too, and its error is returned; both then
/// close with a reset.
pub(crate) fn bidirectional(
    a: Endpoint<'_>,
    b: Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<(u64, u64)> {
    // Which direction failed first (1: a → b, 2: b → a): its error is the
    // cause; the other's is a consequence of the shutdown.
    let first_failure = AtomicU8::new(0);
    // Both sockets also close with a reset (see `Endpoint::abort_on_close`):
    // the peer of the side that did not fail may be waiting to send into
    // a window the shut-down socket never reopens.
    let cancel = || {
        a.abort_on_close();
        b.abort_on_close();
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    let a_to_b = || one_way(&a, &b, opts, &first_failure, 1, &cancel);
    let b_to_a = || one_way(&b, &a, opts, &first_failure, 2, &cancel);
    let (ab, ba) = run_both(a_to_b, b_to_a, &cancel)?;
    match (ab, ba) {
        (Ok(ab), Ok(ba)) => Ok((ab, ba)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(e1), Err(e2)) => Err(if first_failure.load(Ordering::Relaxed) == 2 {
            e2
        } else {
            e1
        }),
    }
}

fn one_way(
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
    first_failure: &AtomicU8,
    me: u8,
    cancel: &(impl Fn() + Sync),
) -> io::Result<u64> {
    match copy_sockets(src, dst, opts) {
        Ok(n) => {
            // Half-close. ENOTCONN (the peer is gone already) is no
            // concern of this direction.
            let _ = dst.shutdown(Shutdown::Write);
            Ok(n)
        }
        Err(e) => {
            let _ = first_failure.compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed);
            cancel();
            Err(e)
        }
    }
}

/// Runs `here` on this thread and `there` on a helper thread at the same
/// time; returns (here's result, there's result). `there` may borrow from
/// the caller: the helper is always joined before this returns, also when
/// `here` panics (then `cancel` runs first, to unblock the helper).
fn run_both<'a, T: Send + 'static>(
    here: impl FnOnce() -> T,
    there: impl FnOnce() -> T + Send + 'a,
    cancel: &(impl Fn() + Sync),
) -> io::Result<(T, T)> {
    if !crate::scheduler::in_green_thread() {
        return std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("greenrt-copy".into())
                .spawn_scoped(s, there)?;
            let guard = CancelOnUnwind(cancel);
            let mine = here();
            drop(guard);
            let theirs = helper.join().unwrap_or_else(|p| resume_unwind(p));
            Ok((mine, theirs))
        });
    }
    let there: Box<dyn FnOnce() -> T + Send + 'a> = Box::new(there);
    // SAFETY: only the lifetime changes. The green thread running `there`
    // is joined before this function returns or unwinds (`Joiner` joins in
    // its drop, after `cancel` has made a blocked copy return), so nothing
    // `there` borrows is used after 'a ends. A finished green thread has
    // dropped its closure before `join` returns.
    let there: Box<dyn FnOnce() -> T + Send + 'static> = unsafe { std::mem::transmute(there) };
    let handle = crate::task::Builder::new()
        .name("greenrt-copy")
        .spawn(there)?;
    let mut joiner = Joiner {
        handle: Some(handle),
        cancel,
    };
    let mine = here();
    let theirs = joiner.join();
    Ok((mine, theirs))
}

/// Joins the helper green thread; on unwinding, cancels it first.
struct Joiner<'c, T, C: Fn()> {
    handle: Option<JoinHandle<T>>,
    cancel: &'c C,
}

impl<T, C: Fn()> Joiner<'_, T, C> {
    fn join(&mut self) -> T {
        // Wait with the handle still here: if the wait unwinds (this green
        // thread was cancelled), `drop` still joins the helper, which may
        // be using what the caller's frames lend it.
        self.handle.as_mut().expect("joined once").wait();
        let handle = self.handle.take().expect("joined once");
        handle.join().unwrap_or_else(|p| resume_unwind(p))
    }
}

impl<T, C: Fn()> Drop for Joiner<'_, T, C> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            (self.cancel)();
            let _ = handle.join();
        }
    }
}

/// Runs `cancel` if dropped while unwinding.
struct CancelOnUnwind<'c, C: Fn()>(&'c C);

impl<C: Fn()> Drop for CancelOnUnwind<'_, C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::run_both;
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Records, when dropped, whether the helper had finished by then.
    struct CheckHelperDone(Arc<AtomicBool>, Arc<AtomicU8>);

    impl Drop for CheckHelperDone {
        fn drop(&mut self) {
            self.1
                .store(if self.0.load(SeqCst) { 1 } else { 2 }, SeqCst);
        }
    }

    /// The caller of `run_both` is cancelled (its runtime drops) while it
    /// waits for the helper: it must still not unwind past `run_both`
    /// before the helper is done, since the helper borrows its frames.
    #[test]
    fn cancelled_caller_of_run_both_waits_for_its_helper() {
        let rt = crate::Builder::new().workers(2).build().unwrap();
        let helper_done = Arc::new(AtomicBool::new(false));
        let verdict = Arc::new(AtomicU8::new(0));
        let waiting = Arc::new(AtomicBool::new(false));
        let (done, v, w) = (helper_done.clone(), verdict.clone(), waiting.clone());
        rt.block_on(move || {
            crate::spawn(move || {
                let _check = CheckHelperDone(done.clone(), v);
                let borrowed = &done;
                let _ = run_both(
                    || w.store(true, SeqCst),
                    move || {
                        // Busy, never blocking: cancellation cannot stop it.
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_millis(300) {
                            std::hint::spin_loop();
                        }
                        borrowed.store(true, SeqCst);
                    },
                    &|| {},
                );
            });
        });
        while !waiting.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(rt);
        let t = Instant::now();
        while verdict.load(SeqCst) == 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            verdict.load(SeqCst),
            1,
            "the cancelled caller unwound past run_both while its helper still ran"
        );
    }
}
