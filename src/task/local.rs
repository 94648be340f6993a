//! Green-thread-local storage.
//!
//! `std::thread_local!` is per OS thread, and a green thread may continue
//! on another OS thread after any blocking runtime call. Values declared
//! with [`task_local!`](crate::task_local) belong to the green thread
//! instead: each green thread sees its own, lazily initialised copy, which
//! is dropped when the green thread finishes.

use std::any::Any;

use crate::scheduler::{self, G};

/// The locals of one green thread: (key address, value) pairs. Green
/// threads use few locals, so a small vector beats a hash map.
#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<(usize, Box<dyn Any>)>,
}

/// A key for green-thread-local values; made by [`task_local!`](crate::task_local).
pub struct LocalKey<T: 'static> {
    #[doc(hidden)]
    pub init: fn() -> T,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Runs `f` with a reference to this green thread's value, creating it
    /// on first use.
    ///
    /// # Panics
    /// Outside a green thread, or when `f` (re)enters `with` on the same
    /// key while the value is being created.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const LocalKey<T> as usize;
        let value: *const T = scheduler::with_current_g(|g| {
            let g =
                g.unwrap_or_else(|| panic!("greenrt::task_local accessed outside a green thread"));
            // SAFETY: only the running G touches its own locals, and no
            // reference into the map outlives this closure except the
            // boxed value's address, which is stable until the G exits.
            let map = unsafe { &mut *g.locals.get() };
            map.entries
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.downcast_ref::<T>().expect("key type") as *const T)
        })
        .unwrap_or_else(|| {
            let v: Box<dyn Any> = Box::new((self.init)());
            scheduler::with_current_g(|g| {
                let g = g.expect("still on the green thread");
                // SAFETY: `g` is the running G, and only it touches its own
                // `locals`; no other reference into the map is live (the
                // lookup's ended with its closure, and `init`, which may
                // itself call `with`, ran before this one). The `&mut` ends
                // with this closure; `ptr` points into the Box, not the Vec.
                let map = unsafe { &mut *g.locals.get() };
                let ptr = v.downcast_ref::<T>().expect("key type") as *const T;
                map.entries.push((key, v));
                ptr
            })
        });
        // SAFETY: the boxed value lives until the G exits (entries are
        // never removed before), and the G is running this code.
        f(unsafe { &*value })
    }
}

/// Drops the locals of `g`, the running green thread (at its exit, on
/// its stack). A destructor may initialise another local; those are
/// dropped too, in further rounds, as std does for thread-locals. The
/// caller passes its own header: looking the G up through the M would
/// cost a thread-local access per round for every exiting green thread.
///
/// # Safety
/// `g` must be the green thread running this code, with no `with`
/// borrow of its locals live.
pub(crate) unsafe fn clear(g: &G) {
    loop {
        // SAFETY: `g` is the running G (the caller's contract), so only it
        // touches its `locals`, and no `with` borrow is live; the `&mut`
        // ends with this statement, before any destructor runs (a
        // destructor's own `with` takes a fresh borrow).
        let entries = std::mem::take(unsafe { &mut (*g.locals.get()).entries });
        if entries.is_empty() {
            return;
        }
        drop(entries);
    }
}

/// Declares green-thread-local values, like `std::thread_local!`.
///
/// ```
/// use std::cell::Cell;
/// greenrt::task_local! {
///     static COUNTER: Cell<u32> = Cell::new(0);
/// }
/// greenrt::run(|| {
///     COUNTER.with(|c| c.set(c.get() + 1));
///     let other = greenrt::spawn(|| COUNTER.with(|c| c.get()));
///     assert_eq!(other.join().unwrap(), 0); // each green thread has its own
///     assert_eq!(COUNTER.with(|c| c.get()), 1);
/// });
/// ```
#[macro_export]
macro_rules! task_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr;)+) => {
        $(
            $(#[$attr])*
            $vis static $name: $crate::task::local::LocalKey<$t> = {
                fn __init() -> $t { $init }
                $crate::task::local::LocalKey::new(__init)
            };
        )+
    };
}
