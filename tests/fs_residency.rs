//! `greenrt::fs` page-cache residency: none after O_DIRECT and uncached
//! (RWF_DONTCACHE) reads, about all after a buffered read, and the whole
//! file again with `GREENRT_IO_URING=off`.
//!
//! Files live in `std::env::temp_dir()`. Every test holds `SERIAL` and
//! checks that it leaves as many fds open as it found.

mod common;
mod fs_util;

use std::io::{self, Read};
use std::path::Path;

use fs_util::{
    alignment, drop_from_page_cache, open_direct, pattern, run_in, std_write_synced, Ctx, TempDir,
};
use greenrt::fs::{AlignedBuf, OpenOptions};

fn residency(path: &Path) -> greenrt::fs::Residency {
    greenrt::fs::residency(path).expect("residency")
}

#[test]
fn residency_is_zero_after_fadvise_dontneed_and_a_full_direct_read() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let dir = TempDir::new("res");
            let path = dir.file("cold");
            let size = 4 << 20;
            let content = pattern(size, 5);
            std_write_synced(&path, &content);
            drop_from_page_cache(&path);
            let page = 4096u64;
            let r = residency(&path);
            assert_eq!(r.total_pages, size as u64 / page, "{r:?}");
            assert_eq!(r.resident_pages, 0, "POSIX_FADV_DONTNEED left pages: {r:?}");
            let file = open_direct(&path, false);
            let mut buf = AlignedBuf::new(256 << 10, alignment(&file).memory);
            for off in (0..size).step_by(buf.len()) {
                file.read_exact_at(&mut buf, off as u64).unwrap();
                assert!(
                    buf[..] == content[off..off + buf.len()],
                    "direct read at {off}"
                );
            }
            let r = residency(&path);
            assert_eq!(
                r.resident_pages, 0,
                "a direct read left pages in the cache: {r:?}"
            );
            assert_eq!(r.fraction(), 0.0);
        });
    }
}

#[test]
fn residency_is_about_full_after_a_buffered_full_read() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let dir = TempDir::new("res");
            let path = dir.file("hot");
            let size = 4 << 20;
            let content = pattern(size, 6);
            std_write_synced(&path, &content);
            drop_from_page_cache(&path);
            assert_eq!(residency(&path).resident_pages, 0);
            assert!(greenrt::fs::read(&path).unwrap() == content);
            let r = residency(&path);
            assert!(
                r.resident_pages * 10 >= r.total_pages * 9,
                "a buffered read left only {r:?} resident"
            );
            // Empty and missing files.
            let empty = dir.file("empty");
            std::fs::write(&empty, b"").unwrap();
            let r = residency(&empty);
            assert_eq!((r.total_pages, r.resident_pages), (0, 0));
            assert_eq!(r.fraction(), 1.0);
            let err = greenrt::fs::residency(dir.file("missing")).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        });
    }
}

#[test]
fn dontcache_reads_right_bytes_and_leaves_no_pages_or_is_unsupported() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, move || {
            let dir = TempDir::new("dontcache");
            let path = dir.file("u");
            let size = 4 << 20;
            let content = pattern(size, 7);
            std_write_synced(&path, &content);
            drop_from_page_cache(&path);
            let file = match OpenOptions::new().read(true).dontcache(true).open(&path) {
                Ok(f) => f,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
                    let msg = e.to_string();
                    assert!(
                        msg.contains("RWF_DONTCACHE") && msg.contains(&*path.to_string_lossy()),
                        "{msg}"
                    );
                    println!("dontcache unsupported here: {msg}");
                    return;
                }
            };
            println!("dontcache supported in {} ({ctx:?})", dir.path().display());
            // Uncached reads need no alignment: odd sizes and offsets.
            let mut buf = vec![0u8; 100_003];
            let mut off = 0;
            while off < size {
                let n = file.read_at(&mut buf, off as u64).unwrap();
                assert!(n > 0);
                assert!(buf[..n] == content[off..off + n], "uncached read at {off}");
                off += n;
            }
            let r = residency(&path);
            assert!(
                r.resident_pages * 20 <= r.total_pages,
                "uncached reads left {r:?} resident"
            );
            // Pages cached before stay cached.
            assert!(std::fs::read(&path).unwrap() == content);
            let before = residency(&path);
            let mut whole = Vec::new();
            (&file).read_to_end(&mut whole).unwrap();
            assert!(whole == content);
            let after = residency(&path);
            assert!(
                after.resident_pages * 10 >= before.total_pages * 9,
                "uncached reads dropped pages cached before: {before:?} -> {after:?}"
            );
            // Uncached writes land as std sees them.
            let w = OpenOptions::new()
                .write(true)
                .dontcache(true)
                .open(&path)
                .unwrap();
            let patch = pattern(12_345, 8);
            w.write_all_at(&patch, 777).unwrap();
            w.sync_all().unwrap();
            let std_view = std::fs::read(&path).unwrap();
            assert!(std_view[777..777 + patch.len()] == patch[..]);
            assert!(std_view[..777] == content[..777]);
        });
    }
}

#[test]
fn whole_suite_passes_again_with_io_uring_off() {
    fs_util::whole_suite_again_with_io_uring_off();
}
