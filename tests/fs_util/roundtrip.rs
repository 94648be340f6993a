//! Byte-for-byte comparisons of `greenrt::fs::File` with std: sequential
//! and random reads and writes, buffered or direct, from green threads or
//! plain OS threads (fs.rs runs them buffered, fs_direct.rs direct).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use greenrt::fs::{AlignedBuf, File, OpenOptions};

use super::{pattern, spawn_like, Ctx, Rng, TempDir};

fn open_rw(path: &Path, direct: bool, create: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .direct(direct)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} (direct: {direct}): {e}", path.display()))
}

/// The unit offsets and lengths are made of: 1 buffered, the file's
/// offset alignment direct.
fn unit(f: &File) -> usize {
    f.direct_alignment().map_or(1, |a| a.offset)
}

/// A buffer for `bytes` that any request on `f` may use.
fn buf_for(f: &File, bytes: &[u8]) -> AlignedBuf {
    let align = f.direct_alignment().map_or(1, |a| a.memory);
    let mut b = AlignedBuf::new(bytes.len(), align);
    b.copy_from_slice(bytes);
    b
}

/// Fails, saying where, unless `got` is `expected`.
pub fn assert_same(got: &[u8], expected: &[u8], what: &str) {
    if got == expected {
        return;
    }
    let first = got.iter().zip(expected).position(|(a, b)| a != b);
    let last = got.iter().zip(expected).rposition(|(a, b)| a != b);
    panic!(
        "{what}: other bytes than expected: {} bytes, expected {}; first difference at {first:?}, \
         last at {last:?}",
        got.len(),
        expected.len()
    );
}

/// Sequential I/O against std: writes through `Write` (on `File` and
/// `&File`) read back by std; std's writes read through `Read`;
/// `write_all_at`/`read_exact_at` in order; and `Seek` (on `File` and
/// `&File`) to the start, the middle, relative and from the end.
pub fn sequential(ctx: Ctx, direct: bool) {
    // The directory is made and removed inside, under SERIAL: removing
    // it opens an fd, which would blur another test's count.
    super::run_in(ctx, move || {
        let dir = TempDir::new("seq");
        sequential_body(&dir.file("seq"), direct)
    });
}

fn sequential_body(path: &Path, direct: bool) {
    // Written through the file position, in chunks of several sizes.
    let mut file = open_rw(path, direct, true);
    let u = unit(&file);
    let size = (1 << 20) + 7 * 4096 + if direct { 0 } else { 12_345 };
    let content = pattern(size, 1);
    let chunk_sizes: Vec<usize> = if direct {
        vec![u, 4096, 64 << 10, 3 * u, 128 << 10]
    } else {
        vec![1, 100, 4096, (64 << 10) + 3, 7]
    };
    let mut at = 0;
    for (i, &c) in chunk_sizes.iter().cycle().enumerate() {
        if at == size {
            break;
        }
        let c = c.min(size - at);
        let chunk = buf_for(&file, &content[at..at + c]);
        if i % 2 == 0 {
            file.write_all(&chunk).expect("File::write_all");
        } else {
            (&file).write_all(&chunk).expect("<&File>::write_all");
        }
        at += c;
    }
    (&file).flush().unwrap();
    file.sync_all().expect("sync_all");
    assert_eq!(file.metadata().unwrap().len(), size as u64);
    assert_eq!(file.stream_position().unwrap(), size as u64);
    let std_view = std::fs::read(path).unwrap();
    assert!(
        std_view == content,
        "std reads back other bytes than File::write wrote"
    );

    // std writes (through the page cache), File reads through its
    // position.
    let content2 = pattern(size, 2);
    super::std_write_synced(path, &content2);
    (&file).rewind().unwrap();
    let mut got = Vec::with_capacity(size);
    if direct {
        let mut buf = AlignedBuf::new(64 << 10, file.direct_alignment().unwrap().memory);
        loop {
            let n = (&file).read(&mut buf).expect("<&File>::read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            // A position that does not move would read for ever.
            assert!(
                got.len() <= size,
                "<&File>::read returned {} bytes of a {size}-byte file (the file position \
                 is not advancing?)",
                got.len()
            );
        }
    } else {
        (&file).read_to_end(&mut got).expect("<&File>::read_to_end");
    }
    assert_same(&got, &content2, "File::read after std's write");

    // Positional, in order: write_all_at, then read_exact_at.
    let content3 = pattern(size, 3);
    let step = 256 << 10;
    for off in (0..size).step_by(step) {
        let end = (off + step).min(size);
        let chunk = buf_for(&file, &content3[off..end]);
        file.write_all_at(&chunk, off as u64).expect("write_all_at");
    }
    file.sync_data().expect("sync_data");
    assert!(
        std::fs::read(path).unwrap() == content3,
        "after write_all_at"
    );
    let mut back = AlignedBuf::new(size, file.direct_alignment().map_or(1, |a| a.memory));
    for off in (0..size).step_by(step) {
        let end = (off + step).min(size);
        file.read_exact_at(&mut back[off..end], off as u64)
            .expect("read_exact_at");
    }
    assert!(back[..] == content3[..], "read_exact_at gave other bytes");

    // Seek: to the middle (aligned), relative, from the end.
    let mid = (size / 2) / 4096 * 4096;
    assert_eq!(file.seek(SeekFrom::Start(mid as u64)).unwrap(), mid as u64);
    let mut b = AlignedBuf::new(8192, file.direct_alignment().map_or(1, |a| a.memory));
    file.read_exact(&mut b).expect("read_exact after seek");
    assert!(b[..] == content3[mid..mid + 8192]);
    assert_eq!(
        (&file).seek(SeekFrom::Current(-4096)).unwrap(),
        (mid + 4096) as u64
    );
    (&file).read_exact(&mut b[..4096]).unwrap();
    assert!(b[..4096] == content3[mid + 4096..mid + 8192]);
    // read_at/write_at leave the position alone.
    file.read_at(&mut b[..4096], 0).unwrap();
    assert_eq!(file.stream_position().unwrap(), (mid + 8192) as u64);
    let tail = size - size % 4096 - 4096;
    let from_end = (size - tail) as i64;
    assert_eq!(file.seek(SeekFrom::End(-from_end)).unwrap(), tail as u64);
    let mut rest = Vec::new();
    if direct {
        let n = file.read(&mut b).unwrap();
        rest.extend_from_slice(&b[..n]);
        assert_eq!(file.read(&mut b).unwrap(), 0, "read at end of file");
    } else {
        file.read_to_end(&mut rest).unwrap();
    }
    assert!(
        rest[..] == content3[tail..],
        "the file's tail after SeekFrom::End"
    );
    // Writes through the position after a seek land where std says.
    let patch = buf_for(&file, &pattern(4096, 4));
    file.seek(SeekFrom::Start(4096)).unwrap();
    file.write_all(&patch).unwrap();
    assert_eq!(file.stream_position().unwrap(), 8192);
    let std_view = std::fs::read(path).unwrap();
    assert!(std_view[4096..8192] == patch[..] && std_view[8192..] == content3[8192..]);
}

/// Random `read_at`/`read_exact_at`/`write_at`/`write_all_at` by
/// `workers` green or OS threads sharing one `File` (each on its own
/// region, checked against its own model of it), then the whole file
/// against std.
pub fn random(ctx: Ctx, direct: bool) {
    super::run_in(ctx, move || {
        let dir = TempDir::new("rand");
        random_body(ctx, &dir.file("rand"), direct)
    });
}

fn random_body(ctx: Ctx, path: &Path, direct: bool) {
    const WORKERS: usize = 4;
    const REGION: usize = 512 << 10;
    const OPS: usize = 150;
    let initial = pattern(WORKERS * REGION, 10);
    std::fs::write(path, &initial).unwrap();
    let file = Arc::new(open_rw(path, direct, false));
    let joins: Vec<_> = (0..WORKERS)
        .map(|w| {
            let file = file.clone();
            let mut model = initial[w * REGION..(w + 1) * REGION].to_vec();
            spawn_like(ctx, move || {
                let base = (w * REGION) as u64;
                let u = unit(&file);
                let mem = file.direct_alignment().map_or(1, |a| a.memory);
                let mut rng = Rng::new(w as u64 + 100);
                for op in 0..OPS {
                    let units = REGION / u;
                    let max_len_units = ((64 << 10) / u).max(1);
                    let off = rng.below(units as u64) as usize * u;
                    let len = ((1 + rng.below(max_len_units as u64) as usize) * u)
                        .min(REGION - off)
                        .max(u);
                    let len = if direct {
                        len
                    } else {
                        len - rng.below(u as u64) as usize
                    };
                    match op % 4 {
                        0 => {
                            let data = pattern(len, rng.next());
                            let mut b = AlignedBuf::new(len, mem);
                            b.copy_from_slice(&data);
                            file.write_all_at(&b, base + off as u64)
                                .expect("write_all_at");
                            model[off..off + len].copy_from_slice(&data);
                        }
                        1 => {
                            let data = pattern(len, rng.next());
                            let mut b = AlignedBuf::new(len, mem);
                            b.copy_from_slice(&data);
                            let n = file.write_at(&b, base + off as u64).expect("write_at");
                            assert!(n > 0 && n <= len && n % u == 0, "write_at wrote {n}");
                            model[off..off + n].copy_from_slice(&data[..n]);
                        }
                        2 => {
                            let mut b = AlignedBuf::new(len, mem);
                            file.read_exact_at(&mut b, base + off as u64)
                                .expect("read_exact_at");
                            assert!(
                                b[..] == model[off..off + len],
                                "worker {w}: read_exact_at({len} at {off}) differs from the model"
                            );
                        }
                        _ => {
                            let mut b = AlignedBuf::new(len, mem);
                            let n = file.read_at(&mut b, base + off as u64).expect("read_at");
                            assert!(n > 0 && n <= len, "read_at read {n} of {len}");
                            assert!(
                                b[..n] == model[off..off + n],
                                "worker {w}: read_at({len} at {off}) differs from the model"
                            );
                        }
                    }
                }
                model
            })
        })
        .collect();
    let mut expected = Vec::with_capacity(initial.len());
    for j in joins {
        expected.extend_from_slice(&j());
    }
    file.sync_all().unwrap();
    let std_view = std::fs::read(path).unwrap();
    assert_eq!(std_view.len(), expected.len());
    let first_diff = std_view.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "std reads other bytes than the random writes left"
    );
}
