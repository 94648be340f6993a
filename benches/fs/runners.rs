//! The three implementations of a [`Job`]: greenrt green threads, tokio
//! tasks the way tokio's users write them, and a raw io_uring loop (the
//! device-limit reference). Each sets up (runtime, file, buffers) before
//! its clock starts and returns the figures of the run.

use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use greenrt::fs::AlignedBuf;
use io_uring::{opcode, types, IoUring};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::work::{std_open, Clock, Job, Mode, Offsets, Sample, BLOCK, RWF_DONTCACHE};
use crate::WORKERS;

/// Buffers for `job`'s readers, aligned for O_DIRECT (whatever the mode:
/// the same memory for every implementation).
fn buffers(job: &Job, align: usize) -> Vec<AlignedBuf> {
    (0..job.depth)
        .map(|_| AlignedBuf::new(job.len(), align))
        .collect()
}

/// Sums the reads of all readers (the first error wins).
fn total(counts: impl IntoIterator<Item = io::Result<u64>>) -> io::Result<u64> {
    counts.into_iter().sum()
}

/// `depth` green threads on [`WORKERS`] workers, each reading with
/// `File::read_exact_at` into its own buffer.
pub fn greenrt(job: &Job, path: &Path, size: u64) -> io::Result<Sample> {
    let rt = greenrt::Builder::new().workers(WORKERS).build()?;
    let mut opts = greenrt::fs::OpenOptions::new();
    opts.read(true)
        .direct(job.mode == Mode::Direct)
        .dontcache(job.mode == Mode::DontCache);
    let file = Arc::new(opts.open(path)?);
    // Page-aligned like the other implementations' buffers (the
    // file may need less: a 4 KiB read into a buffer straddling two
    // pages costs the kernel a second segment).
    let align = file
        .direct_alignment()
        .map_or(BLOCK, |a| a.memory.max(BLOCK));
    let bufs = buffers(job, align);
    let job = *job;
    rt.block_on(move || {
        let clock = Clock::start();
        let offsets = Arc::new(Offsets::start(&job, size));
        let readers: Vec<_> = bufs
            .into_iter()
            .map(|mut buf| {
                let (file, offsets) = (file.clone(), offsets.clone());
                greenrt::spawn(move || {
                    let (mut rng, mut reads) = (offsets.rng(), 0);
                    while let Some(off) = offsets.next(&mut rng) {
                        file.read_exact_at(&mut buf, off)?;
                        reads += 1;
                    }
                    Ok(reads)
                })
            })
            .collect();
        let reads = total(
            readers
                .into_iter()
                .map(|r| r.join().expect("reader panicked")),
        )?;
        Ok(clock.stop(reads, job.len()))
    })
}

/// tokio on [`WORKERS`] workers, `depth` tasks, as its users read files:
/// O_DIRECT through std (`custom_flags`), an aligned buffer and one
/// `spawn_blocking` per read (tokio::fs cannot do O_DIRECT: its buffer is
/// unaligned); buffered reads through `tokio::fs::File` (one per task,
/// `seek` then `read_exact`). None for RWF_DONTCACHE, which tokio lacks.
pub fn tokio(job: &Job, path: &Path, size: u64) -> io::Result<Option<Sample>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()?;
    match job.mode {
        Mode::Direct => rt.block_on(tokio_direct(*job, path, size)).map(Some),
        Mode::Buffered => rt.block_on(tokio_fs(*job, path, size)).map(Some),
        Mode::DontCache => Ok(None),
    }
}

async fn tokio_direct(job: Job, path: &Path, size: u64) -> io::Result<Sample> {
    let file = Arc::new(std_open(path, true)?);
    let bufs = buffers(&job, BLOCK);
    let clock = Clock::start();
    let offsets = Arc::new(Offsets::start(&job, size));
    let tasks: Vec<_> = bufs
        .into_iter()
        .map(|mut buf| {
            let (file, offsets) = (file.clone(), offsets.clone());
            tokio::spawn(async move {
                let (mut rng, mut reads) = (offsets.rng(), 0);
                while let Some(off) = offsets.next(&mut rng) {
                    let file = file.clone();
                    buf = tokio::task::spawn_blocking(move || {
                        file.read_exact_at(&mut buf, off).map(|()| buf)
                    })
                    .await
                    .expect("blocking read panicked")?;
                    reads += 1;
                }
                Ok(reads)
            })
        })
        .collect();
    let mut counts = Vec::with_capacity(tasks.len());
    for t in tasks {
        counts.push(t.await.expect("reader panicked"));
    }
    Ok(clock.stop(total(counts)?, job.len()))
}

async fn tokio_fs(job: Job, path: &Path, size: u64) -> io::Result<Sample> {
    let mut readers = Vec::with_capacity(job.depth);
    for _ in 0..job.depth {
        readers.push((tokio::fs::File::open(path).await?, vec![0u8; job.len()]));
    }
    let clock = Clock::start();
    let offsets = Arc::new(Offsets::start(&job, size));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|(mut file, mut buf)| {
            let offsets = offsets.clone();
            tokio::spawn(async move {
                let (mut rng, mut reads) = (offsets.rng(), 0);
                while let Some(off) = offsets.next(&mut rng) {
                    file.seek(SeekFrom::Start(off)).await?;
                    file.read_exact(&mut buf).await?;
                    reads += 1;
                }
                Ok::<u64, io::Error>(reads)
            })
        })
        .collect();
    let mut counts = Vec::with_capacity(tasks.len());
    for t in tasks {
        counts.push(t.await.expect("reader panicked"));
    }
    Ok(clock.stop(total(counts)?, job.len()))
}

/// One thread keeping `depth` reads in flight on its own io_uring ring:
/// queue a read per free buffer, `submit_and_wait(1)`, take every
/// completion, requeue.
pub fn raw(job: &Job, path: &Path, size: u64) -> io::Result<Sample> {
    let file = std_open(path, job.mode == Mode::Direct)?;
    let fd = types::Fd(file.as_raw_fd());
    let rw_flags = if job.mode == Mode::DontCache {
        RWF_DONTCACHE
    } else {
        0
    };
    let mut ring = IoUring::new(job.depth.next_power_of_two() as u32)?;
    let mut bufs = buffers(job, BLOCK);
    let len = job.len();
    let mut done: Vec<(usize, i32)> = Vec::with_capacity(job.depth);

    let clock = Clock::start();
    let offsets = Offsets::start(job, size);
    let mut rng = offsets.rng();
    let (mut in_flight, mut reads, mut failed) = (0, 0u64, None);
    let mut queue = |ring: &mut IoUring, slot: usize, buf: &mut AlignedBuf| -> bool {
        let Some(off) = offsets.next(&mut rng) else {
            return false;
        };
        let sqe = opcode::Read::new(fd, buf.as_mut_ptr(), len as u32)
            .offset(off)
            .rw_flags(rw_flags)
            .build()
            .user_data(slot as u64);
        // SAFETY: the buffer (owned by `bufs`) is not touched until this
        // read's completion is taken, and every queued read is reaped
        // below before `bufs` or `file` can go (errors stop the queueing,
        // not the reaping). The queue has a free entry: at most `depth`
        // reads are queued between submissions.
        unsafe { ring.submission().push(&sqe) }.expect("submission queue full");
        true
    };
    for (slot, buf) in bufs.iter_mut().enumerate() {
        in_flight += usize::from(queue(&mut ring, slot, buf));
    }
    while in_flight > 0 {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Reads may still be in flight into `bufs`: freeing them
                // (by returning or unwinding) could let the kernel write
                // into reused memory.
                eprintln!("[fs] raw loop: io_uring_enter failed with reads in flight: {e}");
                std::process::abort();
            }
        }
        done.extend(
            ring.completion()
                .map(|c| (c.user_data() as usize, c.result())),
        );
        for (slot, res) in done.drain(..) {
            in_flight -= 1;
            if res as usize != len {
                failed = Some(if res < 0 {
                    io::Error::from_raw_os_error(-res)
                } else {
                    io::Error::other(format!("short read: {res} of {len} bytes"))
                });
            }
            reads += 1;
            if failed.is_none() {
                in_flight += usize::from(queue(&mut ring, slot, &mut bufs[slot]));
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(clock.stop(reads, len))
}
