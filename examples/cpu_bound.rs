//! The classic demonstration of preemption: 30 green threads on ONE
//! worker, each adding 2 to a counter 10^8 times without ever yielding.
//!
//! With preemption (the default) they take turns every quantum and finish
//! close together; with `GREENRT_PREEMPT=off` they run one after another.
//!
//! cargo run --release --example cpu_bound
//! cargo run --release --example cpu_bound -- 1   # a 1 ms quantum
//! GREENRT_PREEMPT=off cargo run --release --example cpu_bound
//! cargo run --release --example cpu_bound -- --trace trace.svg   # or .json
//!
//! The optional argument is the preemption quantum in milliseconds
//! (default: the runtime's, 10 ms). The run is recorded with
//! `greenrt::trace` (a few hundred records, nothing next to the work), and
//! printed at the end as a text timeline drawn from the recording;
//! `--trace <file.svg|file.json>` also writes the recording as a picture
//! or as Chrome Trace Event JSON (Perfetto, `chrome://tracing`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const THREADS: usize = 30;
const ITERATIONS: u64 = 100_000_000;
/// Columns of the text timeline.
const COLUMNS: usize = 60;

struct Args {
    quantum: Option<Duration>,
    trace: Option<PathBuf>,
}

const USAGE: &str = "usage: cpu_bound [QUANTUM_MS] [--trace FILE.svg|FILE.json]";

fn args() -> Args {
    let fail = |why: &str| -> ! {
        eprintln!("cpu_bound: {why}\n{USAGE}");
        std::process::exit(2)
    };
    let mut args = Args {
        quantum: None,
        trace: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            println!(
                "  QUANTUM_MS  the preemption quantum in milliseconds (default: the runtime's)"
            );
            println!("  --trace F   also write the recording to F, an .svg picture or Chrome JSON");
            std::process::exit(0);
        } else if arg == "--trace" {
            let path = PathBuf::from(it.next().unwrap_or_else(|| fail("--trace needs a file")));
            let ext = path.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("svg" | "json")) {
                fail("the trace file's name ends in .svg or .json");
            }
            args.trace = Some(path);
        } else {
            let ms: f64 = arg
                .parse()
                .unwrap_or_else(|_| fail("the quantum is a number of milliseconds"));
            args.quantum = Some(Duration::from_secs_f64(ms / 1e3));
        }
    }
    args
}

fn main() {
    let args = args();
    let mut builder = greenrt::Builder::new().workers(1);
    if let Some(quantum) = args.quantum {
        builder = builder.preempt_quantum(quantum);
    }
    let rt = builder.build().expect("build the runtime");
    let preemption = match rt.preempt_quantum() {
        Some(q) => format!("on (quantum {q:?})"),
        None => "off".to_string(),
    };
    println!(
        "cpu_bound: {THREADS} green threads × 10^8 additions on 1 worker, preemption {preemption}…"
    );
    let start = Instant::now();
    let (finished, trace) = rt.block_on(move || {
        greenrt::trace::start();
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("t{i}"))
                    .spawn(move || {
                        let mut counter = 0u64;
                        for _ in 0..ITERATIONS {
                            counter = black_box(counter + 2);
                        }
                        assert_eq!(counter, 2 * ITERATIONS);
                        (greenrt::task::current_id().unwrap(), start.elapsed())
                    })
                    .expect("spawn")
            })
            .collect();
        let finished: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (finished, greenrt::trace::stop())
    });
    print_timeline(&trace, &finished);
    let times = || finished.iter().map(|f| f.1.as_secs_f64());
    let first = times().fold(f64::INFINITY, f64::min);
    let last = times().fold(0.0, f64::max);
    println!(
        "preemption {preemption}: first finished at {:.0} ms, last at {:.0} ms, first/last = {:.2}",
        first * 1e3,
        last * 1e3,
        first / last
    );
    if let Some(quantum) = rt.preempt_quantum() {
        print_equal_turns(&trace, &finished, quantum);
    }
    if let Some(path) = args.trace {
        let file =
            std::io::BufWriter::new(std::fs::File::create(&path).expect("create the trace file"));
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => trace.write_json(file),
            _ => trace.write_svg(file),
        }
        .expect("write the trace");
        println!(
            "trace: {} slices on {} lane(s), written to {}",
            trace.slices().len(),
            trace.lanes().len(),
            path.display()
        );
    }
}

/// One row per green thread, one column per 1/60th of the recording:
/// how much of that column the thread ran, from the recording's slices.
fn print_timeline(trace: &greenrt::trace::Trace, finished: &[(u64, Duration)]) {
    let total = trace.duration().max(Duration::from_millis(1));
    let column = total / COLUMNS as u32;
    println!(
        "timeline ({} columns of {:.0} ms; █ ran most of the column, ▒ a third or more, ░ less, blank not at all):",
        COLUMNS,
        column.as_secs_f64() * 1e3
    );
    for (i, &(g, done)) in finished.iter().enumerate() {
        let mut ran = [Duration::ZERO; COLUMNS];
        for s in trace.slices().iter().filter(|s| s.g == g) {
            for (c, cell) in ran.iter_mut().enumerate() {
                let (c0, c1) = (column * c as u32, column * (c as u32 + 1));
                *cell += s.end.min(c1).saturating_sub(s.start.max(c0));
            }
        }
        let row: String = ran
            .iter()
            .map(|r| match r.as_secs_f64() / column.as_secs_f64() {
                f if f >= 2.0 / 3.0 => '█',
                f if f >= 1.0 / 3.0 => '▒',
                f if f > 0.0 => '░',
                _ => ' ',
            })
            .collect();
        println!(
            "  t{i:<2} |{row}| finished at {:6.0} ms",
            done.as_secs_f64() * 1e3
        );
    }
}

/// What perfectly equal turns would have given: each thread's work is the
/// time it ran (from the recording), and a round-robin of `quantum` turns
/// in the order they first ran, from the first one's start, is played
/// out. With equal work W a thread finishes in round ⌈W/q⌉, so even
/// ideal turns give first/last from about (R−1)/R (W a whole number R of
/// quanta) up to nearly 1 (W just over one): the ratio depends on W mod
/// q, that is on the machine's speed, most at a long quantum.
fn print_equal_turns(
    trace: &greenrt::trace::Trace,
    finished: &[(u64, Duration)],
    quantum: Duration,
) {
    let slices = trace.slices();
    let mut threads: Vec<(Duration, Duration, Duration)> = finished
        .iter()
        .filter_map(|&(g, _)| {
            let mine = slices.iter().filter(|s| s.g == g);
            let first = mine.clone().map(|s| s.start).min()?;
            let last = mine.clone().map(|s| s.end).max()?;
            let work = mine.map(|s| s.end.saturating_sub(s.start)).sum();
            Some((first, last, work))
        })
        .collect();
    if threads.len() != finished.len() || quantum.is_zero() {
        return;
    }
    threads.sort_by_key(|t| t.0);
    let ratio = |ends: &[Duration]| {
        let first = ends.iter().min().copied().unwrap_or_default();
        let last = ends.iter().max().copied().unwrap_or_default();
        first.as_secs_f64() / last.as_secs_f64().max(f64::MIN_POSITIVE)
    };
    let recorded: Vec<Duration> = threads.iter().map(|t| t.1).collect();
    let mut left: Vec<Duration> = threads.iter().map(|t| t.2).collect();
    let mut ideal = vec![Duration::ZERO; left.len()];
    let mut now = threads[0].0;
    while left.iter().any(|w| !w.is_zero()) {
        for (w, end) in left.iter_mut().zip(ideal.iter_mut()) {
            if w.is_zero() {
                continue;
            }
            let turn = (*w).min(quantum);
            now += turn;
            *w -= turn;
            if w.is_zero() {
                *end = now;
            }
        }
    }
    println!(
        "in the recording's time: first/last = {:.2}; equal {quantum:?} turns of the same work would give {:.2}",
        ratio(&recorded),
        ratio(&ideal)
    );
}
