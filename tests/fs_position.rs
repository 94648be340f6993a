//! The file position under `Read`, `Write` and `Seek` on greenrt files,
//! direct and buffered, with every backend.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use greenrt::fs::{AlignedBuf, OpenOptions};

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("greenrt-fs-position-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// io_uring's "current position" offset (-1) does not move the position
/// for direct reads, which complete asynchronously: a read loop over a
/// direct file read the first block for ever.
#[test]
fn direct_reads_and_writes_move_the_file_position() {
    let path = temp_path("direct-pos.dat");
    let data = pattern(64 * 1024);
    std::fs::write(&path, &data).unwrap();
    let rt = common::runtime(2);
    let (path2, data2) = (path.clone(), data.clone());
    rt.block_on(move || {
        let data = data2;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .direct(true)
            .open(&path2)
            .unwrap();
        let a = f.direct_alignment().unwrap();
        let mut buf = AlignedBuf::new(4096, a.memory);
        for i in 0..3 {
            f.read_exact(&mut buf).unwrap();
            assert_eq!(&buf[..], &data[i * 4096..(i + 1) * 4096], "block {i}");
        }
        assert_eq!(f.stream_position().unwrap(), 3 * 4096);
        // A read loop ends at end of file.
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut total = 0;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            assert!(total <= data.len(), "read past the end: {total}");
        }
        assert_eq!(total, data.len());
        // Writes move it too.
        f.seek(SeekFrom::Start(4096)).unwrap();
        buf.fill(0xAB);
        f.write_all(&buf).unwrap();
        assert_eq!(f.stream_position().unwrap(), 2 * 4096);
    });
    let back = std::fs::read(&path).unwrap();
    assert!(back[4096..8192].iter().all(|&b| b == 0xAB));
    assert_eq!(&back[..4096], &data[..4096]);
    assert_eq!(&back[8192..], &data[8192..]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn buffered_reads_and_appends_move_the_file_position() {
    let path = temp_path("buffered-pos.dat");
    let data = pattern(10_000);
    std::fs::write(&path, &data).unwrap();
    let rt = common::runtime(2);
    let (path2, data2) = (path.clone(), data.clone());
    rt.block_on(move || {
        let data = data2;
        let mut f = greenrt::fs::File::open(&path2).unwrap();
        let mut buf = [0u8; 3000];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(f.stream_position().unwrap(), 3000);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[3000..]);
        let mut a = OpenOptions::new().append(true).open(&path2).unwrap();
        a.write_all(b"tail").unwrap();
        assert_eq!(a.stream_position().unwrap(), data.len() as u64 + 4);
    });
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        data.len() as u64 + 4
    );
    std::fs::remove_file(&path).unwrap();
}

/// A direct file whose size is not a multiple of its alignment: the short
/// read at its end leaves the position unaligned; the next read says end
/// of file (0), as read(2) would, so a read-until-0 loop ends cleanly.
#[test]
fn direct_read_loop_ends_at_an_unaligned_end_of_file() {
    let path = temp_path("direct-unaligned-eof.dat");
    let data = pattern(3 * 4096 + 100);
    std::fs::write(&path, &data).unwrap();
    let rt = common::runtime(1);
    let (path2, data2) = (path.clone(), data.clone());
    rt.block_on(move || {
        let mut f = OpenOptions::new()
            .read(true)
            .direct(true)
            .open(&path2)
            .unwrap();
        let mut buf = AlignedBuf::new(4096, f.direct_alignment().unwrap().memory);
        let mut got = Vec::new();
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read after {} bytes: {e}", got.len()),
            }
        }
        assert_eq!(got, data2);
        // An explicit misaligned offset is still the caller's mistake.
        let e = f.read_at(&mut buf, 4097).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    });
    std::fs::remove_file(&path).unwrap();
}

/// Green threads writing through one shared `&File` (position-based
/// writes): every write gets its own stretch of the file, as write(2) on
/// a shared file gives; then green threads reading through one `&File`
/// get every byte exactly once. io_uring's "at the file position" offset
/// moves the position without read(2)'s lock: the writes overlapped
/// (a file short of what was written) and the readers read the same
/// bytes twice.
#[test]
fn green_threads_sharing_a_buffered_file_each_write_and_read_their_own_bytes() {
    const THREADS: u8 = 4;
    const WRITES: usize = 500;
    const LEN: usize = 100;
    let path = temp_path("shared-buffered.dat");
    let rt = common::runtime(2);
    let path2 = path.clone();
    let (len, counts) = rt.block_on(move || {
        let f = std::sync::Arc::new(greenrt::fs::File::create(&path2).unwrap());
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let f = f.clone();
                greenrt::spawn(move || {
                    for _ in 0..WRITES {
                        (&*f).write_all(&[b'a' + t; LEN]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let len = f.metadata().unwrap().len();
        f.sync_all().unwrap();
        let f = std::sync::Arc::new(greenrt::fs::File::open(&path2).unwrap());
        // Out of the page cache, so the reads go through the ring.
        // SAFETY: a plain syscall on an open fd.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&*f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        let readers: Vec<_> = (0..THREADS)
            .map(|_| {
                let f = f.clone();
                greenrt::spawn(move || {
                    let mut counts = [0usize; 256];
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match (&*f).read(&mut buf).unwrap() {
                            0 => break counts,
                            n => buf[..n].iter().for_each(|&b| counts[b as usize] += 1),
                        }
                    }
                })
            })
            .collect();
        let mut counts = [0usize; 256];
        for r in readers {
            for (c, n) in counts.iter_mut().zip(r.join().unwrap()) {
                *c += n;
            }
        }
        (len, counts)
    });
    assert_eq!(
        len,
        (THREADS as usize * WRITES * LEN) as u64,
        "bytes in the file"
    );
    for t in 0..THREADS {
        assert_eq!(
            counts[(b'a' + t) as usize],
            WRITES * LEN,
            "bytes of writer {t} read back"
        );
    }
    assert_eq!(
        counts.iter().sum::<usize>(),
        len as usize,
        "bytes read in all"
    );
    std::fs::remove_file(&path).unwrap();
}

/// The same for a direct file, whose position greenrt reads, uses and
/// moves itself: the writers all wrote at the same offsets.
#[test]
fn green_threads_sharing_a_direct_file_each_write_their_own_blocks() {
    const THREADS: u8 = 4;
    const WRITES: usize = 50;
    let path = temp_path("shared-direct.dat");
    let rt = common::runtime(1);
    let path2 = path.clone();
    rt.block_on(move || {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .direct(true)
            .open(&path2)
            .unwrap();
        let a = f.direct_alignment().unwrap();
        let f = std::sync::Arc::new(f);
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let f = f.clone();
                greenrt::spawn(move || {
                    let mut buf = AlignedBuf::new(4096, a.memory);
                    buf.fill(b'a' + t);
                    for _ in 0..WRITES {
                        (&*f).write_all(&buf).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
    });
    let back = std::fs::read(&path).unwrap();
    assert_eq!(
        back.len(),
        THREADS as usize * WRITES * 4096,
        "bytes in the file"
    );
    for t in 0..THREADS {
        let n = back.iter().filter(|&&b| b == b'a' + t).count();
        assert_eq!(n, WRITES * 4096, "bytes of writer {t}");
    }
    std::fs::remove_file(&path).unwrap();
}

/// pread(2) and pwrite(2) refuse an offset past `i64::MAX` (EINVAL), as
/// std's `read_at` and `write_at` report; as -1 it meant "at the file
/// position" to the kernel, which read and wrote there and moved it.
#[test]
fn read_at_and_write_at_past_i64_max_are_invalid_input_and_leave_the_position() {
    let path = temp_path("huge-offset.dat");
    std::fs::write(&path, b"0123456789").unwrap();
    let rt = common::runtime(1);
    let path2 = path.clone();
    rt.block_on(move || {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path2)
            .unwrap();
        f.seek(SeekFrom::Start(2)).unwrap();
        for offset in [u64::MAX, i64::MAX as u64 + 1] {
            let mut buf = [0u8; 4];
            let e = f.read_at(&mut buf, offset).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "read_at {offset}"
            );
            // EINVAL, as std reports it from the kernel.
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "read_at {offset}");
            let e = f.write_at(b"XY", offset).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "write_at {offset}"
            );
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "write_at {offset}");
            assert_eq!(f.stream_position().unwrap(), 2);
        }
        let e = f.seek(SeekFrom::Start(u64::MAX)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "seek");
        assert_eq!(f.stream_position().unwrap(), 2);
    });
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    std::fs::remove_file(&path).unwrap();
}

/// A FIFO opened for reading and writing, shared by two green threads:
/// one reads (and waits for data), the other writes. The position lock of
/// regular files was held through the waiting read, so the writer waited
/// for it for ever; a FIFO has no position to share.
#[test]
fn a_shared_fifo_can_be_written_while_a_green_thread_waits_to_read_it() {
    let path = temp_path("shared.fifo");
    let _ = std::fs::remove_file(&path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a plain syscall on a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let rt = common::runtime(2);
    let path2 = path.clone();
    let got = rt.block_on(move || {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path2)
            .unwrap();
        let f = std::sync::Arc::new(f);
        let r = f.clone();
        let reader = greenrt::spawn(move || {
            let mut buf = [0u8; 5];
            (&*r).read_exact(&mut buf).unwrap();
            buf
        });
        greenrt::sleep(std::time::Duration::from_millis(50));
        let writer = {
            let f = f.clone();
            greenrt::spawn(move || (&*f).write_all(b"hello").unwrap())
        };
        writer
            .join_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the writer waited 10 s behind the waiting reader"))
            .unwrap();
        reader
            .join_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the reader got nothing in 10 s"))
            .unwrap()
    });
    assert_eq!(&got, b"hello");
    std::fs::remove_file(&path).unwrap();
}
