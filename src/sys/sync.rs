//! The primitives the lock-free protocols are written against: std's
//! (and parking_lot's), or loom's model-checked ones when the crate's
//! unit tests are built with `--cfg loom`, as tokio does for its queues
//! (docs/DESIGN.md, "Model checking").
//!
//! Only the protocols' own state comes from here (the preempted queue,
//! the M hand-off, the idle-P counters, the spare slots, the poll
//! descriptor, a G's park state; `FutexLock` and the futex follow).
//! Statics and everything else keep std's types: loom's atomics are not
//! `const`-constructible and exist only inside a `loom::model` run. So
//! the loom build of the unit tests compiles the whole crate, but only
//! its loom tests can run. Everything else (the library itself, the
//! integration tests, a plain `cargo build` with `--cfg loom`) keeps
//! std's: loom is a dev-dependency, hence `all(test, loom)`.
//!
//! Under loom the atomics are loom's behind a thin wrapper that changes
//! one thing, `store`, to step around two limits of loom 0.7 that
//! otherwise report executions no x86-64 machine (greenrt's only target)
//! can produce; see `model`.

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize,
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::fence;
#[cfg(all(test, loom))]
pub(crate) use model::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize};

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// `parking_lot::Mutex` (the poll descriptor's lock); under loom, the same
/// API over loom's mutex.
#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::Mutex as ParkingLotMutex;

#[cfg(all(test, loom))]
#[derive(Default)]
pub(crate) struct ParkingLotMutex<T>(loom::sync::Mutex<T>);

#[cfg(all(test, loom))]
impl<T> ParkingLotMutex<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap()
    }
}

/// `loom::model` for the loom tests, with at most 5 preemptions per
/// execution unless `LOOM_MAX_PREEMPTIONS` says otherwise. Most tests are
/// exhaustive at any bound (they finish in under a second with 200); the
/// three largest (hand-off with a kick, the preempted queue, the spare
/// slots) take about 10-25 s each at 5, 30-90 s at 6, and do not finish
/// unbounded.
#[cfg(all(test, loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(5);
    }
    b.check(f);
}

/// Loom's atomics with `store` modelled as x86-64 performs it.
///
/// - loom may order a plain store between the read and the write of a
///   concurrent read-modify-write on the same atomic (loom issue 254,
///   open in 0.7.3), so a `swap` can read the value before a store and
///   then overwrite it: the store is lost (a handed P, a wake-up token),
///   which RMW atomicity forbids. A store here is a `swap` with the same
///   ordering, whose place in the modification order loom gets right;
///   nothing reads its result.
/// - loom treats SeqCst loads and stores as AcqRel (its documented
///   limit), so a SeqCst store followed by a SeqCst load of another
///   atomic may be reordered (store buffering), which C++'s single total
///   order over SeqCst accesses forbids. On x86-64 a SeqCst store is an
///   `xchg`, a full barrier; so it is followed here by `fence(SeqCst)`,
///   which loom does model. RMWs and loads are loom's own, so a protocol
///   that needs a fence between an RMW or a weaker store and a later
///   load still fails without it.
#[cfg(all(test, loom))]
mod model {
    use std::ops::Deref;
    use std::sync::atomic::Ordering;

    use loom::sync::atomic as la;

    fn after_store(order: Ordering) {
        if order == Ordering::SeqCst {
            la::fence(Ordering::SeqCst);
        }
    }

    macro_rules! atomic {
        ($name:ident, $t:ty) => {
            #[derive(Debug, Default)]
            pub(crate) struct $name(la::$name);

            impl $name {
                pub(crate) fn new(v: $t) -> $name {
                    $name(la::$name::new(v))
                }

                #[allow(dead_code)] // not every type stores
                pub(crate) fn store(&self, v: $t, order: Ordering) {
                    self.0.swap(v, order);
                    after_store(order);
                }
            }

            impl Deref for $name {
                type Target = la::$name;
                fn deref(&self) -> &la::$name {
                    &self.0
                }
            }
        };
    }

    atomic!(AtomicBool, bool);
    atomic!(AtomicU8, u8);
    atomic!(AtomicU32, u32);
    atomic!(AtomicUsize, usize);

    #[derive(Debug)]
    pub(crate) struct AtomicPtr<T>(la::AtomicPtr<T>);

    impl<T> AtomicPtr<T> {
        pub(crate) fn new(v: *mut T) -> AtomicPtr<T> {
            AtomicPtr(la::AtomicPtr::new(v))
        }

        pub(crate) fn store(&self, v: *mut T, order: Ordering) {
            self.0.swap(v, order);
            after_store(order);
        }
    }

    impl<T> Default for AtomicPtr<T> {
        fn default() -> AtomicPtr<T> {
            AtomicPtr::new(std::ptr::null_mut())
        }
    }

    impl<T> Deref for AtomicPtr<T> {
        type Target = la::AtomicPtr<T>;
        fn deref(&self) -> &la::AtomicPtr<T> {
            &self.0
        }
    }
}
