//! `greenrt::io::copy` from a file to a greenrt stream socket: sendfile(2)
//! for buffered files (greenrt's and std's, and `Take`s of them), the
//! buffered copy for O_DIRECT files; bytes, counts, file positions and
//! `Take` limits as a read loop would leave them; a full socket parks the
//! green thread, not the worker.
//!
//! Every test holds `SERIAL`: they compare the process-wide copy counters.

mod common;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::io::CopyStats;
use greenrt::net::{TcpListener, TcpStream};
use greenrt::os::unix::net::UnixStream;

use common::serial;

const MIB: usize = 1 << 20;

/// A file in Cargo's scratch directory for integration tests (on the
/// build's file system, which O_DIRECT needs: tmpfs refuses it), removed
/// on drop.
struct TempFile {
    path: PathBuf,
    data: Vec<u8>,
}

impl TempFile {
    /// `len` bytes of a pattern no shift of which repeats it soon.
    fn new(name: &str, len: usize) -> TempFile {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("io_copy_file-{}-{name}", std::process::id()));
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, &data).unwrap();
        TempFile { path, data }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A connected greenrt TCP pair: (sender, receiver).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (c, l.accept().unwrap().0)
}

/// Copies with `copy` from a green thread of a 2-worker runtime into a
/// socket whose peer a green thread reads to end of stream; returns the
/// copy's result, the bytes received and the counter deltas.
fn copy_to_socket<R, F>(unix: bool, make_reader: F) -> (u64, Vec<u8>, R, CopyStats)
where
    R: Read + Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let before = greenrt::io::stats();
    let (n, got, reader) = common::block_on(2, move || {
        let mut reader = make_reader();
        let (n, sink) = if unix {
            let (mut dst, mut sink) = UnixStream::pair().unwrap();
            let v = greenrt::spawn(move || read_all(&mut sink));
            (greenrt::io::copy(&mut reader, &mut dst).unwrap(), v)
        } else {
            let (mut dst, mut sink) = tcp_pair();
            let v = greenrt::spawn(move || read_all(&mut sink));
            (greenrt::io::copy(&mut reader, &mut dst).unwrap(), v)
        };
        // `dst` dropped at the end of its block: the sink sees EOF.
        (n, sink.join().unwrap(), reader)
    });
    (n, got, reader, greenrt::io::stats().since(&before))
}

fn read_all(r: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    got
}

fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "byte count");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("first differing byte at offset {i}");
    }
}

fn assert_sendfile(d: &CopyStats, bytes: usize) {
    assert_eq!(d.spliced_bytes, bytes as u64, "{d:?}");
    assert_eq!(d.copied_bytes, 0, "{d:?}");
    assert!(d.sendfile_calls > 0, "{d:?}");
    assert_eq!((d.splice_calls, d.fallbacks), (0, 0), "{d:?}");
}

#[test]
fn greenrt_file_to_tcp_uses_sendfile() {
    let _serial = serial();
    let f = TempFile::new("tcp", 5 * MIB);
    let path = f.path.clone();
    let (n, got, mut file, d) =
        copy_to_socket(false, move || greenrt::fs::File::open(&path).unwrap());
    assert_eq!(n, f.data.len() as u64);
    assert_same(&got, &f.data);
    assert_sendfile(&d, f.data.len());
    assert_eq!(file.stream_position().unwrap(), f.data.len() as u64);
}

#[test]
fn greenrt_file_to_unix_stream_uses_sendfile() {
    let _serial = serial();
    let f = TempFile::new("unix", 5 * MIB + 77);
    let path = f.path.clone();
    let (n, got, _file, d) = copy_to_socket(true, move || greenrt::fs::File::open(&path).unwrap());
    assert_eq!(n, f.data.len() as u64);
    assert_same(&got, &f.data);
    assert_sendfile(&d, f.data.len());
}

#[test]
fn std_file_to_tcp_uses_sendfile_from_its_position() {
    let _serial = serial();
    let f = TempFile::new("std", 3 * MIB + 5);
    let path = f.path.clone();
    let (n, got, mut file, d) = copy_to_socket(false, move || {
        let mut file = std::fs::File::open(&path).unwrap();
        file.seek(SeekFrom::Start(4099)).unwrap();
        file
    });
    assert_eq!(n, (f.data.len() - 4099) as u64);
    assert_same(&got, &f.data[4099..]);
    assert_sendfile(&d, f.data.len() - 4099);
    assert_eq!(file.stream_position().unwrap(), f.data.len() as u64);
}

#[test]
fn empty_file_copies_nothing() {
    let _serial = serial();
    let f = TempFile::new("empty", 0);
    let path = f.path.clone();
    let (n, got, _file, d) = copy_to_socket(false, move || greenrt::fs::File::open(&path).unwrap());
    assert_eq!((n, got.len()), (0, 0));
    assert_eq!((d.spliced_bytes, d.copied_bytes), (0, 0), "{d:?}");
}

/// A file whose pages are not cached (dropped with POSIX_FADV_DONTNEED)
/// is sent all the same: those chunks are sent with the worker's P
/// handed on while the disk is read.
#[test]
fn cold_file_is_sent_too() {
    let _serial = serial();
    let f = TempFile::new("cold", 5 * MIB);
    let file = std::fs::File::open(&f.path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: an advice on an open fd; no memory of ours is touched.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
    let (n, got, _file, d) = copy_to_socket(false, move || file);
    assert_eq!(n, f.data.len() as u64);
    assert_same(&got, &f.data);
    assert_sendfile(&d, f.data.len());
}

/// A `Take` copies at most its limit, leaves the file position after the
/// bytes sent and its limit shrunk by them; what follows in the file is
/// still there for the next copy.
#[test]
fn take_honours_its_limit_and_the_file_position() {
    let _serial = serial();
    let f = TempFile::new("take", 4 * MIB);
    let (start, limit) = (1000usize, 2 * MIB + 123);
    let path = f.path.clone();
    let (n, got, take, d) = copy_to_socket(false, move || {
        let mut file = greenrt::fs::File::open(&path).unwrap();
        file.seek(SeekFrom::Start(start as u64)).unwrap();
        file.take(limit as u64)
    });
    assert_eq!(n, limit as u64);
    assert_same(&got, &f.data[start..start + limit]);
    assert_sendfile(&d, limit);
    assert_eq!(take.limit(), 0);
    let mut file = take.into_inner();
    assert_eq!(file.stream_position().unwrap(), (start + limit) as u64);

    // The rest, through a Take whose limit is beyond the end of file.
    let (n, got, take, d) = copy_to_socket(false, move || file.take(u64::MAX - 1));
    let rest = f.data.len() - start - limit;
    assert_eq!(n, rest as u64);
    assert_same(&got, &f.data[start + limit..]);
    assert_sendfile(&d, rest);
    assert_eq!(take.limit(), u64::MAX - 1 - rest as u64);

    // A std file in a Take, and a zero limit.
    let path = f.path.clone();
    let (n, got, take, d) =
        copy_to_socket(false, move || std::fs::File::open(&path).unwrap().take(10));
    assert_eq!((n, take.limit()), (10, 0));
    assert_same(&got, &f.data[..10]);
    assert_sendfile(&d, 10);
    let path = f.path.clone();
    let (n, got, mut take, _) = copy_to_socket(false, move || {
        greenrt::fs::File::open(&path).unwrap().take(0)
    });
    assert_eq!((n, got.len()), (0, 0));
    assert_eq!(take.get_mut().stream_position().unwrap(), 0);
}

fn open_direct(path: &std::path::Path) -> io::Result<greenrt::fs::File> {
    greenrt::fs::OpenOptions::new()
        .read(true)
        .direct(true)
        .open(path)
}

/// An O_DIRECT file is read directly (the buffered copy, with an aligned
/// buffer), never through the page cache by sendfile; a size that is not
/// a multiple of the alignment ends in a short read, and the position
/// ends after the bytes copied. A `Take` of one copies its limit.
#[test]
fn direct_file_copies_without_sendfile() {
    let _serial = serial();
    let f = TempFile::new("direct", 5 * MIB + 100);
    if let Err(e) = open_direct(&f.path) {
        eprintln!("skipped: no O_DIRECT on {}: {e}", f.path.display());
        return;
    }
    let path = f.path.clone();
    let (n, got, mut file, d) = copy_to_socket(false, move || {
        let file = open_direct(&path).unwrap();
        assert!(file.direct_alignment().is_some());
        file
    });
    assert_eq!(n, f.data.len() as u64);
    assert_same(&got, &f.data);
    assert_eq!(d.copied_bytes, f.data.len() as u64, "{d:?}");
    assert_eq!((d.spliced_bytes, d.sendfile_calls), (0, 0), "{d:?}");
    assert_eq!(file.stream_position().unwrap(), f.data.len() as u64);

    let path = f.path.clone();
    let (n, got, take, d) = copy_to_socket(false, move || {
        let mut file = open_direct(&path).unwrap();
        file.seek(SeekFrom::Start(MIB as u64)).unwrap();
        file.take(2 * MIB as u64)
    });
    assert_eq!((n, take.limit()), (2 * MIB as u64, 0));
    assert_same(&got, &f.data[MIB..3 * MIB]);
    assert_eq!((d.spliced_bytes, d.sendfile_calls), (0, 0), "{d:?}");
    let mut file = take.into_inner();
    assert_eq!(file.stream_position().unwrap(), 3 * MIB as u64);
}

/// A `Take` of a direct file whose limit is not a multiple of the file's
/// alignment: the last read asks for an aligned length and keeps only the
/// limit, and the next copy starts from the unaligned position it left.
/// Before, `Take` shortened the buffer to the limit and the read failed
/// with `InvalidInput` partway.
#[test]
fn direct_take_with_an_unaligned_limit_copies_exactly_the_limit() {
    let _serial = serial();
    let f = TempFile::new("direct-unaligned-take", 3 * MIB + 100);
    if let Err(e) = open_direct(&f.path) {
        eprintln!("skipped: no O_DIRECT on {}: {e}", f.path.display());
        return;
    }
    let path = f.path.clone();
    let (n, got, take, _) = copy_to_socket(false, move || {
        let mut file = open_direct(&path).unwrap();
        file.seek(SeekFrom::Start(4096)).unwrap();
        file.take(MIB as u64 + 1234)
    });
    assert_eq!((n, take.limit()), (MIB as u64 + 1234, 0));
    assert_same(&got, &f.data[4096..4096 + MIB + 1234]);
    let mut file = take.into_inner();
    let at = 4096 + MIB as u64 + 1234;
    assert_eq!(file.stream_position().unwrap(), at);
    // From that unaligned position to the end of the file.
    let (n, got, mut file, _) = copy_to_socket(false, move || file);
    assert_eq!(n, f.data.len() as u64 - at);
    assert_same(&got, &f.data[at as usize..]);
    assert_eq!(file.stream_position().unwrap(), f.data.len() as u64);
}

/// Buffered mode never uses sendfile.
#[test]
fn buffered_mode_never_sendfiles() {
    let _serial = serial();
    let f = TempFile::new("buffered", MIB + 1);
    let path = f.path.clone();
    let before = greenrt::io::stats();
    let got = common::block_on(1, move || {
        let mut file = greenrt::fs::File::open(&path).unwrap();
        let (mut dst, mut sink) = tcp_pair();
        let v = greenrt::spawn(move || read_all(&mut sink));
        let opts = greenrt::io::CopyOptions::new().mode(greenrt::io::CopyMode::Buffered);
        let n = greenrt::io::copy_with(&mut file, &mut dst, opts).unwrap();
        drop(dst);
        assert_eq!(n, (MIB + 1) as u64);
        v.join().unwrap()
    });
    assert_same(&got, &f.data);
    let d = greenrt::io::stats().since(&before);
    assert_eq!(d.copied_bytes, (MIB + 1) as u64, "{d:?}");
    assert_eq!((d.spliced_bytes, d.sendfile_calls), (0, 0), "{d:?}");
}

fn set_buffer(fd: &impl AsRawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one c_int from a live local; the fd is open.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// A slow reader fills the socket: the copying green thread parks on it
/// and the only worker goes on running another green thread, which keeps
/// ticking all through the copy.
#[test]
fn slow_reader_parks_the_sender_not_the_worker() {
    let _serial = serial();
    const READ: usize = 64 * 1024;
    let f = TempFile::new("slow", 4 * MIB);
    let path = f.path.clone();
    let before = greenrt::io::stats();
    let (got, ticks_during) = common::block_on(1, move || {
        let mut file = greenrt::fs::File::open(&path).unwrap();
        let (mut dst, mut sink) = tcp_pair();
        set_buffer(&dst, libc::SO_SNDBUF, READ as libc::c_int);
        set_buffer(&sink, libc::SO_RCVBUF, READ as libc::c_int);
        // The receiver is a plain OS thread: it must not share the worker.
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; READ];
            loop {
                std::thread::sleep(Duration::from_millis(2));
                match sink.read(&mut buf).unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicU64::new(0));
        let ticker = {
            let (ticks, stop) = (ticks.clone(), stop.clone());
            greenrt::spawn(move || {
                while stop.load(Ordering::Relaxed) == 0 {
                    greenrt::sleep(Duration::from_millis(1));
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let t0 = ticks.load(Ordering::Relaxed);
        let n = greenrt::io::copy(&mut file, &mut dst).unwrap();
        let ticks_during = ticks.load(Ordering::Relaxed) - t0;
        stop.store(1, Ordering::Relaxed);
        ticker.join().unwrap();
        drop(dst);
        assert_eq!(n, 4 * MIB as u64);
        (reader.join().unwrap(), ticks_during)
    });
    assert_same(&got, &f.data);
    let d = greenrt::io::stats().since(&before);
    assert_sendfile(&d, 4 * MIB);
    // At least 64 reads 2 ms apart: well over 100 ms of copying, during
    // which 1 ms ticks go on (a blocked worker would allow none).
    assert!(d.sendfile_calls > 8, "the sender never waited: {d:?}");
    assert!(
        ticks_during >= 20,
        "only {ticks_during} ticks during the copy"
    );
}

/// The source file does not support sendfile (a pipe, here through a
/// std File): the copy falls back to read/write without losing a byte.
#[test]
fn pipe_source_falls_back_to_the_buffered_copy() {
    let _serial = serial();
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the live array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the fds were just made by pipe2 and are owned by nobody else.
    let (r, mut w) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let feed = {
        let data = data.clone();
        std::thread::spawn(move || w.write_all(&data).unwrap())
    };
    let (n, got, _r, d) = copy_to_socket(false, move || r);
    feed.join().unwrap();
    assert_eq!(n, data.len() as u64);
    assert_same(&got, &data);
    assert_eq!(d.copied_bytes, data.len() as u64, "{d:?}");
    assert_eq!((d.spliced_bytes, d.fallbacks), (0, 1), "{d:?}");
}
