//! Go's `sync.WaitGroup`: wait for a group of green threads to finish.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::waitq::WaitQueue;

/// Counts outstanding work; `wait` blocks until the count is zero.
/// Clones share the same counter.
///
/// ```
/// greenrt::run(|| {
///     let wg = greenrt::sync::WaitGroup::new();
///     for _ in 0..10 {
///         wg.add(1);
///         let wg = wg.clone();
///         greenrt::spawn(move || wg.done());
///     }
///     wg.wait();
/// });
/// ```
#[derive(Clone, Default)]
pub struct WaitGroup {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    queue: WaitQueue,
}

impl WaitGroup {
    /// A new group with a count of zero (`wait` returns at once).
    pub fn new() -> WaitGroup {
        WaitGroup::default()
    }

    /// Adds `n` to the count.
    pub fn add(&self, n: usize) {
        self.inner.count.fetch_add(n, Ordering::AcqRel);
    }

    /// Subtracts one; at zero, wakes every waiter.
    ///
    /// # Panics
    /// If the count is already zero ("more `done` than `add`").
    pub fn done(&self) {
        let prev = self
            .inner
            .count
            // SeqCst: the wait queue's no-waiter check relies on it.
            .fetch_update(Ordering::SeqCst, Ordering::Acquire, |c| c.checked_sub(1))
            .unwrap_or_else(|_| {
                panic!("greenrt::sync::WaitGroup::done called more times than add")
            });
        if prev == 1 {
            self.inner.queue.wake_all();
        }
    }

    /// Blocks until the count is zero.
    pub fn wait(&self) {
        let count = &self.inner.count;
        while count.load(Ordering::Acquire) != 0 {
            self.inner
                .queue
                .wait_if(|| count.load(Ordering::SeqCst) != 0, None);
        }
    }

    /// The current count.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
