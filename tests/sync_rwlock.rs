//! greenrt::sync::RwLock: std's semantics (shared readers, exclusive
//! writers, poisoning, try_*), writer preference, mixing with OS threads,
//! and cancellation of a waiting writer.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, TryLockError};
use std::time::{Duration, Instant};

use common::{block_on, guarded, runtime};
use greenrt::sync::RwLock;

/// Readers share: four green threads on two workers each take the read
/// lock and hold it until all four hold it at once (with exclusive
/// readers the fourth would never get in).
#[test]
fn readers_share() {
    block_on(2, || {
        const READERS: usize = 4;
        let lock = Arc::new(RwLock::new(7usize));
        let holding = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..READERS)
            .map(|_| {
                let (lock, holding) = (lock.clone(), holding.clone());
                greenrt::spawn(move || {
                    let g = lock.read().unwrap();
                    holding.fetch_add(1, Ordering::SeqCst);
                    let start = Instant::now();
                    while holding.load(Ordering::SeqCst) < READERS {
                        assert!(
                            start.elapsed() < Duration::from_secs(10),
                            "only {} of {READERS} readers got in together",
                            holding.load(Ordering::SeqCst)
                        );
                        greenrt::yield_now();
                    }
                    *g
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 7);
        }
    });
}

/// Writers exclude readers and each other, with readers and writers
/// contending. (Whether readers overlap here depends on timing: with
/// writer preference, a waiting writer holds new readers back, so
/// `readers_share` checks sharing on its own.)
#[test]
fn writers_exclude() {
    block_on(2, || {
        let lock = Arc::new(RwLock::new(0usize));
        let readers_in = Arc::new(AtomicUsize::new(0));
        let writer_in = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..40)
            .map(|i| {
                let (lock, readers_in, writer_in) =
                    (lock.clone(), readers_in.clone(), writer_in.clone());
                greenrt::spawn(move || {
                    for _ in 0..50 {
                        if i % 4 == 0 {
                            let mut g = lock.write().unwrap();
                            assert!(!writer_in.swap(true, Ordering::SeqCst), "two writers");
                            assert_eq!(readers_in.load(Ordering::SeqCst), 0, "reader with writer");
                            let v = *g;
                            greenrt::yield_now();
                            *g = v + 1;
                            writer_in.store(false, Ordering::SeqCst);
                        } else {
                            let g = lock.read().unwrap();
                            readers_in.fetch_add(1, Ordering::SeqCst);
                            assert!(!writer_in.load(Ordering::SeqCst), "writer with reader");
                            let _ = *g;
                            greenrt::yield_now();
                            readers_in.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*lock.read().unwrap(), 10 * 50);
    });
}

#[test]
fn try_read_and_try_write() {
    block_on(1, || {
        let lock = RwLock::new(1);
        {
            let r1 = lock.try_read().unwrap();
            let r2 = lock.try_read().unwrap();
            assert_eq!(*r1 + *r2, 2);
            assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
        }
        {
            let mut w = lock.try_write().unwrap();
            *w = 5;
            assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
            assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
        }
        assert_eq!(*lock.read().unwrap(), 5);
    });
}

#[test]
fn a_panicking_writer_poisons_a_panicking_reader_does_not() {
    block_on(2, || {
        let lock = Arc::new(RwLock::new(vec![1]));
        let l = lock.clone();
        let _ = greenrt::spawn(move || {
            let _r = l.read().unwrap();
            panic!("reader panics");
        })
        .join();
        assert!(!lock.is_poisoned());
        let l = lock.clone();
        let _ = greenrt::spawn(move || {
            let mut w = l.write().unwrap();
            w.push(2);
            panic!("writer panics");
        })
        .join();
        assert!(lock.is_poisoned());
        let r = lock.read().unwrap_err().into_inner();
        assert_eq!(*r, [1, 2]);
        drop(r);
        assert!(lock.write().is_err());
        assert!(matches!(lock.try_read(), Err(TryLockError::Poisoned(_))));
        assert!(matches!(lock.try_write(), Err(TryLockError::Poisoned(_))));
        lock.clear_poison();
        assert!(!lock.is_poisoned());
        lock.write().unwrap().push(3);
        let mut lock = Arc::try_unwrap(lock).unwrap();
        assert_eq!(*lock.get_mut().unwrap(), [1, 2, 3]);
        assert_eq!(lock.into_inner().unwrap(), [1, 2, 3]);
    });
}

#[test]
fn into_inner_and_get_mut_report_poison() {
    let mut lock = RwLock::new(7);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _w = lock.write().unwrap();
        panic!("poison it");
    }));
    assert_eq!(*lock.get_mut().unwrap_err().into_inner(), 7);
    assert_eq!(lock.into_inner().unwrap_err().into_inner(), 7);
}

#[test]
fn default_from_and_debug() {
    let lock: RwLock<u32> = RwLock::default();
    assert_eq!(*lock.read().unwrap(), 0);
    let lock = RwLock::from(5);
    assert_eq!(
        format!("{lock:?}"),
        "RwLock { data: 5, poisoned: false, .. }"
    );
    let w = lock.write().unwrap();
    assert_eq!(format!("{w:?}"), "5");
    assert_eq!(format!("{w}"), "5");
    assert_eq!(
        format!("{lock:?}"),
        "RwLock { data: <locked>, poisoned: false, .. }"
    );
    drop(w);
    let r = lock.read().unwrap();
    assert_eq!(format!("{r:?} {r}"), "5 5");
}

#[test]
fn a_waiting_writer_holds_new_readers_back() {
    block_on(2, || {
        let lock = Arc::new(RwLock::new(0));
        let first = lock.read().unwrap();
        let l = lock.clone();
        let writer = greenrt::spawn(move || {
            *l.write().unwrap() = 1;
        });
        // Wait until the writer is queued behind our read lock.
        let start = Instant::now();
        while lock.try_read().is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "writer never waited"
            );
            greenrt::sleep(Duration::from_millis(1));
        }
        // A new reader must wait for the writer (writer preference) and
        // then see its write.
        let l = lock.clone();
        let reader = greenrt::spawn(move || *l.read().unwrap());
        greenrt::sleep(Duration::from_millis(20));
        assert!(
            !reader.is_finished(),
            "a reader overtook the waiting writer"
        );
        drop(first);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), 1);
    });
}

#[test]
fn a_stream_of_readers_does_not_starve_a_writer() {
    block_on(2, || {
        let lock = Arc::new(RwLock::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        // Readers hold the lock across a yield and overlap: without writer
        // preference there would always be one inside.
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (lock, stop) = (lock.clone(), stop.clone());
                greenrt::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let g = lock.read().unwrap();
                        greenrt::yield_now();
                        drop(g);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        greenrt::sleep(Duration::from_millis(20));
        for i in 1..=20 {
            *lock.write().unwrap() = i;
            greenrt::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
        let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(*lock.read().unwrap(), 20);
        assert!(reads > 0);
    });
}

#[test]
fn shared_between_an_os_thread_and_green_threads() {
    guarded(|| {
        let rt = runtime(1);
        let lock = Arc::new(RwLock::new(0u32));
        // The OS thread holds the write lock; green readers park, and the
        // only worker keeps running other green threads meanwhile.
        let w = lock.write().unwrap();
        let l = lock.clone();
        let reader = rt.spawn(move || *l.read().unwrap());
        let ticks = rt.spawn(|| {
            for _ in 0..10 {
                greenrt::sleep(Duration::from_millis(2));
            }
        });
        ticks.join().unwrap();
        assert!(!reader.is_finished());
        drop(w);
        assert_eq!(reader.join().unwrap(), 0);

        // A green writer holds it; the OS thread's read blocks until it
        // lets go.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let l = lock.clone();
        let writer = rt.spawn(move || {
            let mut g = l.write().unwrap();
            held_tx.send(()).unwrap();
            greenrt::sleep(Duration::from_millis(30));
            *g = 42;
        });
        held_rx.recv().unwrap();
        assert_eq!(*lock.read().unwrap(), 42);
        writer.join().unwrap();

        // Green readers and OS readers share it.
        let r = lock.read().unwrap();
        let l = lock.clone();
        assert_eq!(rt.block_on(move || *l.try_read().unwrap()), 42);
        drop(r);
    });
}

#[test]
fn a_cancelled_waiting_writer_lets_readers_in() {
    guarded(|| {
        let rt = runtime(2);
        let lock = Arc::new(RwLock::new(0u32));
        let r = lock.read().unwrap();
        let l = lock.clone();
        let writer = rt.spawn(move || {
            *l.write().unwrap() = 1;
        });
        let start = Instant::now();
        while lock.try_read().is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "writer never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        rt.shutdown_timeout(Duration::from_secs(10));
        let payload = writer.join().unwrap_err();
        assert!(payload.downcast_ref::<greenrt::Cancelled>().is_some());
        // The writer gave up: no writer waits, readers may enter again,
        // and the cancellation did not poison the lock.
        let r2 = lock
            .try_read()
            .expect("readers stranded by a cancelled writer");
        drop((r, r2));
        assert!(!lock.is_poisoned());
        assert_eq!(*lock.write().unwrap(), 0);
    });
}
