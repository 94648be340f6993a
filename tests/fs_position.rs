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
