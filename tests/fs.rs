//! `greenrt::fs` through the page cache: bytes identical to std for
//! sequential and random I/O from green threads and OS threads, end of
//! file, the whole-file helpers, 1 000 concurrent readers beside a
//! sleeping probe, a file operation blocked in the kernel leaving the only
//! worker to the others, fds, the backend (and the whole file
//! again with `GREENRT_IO_URING=off`), `OpenOptions` errors and
//! `AlignedBuf`. Direct and uncached I/O are in fs_direct.rs;
//! cancellation in fs_cancel.rs.
//!
//! Every test holds `SERIAL` and checks that it leaves as many fds open
//! as it found. Time bounds are generous caps, never performance goals.

mod common;
mod fs_util;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::expect_panic;
use fs_util::roundtrip;
use fs_util::{checked, pattern, run_in, Ctx, Rng, TempDir};
use greenrt::fs::{AlignedBuf, Backend, File, OpenOptions};

#[test]
fn sequential_buffered_io_matches_std_on_green_threads() {
    roundtrip::sequential(Ctx::Green, false);
}

#[test]
fn sequential_buffered_io_matches_std_on_an_os_thread() {
    roundtrip::sequential(Ctx::Os, false);
}

#[test]
fn random_buffered_io_matches_std_on_green_threads() {
    roundtrip::random(Ctx::Green, false);
}

#[test]
fn random_buffered_io_matches_std_on_an_os_thread() {
    roundtrip::random(Ctx::Os, false);
}

fn buffered_end_of_file(dir: &TempDir) {
    let path = dir.file("eof");
    let content = pattern(10_000, 5);
    std::fs::write(&path, &content).unwrap();
    let file = File::open(&path).unwrap();
    let mut buf = vec![0u8; 4096];
    // A read across the end returns the bytes that exist...
    assert_eq!(file.read_at(&mut buf, 8192).unwrap(), 10_000 - 8192);
    assert!(buf[..10_000 - 8192] == content[8192..]);
    // ...then 0, at and past the end.
    assert_eq!(file.read_at(&mut buf, 10_000).unwrap(), 0);
    assert_eq!(file.read_at(&mut buf, 1 << 40).unwrap(), 0);
    let err = file.read_exact_at(&mut buf, 8192).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    let mut whole = Vec::new();
    assert_eq!((&file).read_to_end(&mut whole).unwrap(), 10_000);
    assert!(whole == content);
    assert_eq!((&file).read(&mut buf).unwrap(), 0, "Read at end of file");
    let err = (&file).read_exact(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    // An empty buffer reads 0 anywhere.
    assert_eq!(file.read_at(&mut [], 0).unwrap(), 0);
}

#[test]
fn buffered_read_at_end_of_file_returns_what_exists_then_zero() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || buffered_end_of_file(&TempDir::new("eof")));
    }
}

#[test]
fn read_write_and_read_to_string_match_std() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let dir = TempDir::new("whole");
            let path = dir.file("whole");
            let content = pattern(300_000, 6);
            greenrt::fs::write(&path, &content).expect("fs::write");
            assert!(std::fs::read(&path).unwrap() == content);
            // write truncates, as std's does.
            greenrt::fs::write(&path, b"short").unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"short");
            std::fs::write(&path, &content).unwrap();
            assert!(greenrt::fs::read(&path).expect("fs::read") == content);
            std::fs::write(&path, "h\u{e9}llo\n").unwrap();
            assert_eq!(greenrt::fs::read_to_string(&path).unwrap(), "h\u{e9}llo\n");
            std::fs::write(&path, [0xff, 0xfe, b'a']).unwrap();
            let err = greenrt::fs::read_to_string(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            std::fs::write(&path, b"").unwrap();
            assert_eq!(greenrt::fs::read(&path).unwrap(), b"");
            let err = greenrt::fs::read(dir.file("missing")).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        });
    }
}

#[test]
fn set_len_sync_and_metadata_match_std() {
    run_in(Ctx::Green, || {
        let dir = TempDir::new("meta");
        let path = dir.file("meta");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all_at(b"hello world", 0).unwrap();
        file.sync_all().unwrap();
        file.sync_data().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 11);
        file.set_len(5).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        file.set_len(8).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\0\0\0");
        let meta = file.metadata().unwrap();
        let std_meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), std_meta.len());
        assert!(meta.is_file());
        assert_eq!(meta.modified().unwrap(), std_meta.modified().unwrap());
    });
}

/// 1 000 page-cache-cold readers (direct and buffered) on 2 workers read
/// the right bytes beside a green thread sleeping 1 ms at a time. Its
/// lateness is printed, not asserted: on 2 busy cores the OS alone delays
/// a thread by up to hundreds of ms (267 ms seen), in either backend. The
/// clock-free check of the same property is the FIFO test below.
#[test]
fn thousand_green_threads_read_the_right_bytes_beside_a_sleeping_probe() {
    checked(|| {
        let dir = TempDir::new("many");
        let path = dir.file("many");
        let size = 4 << 20;
        let content = Arc::new(pattern(size, 7));
        fs_util::std_write_synced(&path, &content);
        fs_util::drop_from_page_cache(&path);
        let lates = common::runtime(2).block_on(move || {
            let buffered = Arc::new(File::open(&path).unwrap());
            let direct = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .direct(true)
                    .open(&path)
                    .unwrap(),
            );
            let done = Arc::new(AtomicBool::new(false));
            let probing = Arc::new(AtomicBool::new(false));
            let probe = {
                let (done, probing) = (done.clone(), probing.clone());
                greenrt::spawn(move || {
                    let mut lates = Vec::new();
                    probing.store(true, SeqCst);
                    while !done.load(SeqCst) {
                        let t = Instant::now();
                        greenrt::sleep(Duration::from_millis(1));
                        lates.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
                    }
                    lates
                })
            };
            while !probing.load(SeqCst) {
                greenrt::yield_now();
            }
            let reads = Arc::new(AtomicUsize::new(0));
            let readers: Vec<_> = (0..1000u64)
                .map(|i| {
                    let (buffered, direct) = (buffered.clone(), direct.clone());
                    let (content, reads) = (content.clone(), reads.clone());
                    greenrt::spawn(move || {
                        let a = direct.direct_alignment().unwrap();
                        let mut rng = Rng::new(i);
                        let mut dbuf = AlignedBuf::new(4096, a.memory);
                        let mut bbuf = vec![0u8; 3000];
                        for _ in 0..4 {
                            let off = rng.below((size / 4096) as u64) as usize * 4096;
                            direct.read_exact_at(&mut dbuf, off as u64).unwrap();
                            assert!(dbuf[..] == content[off..off + 4096], "direct read at {off}");
                            let off = rng.below((size - 3000) as u64) as usize;
                            buffered.read_exact_at(&mut bbuf, off as u64).unwrap();
                            assert!(
                                bbuf[..] == content[off..off + 3000],
                                "buffered read at {off}"
                            );
                            reads.fetch_add(2, SeqCst);
                        }
                    })
                })
                .collect();
            for r in readers {
                r.join().expect("a reader panicked");
            }
            done.store(true, SeqCst);
            assert_eq!(reads.load(SeqCst), 8000);
            probe.join().unwrap()
        });
        let mut sorted = lates.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let max = sorted.last().copied().unwrap_or_default();
        println!(
            "probe: {} sleeps of 1 ms beside 1000 readers ({:?}): late by median {median:?}, \
             max {max:?}",
            sorted.len(),
            greenrt::fs::backend()
        );
    });
}

/// A green thread blocked in the kernel in a file operation leaves its
/// worker to the others: on 1 worker with preemption off (no sysmon
/// retake), only the hand-off lets another green thread run. Opening a
/// FIFO blocks until its other end is opened, here by a green thread of
/// the same worker; the read then waits for its write. A held worker is a
/// deadlock (caught by the time limit); no clock otherwise.
#[test]
fn file_ops_blocked_in_the_kernel_leave_the_only_worker_to_the_others() {
    checked(|| {
        let dir = TempDir::new("fifo");
        let fifo = dir.file("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; a plain syscall.
        let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(r, 0, "mkfifo: {}", io::Error::last_os_error());
        // Preemption off: sysmon would otherwise retake the P of a blocked
        // worker after a quantum, hiding a missing hand-off.
        common::cooperative_runtime(1).block_on(move || {
            let path = fifo.clone();
            let reader = greenrt::spawn(move || {
                let file = File::open(&path).expect("open the FIFO for reading");
                let mut buf = [0u8; 5];
                (&file).read_exact(&mut buf).expect("read the FIFO");
                buf
            });
            greenrt::yield_now();
            let mut writer = OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open the FIFO for writing");
            writer.write_all(b"hello").expect("write the FIFO");
            assert_eq!(&reader.join().unwrap(), b"hello");
        });
    });
}

/// Opens, reads, writes and closes many files (and fails to open some),
/// from green threads and an OS thread: the fd count comes back.
#[test]
fn fd_count_unchanged_after_opening_reading_and_closing_many_files() {
    checked(|| {
        let dir = Arc::new(TempDir::new("fds"));
        for i in 0..50 {
            std::fs::write(dir.file(&format!("f{i}")), pattern(10_000 + i, i as u64)).unwrap();
        }
        let work = |dir: &TempDir, i: usize| {
            let path = dir.file(&format!("f{i}"));
            let expected = pattern(10_000 + i, i as u64);
            let mut f = File::open(&path).unwrap();
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert!(got == expected);
            let d = OpenOptions::new()
                .read(true)
                .direct(true)
                .open(&path)
                .unwrap();
            let mut b = AlignedBuf::new(8192, d.direct_alignment().unwrap().memory);
            d.read_exact_at(&mut b, 0).unwrap();
            let mut w = OpenOptions::new().write(true).open(&path).unwrap();
            w.write_all(&expected[..100]).unwrap();
            let _clone = w.try_clone().unwrap();
            assert!(greenrt::fs::read(&path).unwrap() == expected);
            assert!(File::open(dir.file("missing")).is_err());
            assert!(OpenOptions::new().open(&path).is_err());
            // /proc refuses O_DIRECT (see fs_direct.rs).
            assert!(OpenOptions::new()
                .read(true)
                .direct(true)
                .open("/proc/version")
                .is_err());
            let _ = greenrt::fs::residency(&path).unwrap();
        };
        let before = fs_util::open_fds();
        let rt = common::runtime(2);
        let in_rt = fs_util::open_fds();
        let d = dir.clone();
        rt.block_on(move || {
            for _round in 0..2 {
                let hs: Vec<_> = (0..50)
                    .map(|i| {
                        let d = d.clone();
                        greenrt::spawn(move || work(&d, i))
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            }
        });
        assert_eq!(
            fs_util::open_fds(),
            in_rt,
            "fds leaked by green threads' files"
        );
        drop(rt);
        for i in 0..50 {
            work(&dir, i);
        }
        assert_eq!(
            fs_util::open_fds(),
            before,
            "fds leaked by an OS thread's files"
        );
    });
}

#[test]
fn backend_is_io_uring_unless_turned_off() {
    checked(|| {
        let backend = greenrt::fs::backend();
        let reason = greenrt::fs::backend_reason();
        println!("greenrt::fs backend: {backend:?} (reason: {reason:?})");
        if std::env::var("GREENRT_IO_URING").as_deref() == Ok("off") {
            assert_eq!(backend, Backend::BlockingHandoff);
            let reason = reason.expect("a reason for not using io_uring");
            assert!(reason.contains("GREENRT_IO_URING"), "reason: {reason}");
            return;
        }
        match fs_util::kernel_has_io_uring() {
            Ok(()) => {
                assert_eq!(
                    backend,
                    Backend::IoUring,
                    "io_uring_setup works here, yet greenrt falls back: {reason:?}"
                );
                assert_eq!(reason, None);
            }
            Err(e) => {
                println!("io_uring_setup fails here ({e}); greenrt says: {reason:?}");
                assert_eq!(backend, Backend::BlockingHandoff);
                assert!(reason.is_some());
            }
        }
        // Either way the same calls work.
        let dir = TempDir::new("backend");
        let path = dir.file("b");
        common::runtime(1).block_on(move || {
            greenrt::fs::write(&path, b"backend").unwrap();
            assert_eq!(greenrt::fs::read(&path).unwrap(), b"backend");
        });
    });
}

#[test]
fn whole_suite_passes_again_with_io_uring_off() {
    let Some(out) = fs_util::whole_suite_again_with_io_uring_off() else {
        return;
    };
    assert!(
        out.contains("greenrt::fs backend: BlockingHandoff"),
        "the child did not report the fallback backend:\n{out}"
    );
}

#[test]
fn open_options_without_access_mode_is_invalid_input() {
    checked(|| {
        let dir = TempDir::new("opts");
        let path = dir.file("x");
        std::fs::write(&path, b"x").unwrap();
        for opts in [
            OpenOptions::new(),
            OpenOptions::new().direct(true).clone(),
            OpenOptions::new().read(false).write(false).clone(),
        ] {
            let err = opts.open(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
    });
}

#[test]
fn open_options_create_or_truncate_without_write_is_invalid_input() {
    checked(|| {
        let dir = TempDir::new("opts");
        let path = dir.file("new");
        for opts in [
            OpenOptions::new().read(true).create(true).clone(),
            OpenOptions::new().read(true).create_new(true).clone(),
            OpenOptions::new().read(true).truncate(true).clone(),
        ] {
            let err = opts.open(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{opts:?}: {err}");
            assert!(!path.exists(), "{opts:?} created the file anyway");
        }
        // With write access the same options work, and create_new then
        // refuses an existing file as std does.
        OpenOptions::new()
            .write(true)
            .create(true)
            .open(&path)
            .unwrap();
        let err = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    });
}

#[test]
fn not_found_keeps_stds_error() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let dir = TempDir::new("nf");
            let missing = dir.file("missing");
            let std_err = std::fs::File::open(&missing).unwrap_err();
            for opts in [
                OpenOptions::new().read(true).clone(),
                OpenOptions::new().read(true).direct(true).clone(),
                OpenOptions::new().write(true).clone(),
            ] {
                let err = opts.open(&missing).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::NotFound, "{opts:?}: {err}");
                assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{opts:?}: {err}");
                assert_eq!(err.raw_os_error(), std_err.raw_os_error());
            }
            let err = File::open(&missing).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        });
    }
}

#[test]
fn aligned_buf_is_zeroed_aligned_and_send() {
    fn assert_send<T: Send>(_: &T) {}
    for shift in 0..=16 {
        let align = 1usize << shift;
        for len in [1, 511, 4096, 100_000] {
            let b = AlignedBuf::new(len, align);
            assert_send(&b);
            assert_eq!(b.len(), len);
            assert_eq!(b.align(), align);
            assert_eq!(b.as_ptr() as usize % align, 0, "len {len} align {align}");
            assert!(
                b.iter().all(|&x| x == 0),
                "not zeroed: len {len} align {align}"
            );
        }
    }
    // Zeroed even where a freed, dirtied buffer was.
    for _ in 0..10 {
        let mut b = AlignedBuf::new(1 << 16, 4096);
        b.fill(0xee);
        drop(b);
        let b = AlignedBuf::new(1 << 16, 4096);
        assert!(b.iter().all(|&x| x == 0));
    }
    // Send, really: filled on another thread, read back here.
    let mut b = AlignedBuf::new(8192, 4096);
    b[..5].copy_from_slice(b"hello");
    let b = std::thread::spawn(move || {
        assert_eq!(&b[..5], b"hello");
        let mut c = b.clone();
        c[5] = b'!';
        c
    })
    .join()
    .unwrap();
    assert_eq!(&b[..6], b"hello!");
    assert_eq!(b.as_ptr() as usize % 4096, 0);
}

#[test]
fn aligned_buf_of_len_zero_works() {
    for align in [1, 8, 4096, 1 << 20] {
        let mut b = AlignedBuf::new(0, align);
        assert!(b.is_empty());
        assert_eq!(b.as_ptr() as usize % align, 0);
        assert_eq!(&b[..], &[] as &[u8]);
        assert_eq!(&mut b[..], &mut [] as &mut [u8]);
        let c = b.clone();
        assert!(c.is_empty());
    }
}

#[test]
fn aligned_buf_non_power_of_two_alignment_panics() {
    for align in [0, 3, 12, 4097] {
        let msg = expect_panic("AlignedBuf::new with a bad alignment", || {
            AlignedBuf::new(4096, align)
        });
        assert!(
            msg.contains("AlignedBuf::new")
                && msg.contains(&format!("alignment {align} is not a power of two")),
            "panic message: {msg}"
        );
    }
}
