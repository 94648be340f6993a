//! greenrt::task_local!: per-green-thread values.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{block_on, expect_panic, guarded, runtime, spin_for};

greenrt::task_local! {
    static VALUE: RefCell<u32> = RefCell::new(0);
}

#[test]
fn each_green_thread_has_its_own_value() {
    let results = block_on(2, || {
        VALUE.with(|v| *v.borrow_mut() = 999);
        let hs: Vec<_> = (1..=100u32)
            .map(|i| {
                greenrt::spawn(move || {
                    let initial = VALUE.with(|v| *v.borrow());
                    VALUE.with(|v| *v.borrow_mut() = i);
                    for round in 0..5 {
                        if round % 2 == 0 {
                            greenrt::yield_now();
                        } else {
                            greenrt::sleep(Duration::from_millis(1));
                        }
                        let now = VALUE.with(|v| *v.borrow());
                        assert_eq!(now, i, "green thread {i} saw another green thread's value");
                        VALUE.with(|v| *v.borrow_mut() += 1000);
                        VALUE.with(|v| *v.borrow_mut() -= 1000);
                    }
                    initial
                })
            })
            .collect();
        let initials: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        (initials, VALUE.with(|v| *v.borrow()))
    });
    let (initials, main_value) = results;
    assert!(
        initials.iter().all(|&v| v == 0),
        "a new green thread did not start from the initial value"
    );
    assert_eq!(
        main_value, 999,
        "spawned green threads changed the parent's value"
    );
}

static INITS: AtomicUsize = AtomicUsize::new(0);

greenrt::task_local! {
    static LAZY: Cell<u64> = {
        INITS.fetch_add(1, Ordering::SeqCst);
        Cell::new(5)
    };
}

#[test]
fn values_are_initialised_lazily_once_per_green_thread() {
    block_on(1, || {
        let before = INITS.load(Ordering::SeqCst);
        // A green thread that never touches LAZY never initialises it.
        greenrt::spawn(greenrt::yield_now).join().unwrap();
        assert_eq!(INITS.load(Ordering::SeqCst), before);
        // One that touches it many times initialises it exactly once.
        greenrt::spawn(|| {
            for _ in 0..10 {
                LAZY.with(|c| c.set(c.get() + 1));
                greenrt::yield_now();
            }
            assert_eq!(LAZY.with(Cell::get), 15);
        })
        .join()
        .unwrap();
        assert_eq!(INITS.load(Ordering::SeqCst), before + 1);
    });
}

#[test]
fn value_follows_the_green_thread_across_workers() {
    let (distinct_workers, ok) = block_on(2, || {
        let hogs: Vec<_> = (0..3)
            .map(|_| {
                greenrt::spawn(|| {
                    for _ in 0..200 {
                        spin_for(Duration::from_micros(100));
                        greenrt::yield_now();
                    }
                })
            })
            .collect();
        let h = greenrt::spawn(|| {
            let mut tids = HashSet::new();
            VALUE.with(|v| *v.borrow_mut() = 4242);
            let mut ok = true;
            for _ in 0..300 {
                tids.insert(std::thread::current().id());
                greenrt::yield_now();
                ok &= VALUE.with(|v| *v.borrow()) == 4242;
            }
            (tids.len(), ok)
        });
        let r = h.join().unwrap();
        for h in hogs {
            h.join().unwrap();
        }
        r
    });
    assert!(
        ok,
        "the task-local value changed when the green thread moved"
    );
    eprintln!("green thread ran on {distinct_workers} worker thread(s)");
}

struct DropCounter {
    counter: Arc<AtomicUsize>,
    delay: Duration,
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        std::thread::sleep(self.delay);
        self.counter.fetch_add(1, Ordering::SeqCst);
    }
}

greenrt::task_local! {
    static GUARD: RefCell<Option<DropCounter>> = RefCell::new(None);
}

#[test]
fn values_are_dropped_when_their_green_thread_exits() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    block_on(1, move || {
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let d = d.clone();
                greenrt::spawn(move || {
                    GUARD.with(|g| {
                        *g.borrow_mut() = Some(DropCounter {
                            counter: d,
                            delay: Duration::ZERO,
                        })
                    });
                    greenrt::yield_now();
                })
            })
            .collect();
        // Still alive while the green threads run.
        assert_eq!(d.load(Ordering::SeqCst), 0);
        for h in hs {
            h.join().unwrap();
        }
        // Joined: each green thread has exited, its value dropped.
        assert_eq!(d.load(Ordering::SeqCst), 50);
    });
    assert_eq!(dropped.load(Ordering::SeqCst), 50);
}

#[test]
fn values_are_dropped_when_their_green_thread_panics() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    block_on(2, move || {
        let h = greenrt::spawn(move || {
            GUARD.with(|g| {
                *g.borrow_mut() = Some(DropCounter {
                    counter: d,
                    delay: Duration::ZERO,
                })
            });
            panic!("exit by panic");
        });
        assert!(h.join().is_err());
    });
    // The runtime has shut down, so the green thread has fully exited.
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn values_are_dropped_before_join_returns() {
    // Like std::thread: once join returns, the green thread has finished,
    // including the destructors of its task-local values. The destructor
    // here is slow so that a join returning early is caught reliably.
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let seen_at_join = guarded(move || {
        let rt = runtime(2);
        let h = rt.spawn(move || {
            GUARD.with(|g| {
                *g.borrow_mut() = Some(DropCounter {
                    counter: d.clone(),
                    delay: Duration::from_millis(200),
                })
            });
        });
        h.join().unwrap();
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(
        seen_at_join, 1,
        "JoinHandle::join returned before the green thread's task-local values were dropped"
    );
}

greenrt::task_local! {
    static A: Cell<u8> = Cell::new(1);
    static B: RefCell<String> = RefCell::new(String::from("b"));
}

#[test]
fn several_keys_are_independent() {
    block_on(1, || {
        A.with(|a| a.set(10));
        B.with(|b| b.borrow_mut().push('!'));
        // Nested access to another key, and to the same key, works.
        A.with(|a| {
            B.with(|b| assert_eq!(&*b.borrow(), "b!"));
            A.with(|a2| assert_eq!(a2.get(), a.get()));
        });
        assert_eq!(A.with(Cell::get), 10);
        let other = greenrt::spawn(|| (A.with(Cell::get), B.with(|b| b.borrow().clone())))
            .join()
            .unwrap();
        assert_eq!(other, (1, "b".to_string()));
    });
}

#[test]
fn access_outside_a_green_thread_panics() {
    let msg = expect_panic("task-local access on an OS thread", || {
        VALUE.with(|v| *v.borrow())
    });
    assert!(
        msg.contains("outside a green thread"),
        "unexpected message: {msg:?}"
    );
}

static LATE_DROPS: AtomicUsize = AtomicUsize::new(0);
static LATE_DROP_ON_GREEN: AtomicUsize = AtomicUsize::new(0);

struct LateValue;
impl Drop for LateValue {
    fn drop(&mut self) {
        if greenrt::task::current_id().is_some() {
            LATE_DROP_ON_GREEN.fetch_add(1, Ordering::SeqCst);
        }
        LATE_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

struct SetsLateOnDrop;
impl Drop for SetsLateOnDrop {
    fn drop(&mut self) {
        LATE.with(|l| *l.borrow_mut() = Some(LateValue));
    }
}

greenrt::task_local! {
    static EARLY: RefCell<Option<SetsLateOnDrop>> = RefCell::new(None);
    static LATE: RefCell<Option<LateValue>> = RefCell::new(None);
}

#[test]
fn values_created_by_another_locals_destructor_are_dropped_on_the_green_thread() {
    // As with std's thread-locals, a destructor may (re)initialise another
    // key; that value still belongs to the exiting green thread and must
    // be dropped there, before join returns.
    let (drops, on_green) = guarded(|| {
        let rt = runtime(2);
        let h = rt.spawn(|| EARLY.with(|e| *e.borrow_mut() = Some(SetsLateOnDrop)));
        h.join().unwrap();
        (
            LATE_DROPS.load(Ordering::SeqCst),
            LATE_DROP_ON_GREEN.load(Ordering::SeqCst),
        )
    });
    assert_eq!(
        drops, 1,
        "the value set during exit was not dropped before join returned"
    );
    assert_eq!(
        on_green, 1,
        "the value set during exit was dropped off the green thread"
    );
}

fn recursive_init() -> Cell<u32> {
    // Uses its own key while it runs.
    Cell::new(RECURSIVE.with(|k| k.get()) + 1)
}

fn initialised_from_another() -> Cell<u32> {
    Cell::new(A.with(Cell::get).into())
}

greenrt::task_local! {
    static RECURSIVE: Cell<u32> = recursive_init();
    static FROM_ANOTHER: Cell<u32> = initialised_from_another();
}

/// An initialiser that uses its own key panics with a message saying so
/// (as `LocalKey::with` documents). It used to start a second value each
/// time, recursing until the green thread's stack overflowed (an abort),
/// and one that re-entered only once made two values, the inner one
/// hiding updates made through the outer.
#[test]
fn an_initialiser_using_its_own_key_panics_and_others_may_use_other_keys() {
    block_on(1, || {
        let h = greenrt::spawn(|| RECURSIVE.with(|k| k.get()));
        let payload = h.join().unwrap_err();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(msg.contains("recursive initialisation"), "message: {msg:?}");
        // An initialiser using another key is fine, and the key works
        // again after a failed initialisation on another green thread.
        A.with(|a| a.set(7));
        assert_eq!(FROM_ANOTHER.with(Cell::get), 7);
        FROM_ANOTHER.with(|v| v.set(v.get() + 10));
        assert_eq!(FROM_ANOTHER.with(Cell::get), 17);
    });
}
