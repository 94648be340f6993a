//! `file_server`'s helper modes: making the demo tree, dropping files
//! from the page cache, and residency reports (as vmtouch prints them).

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use greenrt::fs::{residency, AlignedBuf, OpenOptions, Residency};

/// What `--make-demo` creates.
pub struct DemoSpec {
    pub dir: PathBuf,
    pub big_mib: u64,
    pub small_files: u64,
    pub small_kib: u64,
}

impl Default for DemoSpec {
    fn default() -> DemoSpec {
        DemoSpec {
            dir: PathBuf::new(),
            big_mib: 1024,
            small_files: 200,
            small_kib: 16,
        }
    }
}

/// Fills `buf` with xorshift64* noise from `seed` (incompressible, and
/// different for every file and chunk, so a wrong offset shows).
fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for word in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&v[..word.len()]);
    }
}

/// Creates the demo tree: `small/NNN.bin` (hot) and `big.bin` (cold:
/// written with O_DIRECT, so none of it is cached afterwards).
pub fn make(spec: &DemoSpec) -> io::Result<()> {
    let small = spec.dir.join("small");
    std::fs::create_dir_all(&small)?;
    let mut buf = vec![0u8; (spec.small_kib << 10) as usize];
    for i in 0..spec.small_files {
        fill(&mut buf, i + 1);
        greenrt::fs::write(small.join(format!("{i:03}.bin")), &buf)?;
    }
    let big = spec.dir.join("big.bin");
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .direct(true)
        .open(&big);
    let (file, direct) = match opened {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            eprintln!("file_server: {e}: writing it buffered, then evicting it");
            (greenrt::fs::File::create(&big)?, false)
        }
        Err(e) => return Err(e),
    };
    let align = file.direct_alignment().map_or(4096, |a| a.memory.max(4096));
    let mut chunk = AlignedBuf::new(1 << 20, align);
    for i in 0..spec.big_mib {
        fill(&mut chunk, 1_000_000 + i);
        file.write_all_at(&chunk, i << 20)?;
    }
    file.sync_all()?;
    drop(file);
    if !direct {
        evict_file(&big)?;
    }
    println!(
        "file_server: made {}: {} files of {} KiB in small/, big.bin of {} MiB ({})",
        spec.dir.display(),
        spec.small_files,
        spec.small_kib,
        spec.big_mib,
        if direct {
            "written with O_DIRECT"
        } else {
            "buffered"
        }
    );
    Ok(())
}

/// The regular files at `paths`, directories walked (sorted).
fn files(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if std::fs::metadata(p)?.is_dir() {
            let mut entries = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()?;
            entries.sort();
            out.extend(files(&entries)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Writes back a file's dirty pages, then asks the kernel to drop all of
/// its cached pages (clean pages go at once; no root needed).
fn evict_file(path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    file.sync_data()?;
    // SAFETY: a plain syscall on an fd we hold open; it touches no memory
    // of ours.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// `--evict`: drops every file at `paths` from the page cache and shows
/// what is left.
pub fn evict(paths: &[PathBuf]) -> io::Result<()> {
    let list = files(paths)?;
    for f in &list {
        evict_file(f)?;
    }
    let list: Vec<_> = list.into_iter().map(|p| (p, "")).collect();
    report(&list);
    Ok(())
}

/// `--residency`: prints the page-cache residency of the files at
/// `paths`.
pub fn print_residency(paths: &[PathBuf]) -> io::Result<()> {
    let list: Vec<_> = files(paths)?.into_iter().map(|p| (p, "")).collect();
    report(&list);
    Ok(())
}

fn line(r: Residency, what: &str) -> String {
    format!(
        "{:>8}/{:<8} {:>5.1}%  {what}",
        r.resident_pages,
        r.total_pages,
        r.fraction() * 100.0,
    )
}

/// Prints each file's residency (resident pages / total pages, as
/// vmtouch), then a total per kind (`how`: "direct", "buffered", or ""
/// for one total).
pub fn report(files: &[(PathBuf, &str)]) {
    println!("page-cache residency: resident pages/total pages (4 KiB), percent");
    if files.is_empty() {
        println!("  (no files)");
    }
    let mut totals: Vec<(&str, u64, Residency)> = Vec::new();
    for (path, how) in files {
        let r = match residency(path) {
            Ok(r) => r,
            Err(e) => {
                println!("  {}: {e}", path.display());
                continue;
            }
        };
        println!("  {}", line(r, &format!("{how:<8} {}", path.display())));
        let i = match totals.iter().position(|t| t.0 == *how) {
            Some(i) => i,
            None => {
                totals.push((how, 0, Residency::default()));
                totals.len() - 1
            }
        };
        totals[i].1 += 1;
        totals[i].2.resident_pages += r.resident_pages;
        totals[i].2.total_pages += r.total_pages;
    }
    for (how, n, r) in totals {
        let label = if how.is_empty() { "" } else { how };
        let mib = |pages: u64| pages as f64 * 4096.0 / (1 << 20) as f64;
        let (res, tot) = (mib(r.resident_pages), mib(r.total_pages));
        let what = format!("{label:<8} total of {n} files ({res:.1} of {tot:.1} MiB resident)");
        println!("  {}", line(r, &what));
    }
}
