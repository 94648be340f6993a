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
    /// Keys whose initialiser is running: one that uses its own key
    /// again panics (see `LocalKey::with`) rather than make a second
    /// value that hides the first.
    initialising: Vec<usize>,
}

/// Runs `f` on the running green thread's locals. `f` must not call
/// anything that could use them (no `with`, no initialiser, no
/// destructor), so its `&mut` is the only reference into the map.
fn with_map<R>(f: impl FnOnce(&mut LocalMap) -> R) -> R {
    scheduler::with_current_g(|g| {
        let g = g.unwrap_or_else(|| panic!("greenrt::task_local accessed outside a green thread"));
        // SAFETY: only the running G touches its own locals, and the
        // caller's `f` makes no other reference into them while it runs.
        f(unsafe { &mut *g.locals.get() })
    })
}

/// Takes the key off the list of keys being initialised when the
/// initialiser returns or unwinds.
struct Initialising(usize);

impl Drop for Initialising {
    fn drop(&mut self) {
        with_map(|map| map.initialising.retain(|&k| k != self.0));
    }
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
    /// Outside a green thread, or when the value's initialiser uses the
    /// same key (recursive initialisation; std's thread-locals may instead
    /// run the initialiser again).
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const LocalKey<T> as usize;
        let (found, recursive) = with_map(|map| {
            let found = map
                .entries
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.downcast_ref::<T>().expect("key type") as *const T);
            let recursive = found.is_none() && map.initialising.contains(&key);
            if found.is_none() && !recursive {
                map.initialising.push(key);
            }
            (found, recursive)
        });
        assert!(
            !recursive,
            "greenrt::task_local: the initialiser of a task-local value used that same value \
             (recursive initialisation)"
        );
        let value: *const T = found.unwrap_or_else(|| {
            let initialising = Initialising(key);
            // The initialiser may use other locals (a `with` of its own).
            let v: Box<dyn Any> = Box::new((self.init)());
            drop(initialising);
            let ptr = v.downcast_ref::<T>().expect("key type") as *const T;
            // The `&mut` ends with the closure; `ptr` points into the
            // Box, not the Vec.
            with_map(|map| map.entries.push((key, v)));
            ptr
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
