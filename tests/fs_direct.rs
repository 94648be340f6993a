//! `greenrt::fs` direct (O_DIRECT) I/O (residency: tests/fs_residency.rs):
//! bytes identical to std, misaligned requests refused before any
//! syscall, O_DIRECT refused clearly where the file system lacks it, end
//! of file, page-cache residency after direct, buffered and uncached
//! reads, and the whole file again with `GREENRT_IO_URING=off`.
//!
//! Files live in `std::env::temp_dir()` (ext4 here; tmpfs also takes
//! O_DIRECT since Linux 6.6). Every test holds `SERIAL` and checks that
//! it leaves as many fds open as it found.

mod common;
mod fs_util;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

use fs_util::roundtrip;
use fs_util::{alignment, open_direct, pattern, run_in, std_write_synced, Ctx, TempDir};
use greenrt::fs::{AlignedBuf, File, OpenOptions};

#[test]
fn sequential_direct_io_matches_std_on_green_threads() {
    roundtrip::sequential(Ctx::Green, true);
}

#[test]
fn sequential_direct_io_matches_std_on_an_os_thread() {
    roundtrip::sequential(Ctx::Os, true);
}

#[test]
fn random_direct_io_matches_std_on_green_threads() {
    roundtrip::random(Ctx::Green, true);
}

#[test]
fn random_direct_io_matches_std_on_an_os_thread() {
    roundtrip::random(Ctx::Os, true);
}

#[test]
fn direct_alignment_is_some_for_direct_files_only() {
    run_in(Ctx::Green, || {
        let dir = TempDir::new("align");
        let path = dir.file("a");
        std::fs::write(&path, pattern(8192, 1)).unwrap();
        let a = alignment(&open_direct(&path, false));
        println!(
            "O_DIRECT alignment in {}: {a:?} ({a})",
            dir.path().display()
        );
        assert!(
            a.memory.is_power_of_two() && a.offset.is_power_of_two(),
            "{a:?}"
        );
        assert!(a.offset <= 4096 && a.memory <= 4096, "{a:?}");
        assert_eq!(File::open(&path).unwrap().direct_alignment(), None);
        // A std file opened with O_DIRECT is adopted as a direct one.
        use std::os::unix::fs::OpenOptionsExt;
        let std_file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap();
        let adopted = File::try_from(std_file).unwrap();
        assert_eq!(adopted.direct_alignment(), Some(a));
        let buffered = File::try_from(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(buffered.direct_alignment(), None);
    });
}

/// Makes `file`'s fd refer to `other`'s open file (dup2): a request that
/// reached the kernel would now fail with EBADF, so InvalidInput proves
/// the check came first.
fn redirect_fd(file: &File, other: &std::fs::File) {
    // SAFETY: dup2 between two fds this test owns; `file` keeps owning
    // its fd number (now a duplicate of `other`'s) and closes it on drop.
    let r = unsafe { libc::dup2(other.as_raw_fd(), file.as_raw_fd()) };
    assert_eq!(r, file.as_raw_fd(), "dup2: {}", io::Error::last_os_error());
}

fn assert_misaligned(r: io::Result<usize>, what: &str, align: usize) {
    let err = r.expect_err(what);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}: {err}");
    let msg = err.to_string();
    assert!(
        msg.to_lowercase().contains("align") && msg.contains(&align.to_string()),
        "{what}: the message should name the alignment ({align}): {msg}"
    );
}

/// Each kind of misalignment, on reads and on writes, from green threads
/// and an OS thread: InvalidInput naming the alignment, with nothing read
/// or written.
fn misaligned(ctx: Ctx, kind: &'static str) {
    run_in(ctx, move || {
        let dir = TempDir::new("misaligned");
        let path = dir.file("m");
        let content = pattern(64 << 10, 2);
        std_write_synced(&path, &content);
        let file = open_direct(&path, true);
        let a = alignment(&file);
        let unit = a.offset;
        let mut buf = AlignedBuf::new(4 * unit + a.memory, a.memory);
        buf.fill(0xa5);
        // (buffer start, length, offset, which alignment the message names)
        let cases: Vec<(usize, usize, u64, usize)> = match kind {
            "address" if a.memory > 1 => vec![(1, 2 * unit, 0), (a.memory / 2, unit, unit as u64)]
                .into_iter()
                .map(|(s, l, o)| (s, l, o, a.memory))
                .collect(),
            "offset" if unit > 1 => vec![
                (0, unit, 1, unit),
                (0, unit, unit as u64 / 2 + unit as u64, unit),
            ],
            "length" if unit > 1 => vec![(0, 1, 0, unit), (0, unit + unit / 2, 0, unit)],
            _ => {
                println!("skipped: {kind} alignment is 1 on this file system ({a})");
                return;
            }
        };
        let ro = std::fs::File::open(&path).unwrap();
        let wo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (start, len, offset, align) in cases {
            let what = format!("{kind}: {len} bytes at buffer+{start}, file offset {offset}");
            // Reads: the fd is write-only now, so a read syscall would give
            // EBADF; and the buffer stays untouched.
            redirect_fd(&file, &wo);
            assert_misaligned(
                file.read_at(&mut buf[start..start + len], offset),
                &format!("read_at, {what}"),
                align,
            );
            let err = file
                .read_exact_at(&mut buf[start..start + len], offset)
                .expect_err("read_exact_at");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(
                buf.iter().all(|&b| b == 0xa5),
                "{what}: the buffer was written"
            );
            // Writes: the fd is read-only now; the file stays as it was.
            redirect_fd(&file, &ro);
            buf.fill(0x11);
            assert_misaligned(
                file.write_at(&buf[start..start + len], offset),
                &format!("write_at, {what}"),
                align,
            );
            let err = file
                .write_all_at(&buf[start..start + len], offset)
                .expect_err("write_all_at");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            buf.fill(0xa5);
        }
        // An aligned request does reach the (redirected) fd: EBADF.
        redirect_fd(&file, &wo);
        let err = file.read_at(&mut buf[..unit], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        assert!(
            std::fs::read(&path).unwrap() == content,
            "a misaligned write changed the file"
        );
    });
}

#[test]
fn misaligned_buffer_address_is_invalid_input_before_any_syscall() {
    misaligned(Ctx::Green, "address");
    misaligned(Ctx::Os, "address");
}

#[test]
fn misaligned_offset_is_invalid_input_before_any_syscall() {
    misaligned(Ctx::Green, "offset");
    misaligned(Ctx::Os, "offset");
}

#[test]
fn misaligned_length_is_invalid_input_before_any_syscall() {
    misaligned(Ctx::Green, "length");
    misaligned(Ctx::Os, "length");
}

#[test]
fn misaligned_file_position_is_invalid_input_for_read_and_write() {
    run_in(Ctx::Green, || {
        let dir = TempDir::new("pos");
        let path = dir.file("p");
        let content = pattern(16 << 10, 3);
        std_write_synced(&path, &content);
        let mut file = open_direct(&path, true);
        let a = alignment(&file);
        if a.offset == 1 {
            println!("skipped: offset alignment is 1 here");
            return;
        }
        let mut buf = AlignedBuf::new(a.offset, a.memory);
        file.seek(SeekFrom::Start(1)).unwrap();
        let err = file.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(&a.offset.to_string()), "{err}");
        let err = (&file).write(&buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(file.stream_position().unwrap(), 1, "the position moved");
        assert!(buf.iter().all(|&b| b == 0));
        assert!(std::fs::read(&path).unwrap() == content);
        // Aligned again, the same calls work.
        file.seek(SeekFrom::Start(a.offset as u64)).unwrap();
        file.read_exact(&mut buf).unwrap();
        assert!(buf[..] == content[a.offset..2 * a.offset]);
    });
}

/// Candidates for a file system that refuses O_DIRECT: procfs and sysfs
/// files (open(O_DIRECT) gives EINVAL there).
fn path_without_o_direct() -> Option<&'static str> {
    use std::os::unix::fs::OpenOptionsExt;
    [
        "/proc/version",
        "/proc/self/status",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ]
    .into_iter()
    .find(|p| {
        std::fs::File::open(p).is_ok()
            && std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(p)
                .is_err()
    })
}

#[test]
fn direct_on_a_file_system_without_o_direct_is_unsupported_naming_the_path() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let Some(path) = path_without_o_direct() else {
                println!("skipped: no file here refuses O_DIRECT (/proc, /sys all take it)");
                return;
            };
            let err = OpenOptions::new()
                .read(true)
                .direct(true)
                .open(path)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{path}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(path) && msg.contains("O_DIRECT"),
                "the error should say O_DIRECT is unsupported and name {path}: {msg}"
            );
            println!("{path}: {msg}");
            // The same file opens fine buffered.
            assert!(!greenrt::fs::read(path).unwrap().is_empty());
        });
    }
}

#[test]
fn direct_read_at_end_of_file_returns_what_exists_then_zero() {
    for ctx in [Ctx::Green, Ctx::Os] {
        run_in(ctx, || {
            let dir = TempDir::new("deof");
            let path = dir.file("eof");
            let content = pattern(10_000, 4);
            std_write_synced(&path, &content);
            let file = open_direct(&path, false);
            let a = alignment(&file);
            let mut buf = AlignedBuf::new(16384, a.memory);
            // 8192 is a multiple of any offset alignment up to 4096.
            assert_eq!(file.read_at(&mut buf[..4096], 8192).unwrap(), 10_000 - 8192);
            assert!(buf[..10_000 - 8192] == content[8192..]);
            // A read of more than is left returns what is left.
            assert_eq!(file.read_at(&mut buf, 0).unwrap(), 10_000);
            assert!(buf[..10_000] == content[..]);
            assert_eq!(file.read_at(&mut buf[..4096], 12288).unwrap(), 0);
            assert_eq!(file.read_at(&mut buf[..4096], 1 << 30).unwrap(), 0);
            let err = file.read_exact_at(&mut buf[..4096], 8192).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
            let err = file.read_exact_at(&mut buf, 0).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
            file.read_exact_at(&mut buf[..8192], 0).unwrap();
            assert!(buf[..8192] == content[..8192]);
            // Through the position: full chunks, then the rest.
            let mut f = &file;
            assert_eq!(f.read(&mut buf[..8192]).unwrap(), 8192);
            assert_eq!(
                f.read(&mut buf[..8192]).unwrap(),
                10_000 - 8192,
                "the second read through the position (at {})",
                f.stream_position().unwrap()
            );
            assert!(buf[..10_000 - 8192] == content[8192..]);
        });
    }
}

#[test]
fn whole_suite_passes_again_with_io_uring_off() {
    fs_util::whole_suite_again_with_io_uring_off();
}

/// Direct reads and writes through the file position while the page
/// cache holds pages of the file (here dirty ones, from std's buffered
/// write; the kernel must flush and drop them first, which io_uring does
/// off its fast path, in its io-wq workers): each request moves the
/// position past what it transferred, as std's do.
fn through_position_after_buffered_writes(ctx: Ctx) {
    run_in(ctx, || {
        let dir = TempDir::new("dirty");
        let path = dir.file("d");
        let size = 256 << 10;
        std::fs::write(&path, pattern(size, 20)).unwrap();
        let file = open_direct(&path, true);
        let a = alignment(&file);
        let chunk = 64 << 10;
        // Reads: std's buffered write leaves the pages dirty.
        let content = pattern(size, 21);
        std::fs::write(&path, &content).unwrap();
        let mut buf = AlignedBuf::new(chunk, a.memory);
        let mut got = Vec::new();
        for i in 0..size / chunk + 1 {
            let n = (&file).read(&mut buf).unwrap();
            let pos = (&file).stream_position().unwrap();
            assert_eq!(
                pos as usize,
                got.len() + n,
                "read {i} of {n} bytes left the position at {pos}"
            );
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        roundtrip::assert_same(&got, &content, "direct reads through the position");
        // Writes: dirty pages again, then chunks through the position.
        std::fs::write(&path, pattern(size, 22)).unwrap();
        let content = pattern(size, 23);
        (&file).rewind().unwrap();
        for (i, c) in content.chunks(chunk).enumerate() {
            buf.copy_from_slice(c);
            (&file).write_all(&buf).unwrap();
            let pos = (&file).stream_position().unwrap();
            assert_eq!(
                pos as usize,
                (i + 1) * chunk,
                "write {i} left the position at {pos}"
            );
        }
        roundtrip::assert_same(
            &std::fs::read(&path).unwrap(),
            &content,
            "direct writes through the position",
        );
    });
}

#[test]
fn direct_io_through_the_position_after_buffered_writes_on_green_threads() {
    through_position_after_buffered_writes(Ctx::Green);
}

#[test]
fn direct_io_through_the_position_after_buffered_writes_on_an_os_thread() {
    through_position_after_buffered_writes(Ctx::Os);
}
