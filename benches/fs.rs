//! File reads: greenrt::fs against tokio (the way its users read files)
//! and a raw io_uring loop (the device-limit reference), in one run.
//!
//! Implementations (see `fs/runners.rs`), 2 workers each:
//!
//! - greenrt: N green threads, `greenrt::fs::File::read_exact_at`
//!   (`OpenOptions::direct(true)` for O_DIRECT, `dontcache(true)` for
//!   RWF_DONTCACHE).
//! - tokio: N tasks; O_DIRECT through std's File (`custom_flags`), an
//!   aligned buffer and `spawn_blocking` per read; buffered through
//!   `tokio::fs::File` (`seek` + `read_exact`); no RWF_DONTCACHE.
//! - raw: one thread, its own io_uring ring, N reads kept in flight with
//!   `submit_and_wait(1)`.
//!
//! Cases: random 4 KiB O_DIRECT reads at depth 64 and sequential 1 MiB
//! O_DIRECT reads by 4 readers, for a fixed time; random 4 KiB buffered
//! reads of a file the page cache holds, depth 64, for a fixed time; one
//! pass over the whole file in 1 MiB reads, 4 readers, O_DIRECT, buffered
//! and RWF_DONTCACHE, each after evicting the file (POSIX_FADV_DONTNEED),
//! with the file's page-cache residency after the pass. Each case runs
//! for several rounds, the implementations in a rotating order; the table
//! gives medians and ratios of medians. Throughput is reads (or bytes)
//! over the wall time until every reader finished; CPU is the process's
//! CPU time (all threads, user + system, `CLOCK_PROCESS_CPUTIME_ID`) over
//! the run, per read.
//!
//! The data file (`GREENRT_FS_BENCH_MIB`, default 1024 MiB; 128 with
//! `--quick`) is made once in `GREENRT_FS_BENCH_DIR` (default
//! `/var/tmp/greenrt-fs-bench`, which should be on ext4) and reused.
//!
//! `cargo bench --bench fs` (about 3½ minutes on 2 cores), or
//! `cargo bench --bench fs -- --quick` (a smoke run, about 20 s);
//! `--secs S` / `GREENRT_FS_BENCH_SECS` and `--rounds N` /
//! `GREENRT_FS_BENCH_ROUNDS` override the run time (3 s) and the rounds
//! (5); other arguments pick cases by a part of their name (e.g.
//! `cargo bench --bench fs -- "one pass"`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
#[path = "fs/runners.rs"]
mod runners;
#[path = "fs/work.rs"]
mod work;

use common::{benchmarking, load_average, median};
use work::{Job, Mode, Pattern, Sample};

/// Worker threads of greenrt and tokio.
const WORKERS: usize = 2;
/// Green threads / tasks / reads in flight for random reads.
const RANDOM_DEPTH: usize = 64;
/// Readers for sequential reads.
const SEQ_DEPTH: usize = 4;

struct Config {
    secs: f64,
    rounds: usize,
    mib: u64,
    dir: PathBuf,
    /// Run only the cases whose name contains one of these (all if empty).
    filters: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str, var: &str| {
            let arg = args.iter().position(|a| a == flag);
            arg.and_then(|i| args.get(i + 1).cloned())
                .or_else(|| std::env::var(var).ok())
                .map(|v| {
                    v.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{flag}: bad number {v}"))
                })
        };
        let with_value = ["--secs", "--rounds", "--mib"];
        let filters = args
            .iter()
            .enumerate()
            .filter(|&(i, a)| {
                !a.starts_with("--") && (i == 0 || !with_value.contains(&args[i - 1].as_str()))
            })
            .map(|(_, a)| a.clone())
            .collect();
        Config {
            filters,
            secs: value("--secs", "GREENRT_FS_BENCH_SECS").unwrap_or(if quick { 0.3 } else { 3.0 }),
            rounds: value("--rounds", "GREENRT_FS_BENCH_ROUNDS")
                .map_or(if quick { 2 } else { 5 }, |r| r as usize)
                .max(1),
            mib: value("--mib", "GREENRT_FS_BENCH_MIB")
                .map_or(if quick { 128 } else { 1024 }, |m| m as u64)
                .max(1),
            dir: std::env::var_os("GREENRT_FS_BENCH_DIR")
                .map_or_else(|| "/var/tmp/greenrt-fs-bench".into(), PathBuf::from),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Greenrt,
    Tokio,
    Raw,
}

const IMPLS: [Impl; 3] = [Impl::Greenrt, Impl::Tokio, Impl::Raw];

impl Impl {
    /// Runs `job`; None where the implementation has no such mode.
    fn run(self, job: &Job, path: &Path, size: u64) -> io::Result<Option<Sample>> {
        match self {
            Impl::Greenrt => runners::greenrt(job, path, size).map(Some),
            Impl::Tokio => runners::tokio(job, path, size),
            Impl::Raw => runners::raw(job, path, size).map(Some),
        }
    }
}

/// What happens to the page cache before each run of a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prep {
    Evict,
    Warm,
}

struct Case {
    name: &'static str,
    job: Job,
    prep: Prep,
}

/// One implementation's runs of a case.
#[derive(Default)]
struct Runs {
    samples: Vec<Sample>,
    /// Page-cache residency (percent) after each one-pass run.
    resident: Vec<f64>,
    /// Why it did not run (error or unsupported), if so.
    missing: Option<String>,
}

impl Runs {
    fn med(&self, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().map(f).collect();
        (self.missing.is_none() && !v.is_empty()).then(|| median(&v))
    }
}

fn cases(secs: f64) -> Vec<Case> {
    let timed = Some(Duration::from_secs_f64(secs));
    let job = |mode, pattern, depth, duration| Job {
        mode,
        pattern,
        depth,
        duration,
    };
    let one_pass = |mode| job(mode, Pattern::Sequential, SEQ_DEPTH, None);
    vec![
        Case {
            name: "random 4 KiB O_DIRECT, depth 64",
            job: job(Mode::Direct, Pattern::Random, RANDOM_DEPTH, timed),
            prep: Prep::Evict,
        },
        Case {
            name: "sequential 1 MiB O_DIRECT, 4 readers",
            job: job(Mode::Direct, Pattern::Sequential, SEQ_DEPTH, timed),
            prep: Prep::Evict,
        },
        Case {
            name: "buffered random 4 KiB, cached, depth 64",
            job: job(Mode::Buffered, Pattern::Random, RANDOM_DEPTH, timed),
            prep: Prep::Warm,
        },
        Case {
            name: "one pass 1 MiB × 4, O_DIRECT",
            job: one_pass(Mode::Direct),
            prep: Prep::Evict,
        },
        Case {
            name: "one pass 1 MiB × 4, buffered",
            job: one_pass(Mode::Buffered),
            prep: Prep::Evict,
        },
        Case {
            name: "one pass 1 MiB × 4, RWF_DONTCACHE",
            job: one_pass(Mode::DontCache),
            prep: Prep::Evict,
        },
    ]
}

/// Runs a case's rounds, rotating the implementations' order.
fn run_case(case: &Case, cfg: &Config, path: &Path, size: u64) -> io::Result<[Runs; 3]> {
    let mut runs: [Runs; 3] = Default::default();
    for round in 0..cfg.rounds {
        for k in 0..IMPLS.len() {
            let i = (round + k) % IMPLS.len();
            if runs[i].missing.is_some() {
                continue;
            }
            match case.prep {
                Prep::Evict => work::evict(path)?,
                Prep::Warm => work::warm(path)?,
            }
            let sample = match IMPLS[i].run(&case.job, path, size) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    runs[i].missing = Some("n/a".into());
                    continue;
                }
                Err(e) => {
                    println!("[fs] {} / {:?}: {e}", case.name, IMPLS[i]);
                    runs[i].missing = Some(format!("error: {e}"));
                    continue;
                }
            };
            let mut line = format!(
                "[fs] {} / {:?} round {}: {:.0} reads/s, {:.0} MiB/s, {:.1} µs CPU per read",
                case.name,
                IMPLS[i],
                round + 1,
                sample.per_sec(),
                sample.mib_per_sec(),
                sample.cpu_us()
            );
            if case.job.duration.is_none() {
                let resident = work::resident_percent(path)?;
                line += &format!(", {resident:.1} % resident after");
                runs[i].resident.push(resident);
            }
            println!("{line}");
            runs[i].samples.push(sample);
        }
    }
    Ok(runs)
}

/// A table row: a figure of the three implementations.
struct Row {
    label: String,
    values: [Option<f64>; 3],
    format: fn(f64) -> String,
    ratios: bool,
}

fn rows(case: &Case, runs: &[Runs; 3]) -> Vec<Row> {
    let each = |f: &dyn Fn(&Runs) -> Option<f64>| [f(&runs[0]), f(&runs[1]), f(&runs[2])];
    let row = |what: &str, values, format: fn(f64) -> String, ratios| Row {
        label: format!("{}: {what}", case.name),
        values,
        format,
        ratios,
    };
    let per_sec = each(&|r| r.med(Sample::per_sec));
    let mib = each(&|r| r.med(Sample::mib_per_sec));
    let cpu = each(&|r| r.med(Sample::cpu_us));
    let resident =
        each(&|r| (r.missing.is_none() && !r.resident.is_empty()).then(|| median(&r.resident)));
    match (case.job.pattern, case.job.duration) {
        (Pattern::Random, _) => vec![
            row("reads/s", per_sec, thousands, true),
            row("CPU µs per read", cpu, one_decimal, true),
        ],
        (Pattern::Sequential, Some(_)) => vec![
            row("MiB/s", mib, thousands, true),
            row("CPU µs per 1 MiB read", cpu, one_decimal, true),
        ],
        (Pattern::Sequential, None) => vec![
            row("MiB/s", mib, thousands, true),
            row("resident after", resident, percent, false),
        ],
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

fn percent(v: f64) -> String {
    format!("{v:.1} %")
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn print_table(rows: &[Row]) {
    println!("\n| case | greenrt | tokio | raw io_uring | greenrt / tokio | greenrt / raw |");
    println!("|---|---|---|---|---|---|");
    let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or("n/a".into(), f);
    for r in rows {
        let [g, t, raw] = r.values;
        let (gt, gr) = if r.ratios {
            (ratio(g, t), ratio(g, raw))
        } else {
            (None, None)
        };
        let ratio_cell = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.2}"));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.label,
            cell(g, r.format),
            cell(t, r.format),
            cell(raw, r.format),
            ratio_cell(gt),
            ratio_cell(gr)
        );
    }
}

/// The targets, checked against the table.
fn print_targets(rows: &[Row]) {
    let find = |case: &str, what: &str| {
        rows.iter()
            .find(|r| r.label.starts_with(case) && r.label.ends_with(what))
            .map(|r| r.values)
    };
    let check = |name: &str, value: Option<f64>, ok: &dyn Fn(f64) -> bool| match value {
        Some(v) => println!(
            "target {name}: {v:.2} — {}",
            if ok(v) { "met" } else { "MISSED" }
        ),
        None => println!("target {name}: not measured"),
    };
    let random = find("random 4 KiB O_DIRECT", "reads/s").unwrap_or_default();
    let cpu = find("random 4 KiB O_DIRECT", "per read").unwrap_or_default();
    let seq = find("sequential 1 MiB O_DIRECT", "MiB/s").unwrap_or_default();
    let cached = find("buffered random", "reads/s").unwrap_or_default();
    println!();
    check(
        "random O_DIRECT reads/s, greenrt / tokio ≥ 1",
        ratio(random[0], random[1]),
        &|v| v >= 1.0,
    );
    check(
        "random O_DIRECT reads/s, greenrt / raw ≥ 0.9",
        ratio(random[0], random[2]),
        &|v| v >= 0.9,
    );
    check(
        "random O_DIRECT CPU per read, greenrt / tokio ≤ 0.5",
        ratio(cpu[0], cpu[1]),
        &|v| v <= 0.5,
    );
    check(
        "sequential O_DIRECT MiB/s, greenrt / raw ≥ 0.95",
        ratio(seq[0], seq[2]),
        &|v| v >= 0.95,
    );
    check(
        "buffered cached reads/s, greenrt / tokio::fs ≥ 1",
        ratio(cached[0], cached[1]),
        &|v| v >= 1.0,
    );
    let direct = find("one pass 1 MiB × 4, O_DIRECT", "resident after").unwrap_or_default();
    let buffered = find("one pass 1 MiB × 4, buffered", "resident after").unwrap_or_default();
    check("O_DIRECT pass, greenrt % resident ≈ 0", direct[0], &|v| {
        v < 1.0
    });
    check(
        "buffered pass, greenrt % resident ≈ 100",
        buffered[0],
        &|v| v >= 95.0,
    );
    check(
        "buffered pass, tokio::fs % resident ≈ 100",
        buffered[1],
        &|v| v >= 95.0,
    );
}

fn main() -> io::Result<()> {
    if !benchmarking() {
        println!("[fs] not benchmarking (run with `cargo bench --bench fs`): skipped");
        return Ok(());
    }
    let cfg = Config::from_args();
    let path = work::data_file(&cfg.dir, cfg.mib)?;
    let size = cfg.mib << 20;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "[fs] {} ({} MiB, {}), Linux {}, greenrt backend {:?}{}; {WORKERS} workers each; \
         {} s per timed run, {} rounds; load average {}",
        path.display(),
        cfg.mib,
        work::fs_type(&path)?,
        kernel.trim(),
        greenrt::fs::backend(),
        greenrt::fs::backend_reason().map_or(String::new(), |r| format!(" ({r})")),
        cfg.secs,
        cfg.rounds,
        load_average()
    );
    let mut table = Vec::new();
    for case in cases(cfg.secs) {
        if !cfg.filters.is_empty() && !cfg.filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        if case.job.mode == Mode::DontCache {
            let probe = greenrt::fs::OpenOptions::new()
                .read(true)
                .dontcache(true)
                .open(&path);
            if let Err(e) = probe {
                println!("[fs] {}: skipped: {e}", case.name);
                continue;
            }
        }
        let runs = run_case(&case, &cfg, &path, size)?;
        table.extend(rows(&case, &runs));
    }
    work::evict(&path)?;
    println!("\n[fs] load average at the end {}", load_average());
    print_table(&table);
    print_targets(&table);
    Ok(())
}
