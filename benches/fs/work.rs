//! What the fs bench runs on every implementation: the data file, how it
//! is read (mode, pattern, depth, stop rule), the offsets handed to the
//! readers, and the figures of one run.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::process_cpu;

/// Size of a random read.
pub const BLOCK: usize = 4096;
/// Size of a sequential read.
pub const CHUNK: usize = 1 << 20;
/// RWF_DONTCACHE (Linux 6.14; not in the libc crate yet).
pub const RWF_DONTCACHE: i32 = 0x80;
/// ext4's `statfs` magic number.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;

/// How the file is opened and read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// O_DIRECT: no page cache.
    Direct,
    /// Through the page cache.
    Buffered,
    /// Through the page cache, dropping the pages a read brings in
    /// (RWF_DONTCACHE).
    DontCache,
}

/// Which offsets are read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pattern {
    /// [`BLOCK`]-sized reads at random [`BLOCK`]-aligned offsets.
    Random,
    /// [`CHUNK`]-sized reads, in file order, shared by all readers (so
    /// `depth` readers keep `depth` requests of one sequential stream in
    /// flight, as fio's sequential reads at that queue depth).
    Sequential,
}

/// One run's work.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub mode: Mode,
    pub pattern: Pattern,
    /// Green threads / tasks / requests in flight.
    pub depth: usize,
    /// Run this long (sequential reads wrap around the file), or, when
    /// None, read the file once (sequential only).
    pub duration: Option<Duration>,
}

impl Job {
    /// Bytes per read.
    pub fn len(&self) -> usize {
        match self.pattern {
            Pattern::Random => BLOCK,
            Pattern::Sequential => CHUNK,
        }
    }
}

/// Hands out the offsets of one run to any number of readers.
pub struct Offsets {
    pattern: Pattern,
    /// Reads that fit in the file.
    slots: u64,
    len: u64,
    next: AtomicU64,
    seeds: AtomicU64,
    deadline: Option<Instant>,
}

impl Offsets {
    /// Starts a run of `job` over a file of `size` bytes: the deadline
    /// counts from now.
    pub fn start(job: &Job, size: u64) -> Offsets {
        let len = job.len() as u64;
        Offsets {
            pattern: job.pattern,
            slots: size / len,
            len,
            next: AtomicU64::new(0),
            seeds: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            deadline: job.duration.map(|d| Instant::now() + d),
        }
    }

    /// A reader's random state (distinct per call, never zero).
    pub fn rng(&self) -> u64 {
        let mut z = self
            .seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    }

    /// The next offset to read, or None when the run is over.
    pub fn next(&self, rng: &mut u64) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        match self.pattern {
            Pattern::Random => Some(xorshift(rng) % self.slots * self.len),
            Pattern::Sequential => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if self.deadline.is_none() && i >= self.slots {
                    None
                } else {
                    Some(i % self.slots * self.len)
                }
            }
        }
    }
}

pub fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

/// The figures of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub reads: u64,
    pub bytes: u64,
    /// Seconds from the start of the run until every reader finished.
    pub wall: f64,
    /// Process CPU seconds (all threads, user + system) over the run.
    pub cpu: f64,
}

impl Sample {
    pub fn per_sec(&self) -> f64 {
        self.reads as f64 / self.wall
    }

    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.wall
    }

    /// CPU microseconds per read.
    pub fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.reads.max(1) as f64
    }
}

/// Wall and process CPU time from the start of a run.
pub struct Clock {
    wall: Instant,
    cpu: Duration,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            cpu: process_cpu(),
            wall: Instant::now(),
        }
    }

    pub fn stop(self, reads: u64, len: usize) -> Sample {
        Sample {
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: (process_cpu() - self.cpu).as_secs_f64(),
            reads,
            bytes: reads * len as u64,
        }
    }
}

/// The bench's data file of `mib` MiB in `dir`: made once (pseudo-random
/// bytes, synced) and reused by later runs.
pub fn data_file(dir: &Path, mib: u64) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("data-{mib}MiB.bin"));
    let size = mib << 20;
    if fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(path);
    }
    println!("[fs] creating {} ({mib} MiB), once", path.display());
    let tmp = dir.join(format!("data-{mib}MiB.tmp"));
    let mut file = fs::File::create(&tmp)?;
    let (mut buf, mut rng) = (vec![0u8; CHUNK], 0x2545_F491_4F6C_DD1D_u64);
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            word.copy_from_slice(&xorshift(&mut rng).to_le_bytes());
        }
        file.write_all(&buf)?;
    }
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The file system type of `path`: "ext4" or its statfs magic number.
pub fn fs_type(path: &Path) -> io::Result<String> {
    let file = fs::File::open(path)?;
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open fd; `st` is a valid, writable statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if st.f_type as i64 == EXT4_SUPER_MAGIC {
        "ext4".into()
    } else {
        format!("{:#x}", st.f_type)
    })
}

/// Drops the file's pages from the page cache (it is clean: written and
/// synced once).
pub fn evict(path: &Path) -> io::Result<()> {
    let file = fs::File::open(path)?;
    // SAFETY: a plain syscall on an open fd.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Brings the whole file into the page cache.
pub fn warm(path: &Path) -> io::Result<()> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}

/// Resident share of the file in the page cache, in percent.
pub fn resident_percent(path: &Path) -> io::Result<f64> {
    Ok(greenrt::fs::residency(path)?.fraction() * 100.0)
}

/// Opens the file with std, O_DIRECT if `direct`.
pub fn std_open(path: &Path, direct: bool) -> io::Result<fs::File> {
    let flags = if direct { libc::O_DIRECT } else { 0 };
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}
