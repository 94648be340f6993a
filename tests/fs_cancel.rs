//! Green threads cancelled in the middle of direct file reads (their
//! runtime drops while many reads are in flight) leave nothing
//! corrupted: the kernel never writes into a buffer after it is freed,
//! memory beside the buffers keeps its bytes, the drop returns and
//! nothing crashes.
//!
//! This binary's global allocator can quarantine freed blocks (filled
//! with a poison byte and kept out of circulation) around the drop; a
//! read completing into a freed heap buffer shows up as a quarantined
//! block that is no longer all poison.

mod common;
mod fs_util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs_util::{checked_for, pattern, std_write_synced, Rng, TempDir};
use greenrt::fs::{AlignedBuf, OpenOptions};

#[path = "common/quarantine.rs"]
mod quarantine;

use quarantine::Quarantine;

#[global_allocator]
static ALLOC: Quarantine = Quarantine;

const FILE_LEN: usize = 8 << 20;
const READ_LEN: usize = 128 << 10;
const STACK_READ: usize = 32 << 10;
const CANARY: u8 = 0xc3;

/// A read buffer on a green thread's stack, with canaries either side.
#[repr(C, align(4096))]
struct Framed {
    before: [u8; 4096],
    buf: [u8; STACK_READ],
    after: [u8; 4096],
}

/// Reads random aligned chunks of the file, direct, for ever (until
/// cancelled), alternately into a fresh heap buffer and into a buffer
/// on its own stack, checking every byte and the stack canaries; with
/// `yield_between`, yields after each read (a cancellation point that is
/// not a file operation).
fn reader(
    file: Arc<greenrt::fs::File>,
    content: Arc<Vec<u8>>,
    reads: Arc<AtomicUsize>,
    seed: u64,
    yield_between: bool,
    stop: Arc<AtomicBool>,
) {
    let a = file.direct_alignment().expect("direct");
    assert!(a.memory <= 4096 && a.offset <= 4096, "{a:?}");
    let mut rng = Rng::new(seed);
    let mut framed = Framed {
        before: [CANARY; 4096],
        buf: [0; STACK_READ],
        after: [CANARY; 4096],
    };
    loop {
        let off = rng.below(((FILE_LEN - READ_LEN) / 4096) as u64) as usize * 4096;
        if rng.below(2) == 0 {
            let mut heap = AlignedBuf::new(READ_LEN, a.memory);
            file.read_exact_at(&mut heap, off as u64)
                .expect("direct read");
            assert!(
                heap[..] == content[off..off + READ_LEN],
                "heap read at {off}"
            );
        } else {
            let framed = std::hint::black_box(&mut framed);
            file.read_exact_at(&mut framed.buf, off as u64)
                .expect("direct read");
            assert!(
                framed.buf[..] == content[off..off + STACK_READ],
                "stack read at {off}"
            );
            assert!(
                framed
                    .before
                    .iter()
                    .chain(&framed.after)
                    .all(|&b| b == CANARY),
                "a direct read wrote past its stack buffer"
            );
        }
        reads.fetch_add(1, SeqCst);
        if stop.load(SeqCst) {
            // The test has its verdict; let a detached reader end.
            return;
        }
        if yield_between {
            greenrt::yield_now();
        }
    }
}

/// `h.join()`, or None if it has not returned within `limit` (the joining
/// thread is abandoned).
fn join_within<T: Send + 'static>(
    h: greenrt::JoinHandle<T>,
    limit: Duration,
) -> Option<std::thread::Result<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(h.join());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn runtime_drop_mid_direct_reads_leaves_nothing_corrupted() {
    checked_for(Duration::from_secs(120), || {
        let dir = TempDir::new("cancel");
        let path = dir.file("big");
        let content = Arc::new(pattern(FILE_LEN, 9));
        std_write_synced(&path, &content);
        // Canaries: heap memory that nothing may write to.
        let canaries: Vec<Vec<u8>> = (0..64).map(|_| vec![CANARY; 64 << 10]).collect();
        for round in 0..4 {
            let file = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .direct(true)
                    .open(&path)
                    .unwrap(),
            );
            let reads = Arc::new(AtomicUsize::new(0));
            let rt = common::runtime(2);
            let handles: Vec<_> = (0..64)
                .map(|i| {
                    let (file, content, reads) = (file.clone(), content.clone(), reads.clone());
                    rt.spawn(move || {
                        reader(file, content, reads, round * 1000 + i, true, Arc::default())
                    })
                })
                .collect();
            // Every reader under way, and more reads in flight.
            let start = Instant::now();
            while reads.load(SeqCst) < 256 {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "round {round}: only {} reads done in 30 s",
                    reads.load(SeqCst)
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            quarantine::enable();
            let t = Instant::now();
            drop(rt);
            let took = t.elapsed();
            // Anything the kernel still had would land by now.
            std::thread::sleep(Duration::from_millis(50));
            let (buffers, bad) = quarantine::corrupted_and_release(READ_LEN);
            println!(
                "round {round}: {} reads, drop took {took:?}, {buffers} read buffers freed \
                 during the drop, {bad} freed blocks written to",
                reads.load(SeqCst)
            );
            assert_eq!(
                bad, 0,
                "round {round}: freed memory was written to after the drop"
            );
            assert!(
                took < Duration::from_secs(10),
                "round {round}: the runtime drop took {took:?}"
            );
            for (i, h) in handles.into_iter().enumerate() {
                let payload = join_within(h, Duration::from_secs(10))
                    .unwrap_or_else(|| {
                        panic!(
                            "round {round}: reader {i} had not ended 10 s after its runtime \
                             dropped (detached and stuck?)"
                        )
                    })
                    .expect_err("a reader returned");
                assert!(
                    payload.downcast_ref::<greenrt::Cancelled>().is_some(),
                    "round {round}: a reader failed instead of being cancelled: {}",
                    common::panic_text(&*payload)
                );
            }
            assert!(
                canaries.iter().all(|c| c.iter().all(|&b| b == CANARY)),
                "round {round}: a canary buffer was written to"
            );
            // The file still reads right, and its fd still works.
            let mut b = AlignedBuf::new(READ_LEN, 4096);
            file.read_exact_at(&mut b, 4096).unwrap();
            assert!(b[..] == content[4096..4096 + READ_LEN]);
        }
    });
}

/// Green threads doing nothing but direct reads, in a loop: each is
/// cancelled by the runtime's drop at its next read (a file operation is
/// a blocking call like any other), so the drop is quick (no green thread
/// is detached after the shutdown timeout) and every one ends
/// `Cancelled`.
#[test]
fn green_threads_looping_on_direct_reads_are_cancelled_at_a_read() {
    checked_for(Duration::from_secs(120), || {
        let dir = TempDir::new("cancel-loop");
        let path = dir.file("big");
        let content = Arc::new(pattern(FILE_LEN, 10));
        std_write_synced(&path, &content);
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .direct(true)
                .open(&path)
                .unwrap(),
        );
        let reads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let rt = common::runtime(2);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (file, content, reads) = (file.clone(), content.clone(), reads.clone());
                let stop = stop.clone();
                rt.spawn(move || reader(file, content, reads, i, false, stop))
            })
            .collect();
        while reads.load(SeqCst) < 64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        drop(rt);
        let took = t.elapsed();
        let mut unended = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, h) in handles.into_iter().enumerate() {
            match join_within(h, deadline.saturating_duration_since(Instant::now())) {
                None => unended.push(i),
                Some(r) => {
                    let payload = r.expect_err("a reader returned");
                    assert!(
                        payload.downcast_ref::<greenrt::Cancelled>().is_some(),
                        "reader {i} failed instead of being cancelled: {}",
                        common::panic_text(&*payload)
                    );
                }
            }
        }
        stop.store(true, SeqCst);
        assert!(
            unended.is_empty(),
            "readers {unended:?} (of 8, looping on direct reads) had not ended 10 s after \
             their runtime dropped (in {took:?}): a cancelled green thread's file operations \
             do not unwind it, so it was detached, and then waits for ever ({:?} backend)",
            greenrt::fs::backend()
        );
        assert!(
            took < greenrt::DEFAULT_SHUTDOWN_TIMEOUT,
            "the drop took {took:?}: green threads looping on reads were detached rather than \
             cancelled at a read"
        );
    });
}

#[test]
fn whole_suite_passes_again_with_io_uring_off() {
    fs_util::whole_suite_again_with_io_uring_off();
}
