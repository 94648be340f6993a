//! A TCP proxy on loopback: greenrt with splice, greenrt with a buffered
//! copy, and tokio's `copy_bidirectional`, side by side.
//!
//! Every cell puts a proxy between a client and a backend, all in this
//! process. Only the proxy changes between the three variants:
//!
//! - `greenrt_splice`: a greenrt runtime; a green thread per connection
//!   runs `greenrt::io::copy_bidirectional` (splice through pooled pipes);
//! - `greenrt_copy`: the same with `CopyMode::Buffered` (read/write through
//!   a user-space buffer of the scenario's size);
//! - `tokio`: a tokio runtime; a task per connection runs
//!   `tokio::io::copy_bidirectional_with_sizes` with the same buffer size.
//!
//! Each proxy runtime has [`WORKERS`] workers. The client and the backend
//! are the same for all three: plain OS threads with std's blocking
//! sockets (one per connection and direction), so they cost every variant
//! the same. All sockets have TCP_NODELAY. Scenarios:
//!
//! 1. `short`: [`SHORT_CONNS`] keep-alive connections each send
//!    [`SHORT_REQS`] HTTP-like requests in turn; the backend answers each
//!    with an empty-bodied response. 1 KiB copy buffers. Requests/s.
//! 2. `body_1MiB`: [`BODY_CONNS`] connections each fetch [`BODY_REQS`]
//!    responses with a 1 MiB body. 1 KiB copy buffers. MB/s of body.
//! 3. `bulk`: [`BULK_CONNS`] connections each send 64 MiB to an echo
//!    backend and read it back at the same time. 8 KiB copy buffers (both
//!    libraries' default). MB/s counting both directions.
//! 4. `inprocess` (`proxy/inprocess.rs`): the shape of `bulk`, but the
//!    clients and an echo sink are green threads (tasks) of the proxy's
//!    own runtime, so the runtime's idle and wake-up behaviour counts;
//!    greenrt, greenrt without preemption and tokio alternate round by
//!    round, each round on a fresh runtime; reports busy cores and where
//!    the rest of the machine's time went. Outside criterion.
//!
//! In `greenrt_splice` each burst of data starts with a read into the copy
//! buffer; a burst that fills it is spliced onwards (see `greenrt::io`).
//! So `short` never splices (its messages are tiny) and takes the same
//! path as `greenrt_copy`; the two differ there only by noise.
//!
//! Connections are set up once per cell and variant and reused by every
//! batch; criterion times batches (`iter_custom`, flat sampling, 10
//! samples). Before measuring, a few batches of each kind run unmeasured;
//! each scenario is then measured in [`PASSES`] passes over the variants,
//! in rotated orders, because on a busy machine whichever cell runs first
//! after a pause is measurably slower. At the end a table gives each
//! variant's median throughput over its measured batches of all passes
//! (each cell's first batch, a warm-up, left out), the process CPU time
//! per unit, and the ratios greenrt-splice / tokio and greenrt-copy /
//! tokio, plus greenrt's copy counters per variant, which show that the
//! splice variant spliced and the copy variant did not.
//!
//! Run with `cargo bench --bench proxy` (about 3 minutes on 2 cores), or
//! one scenario with e.g. `cargo bench --bench proxy -- bulk` (or
//! `-- inprocess`; `GREENRT_PROXY_ROUNDS` sets its rounds, default 11).

use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use greenrt::io::CopyStats;

#[path = "proxy/backend.rs"]
mod backend;
#[path = "proxy/clients.rs"]
mod clients;
mod common;
#[path = "proxy/inprocess.rs"]
mod inprocess;
#[path = "proxy/proxies.rs"]
mod proxies;

use backend::Backend;
use clients::batch;
use common::{benchmarking, load_average, median, open_fds, Rounds};
use proxies::Proxy;

/// Worker threads of each proxy runtime.
const WORKERS: usize = 2;
/// Measurement passes over the variants of a scenario (see `relayed`).
const PASSES: usize = 2;
/// Rounds of each runtime in `inprocess` (`GREENRT_PROXY_ROUNDS`).
const INPROCESS_ROUNDS: usize = 11;

const SHORT_CONNS: usize = 16;
const SHORT_REQS: usize = 500;
const BODY_CONNS: usize = 8;
const BODY_REQS: usize = 4;
const BODY: usize = 1 << 20;
const BULK_CONNS: usize = 8;
const BULK: usize = 64 << 20;

const SMALL_BUF: usize = 1024;
const DEFAULT_BUF: usize = 8 * 1024;

const REQ_EMPTY: &[u8] = b"GET /empty HTTP/1.1\r\nHost: bench\r\n\r\n";
const REQ_BODY: &[u8] = b"GET /1m HTTP/1.1\r\nHost: bench\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    GreenrtSplice,
    GreenrtCopy,
    Tokio,
}

const VARIANTS: [Variant; 3] = [Variant::GreenrtSplice, Variant::GreenrtCopy, Variant::Tokio];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::GreenrtSplice => "greenrt_splice",
            Variant::GreenrtCopy => "greenrt_copy",
            Variant::Tokio => "tokio",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Short,
    Body,
    Bulk,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Short => "short",
            Scenario::Body => "body_1MiB",
            Scenario::Bulk => "bulk",
        }
    }

    fn conns(self) -> usize {
        match self {
            Scenario::Short => SHORT_CONNS,
            Scenario::Body => BODY_CONNS,
            Scenario::Bulk => BULK_CONNS,
        }
    }

    fn buf_size(self) -> usize {
        match self {
            Scenario::Short | Scenario::Body => SMALL_BUF,
            Scenario::Bulk => DEFAULT_BUF,
        }
    }

    /// Units per batch (requests, or bytes) and their name.
    fn units(self) -> (f64, &'static str) {
        match self {
            Scenario::Short => ((SHORT_CONNS * SHORT_REQS) as f64, "req/s"),
            Scenario::Body => ((BODY_CONNS * BODY_REQS * BODY) as f64, "MB/s"),
            Scenario::Bulk => ((BULK_CONNS * BULK * 2) as f64, "MB/s"),
        }
    }
}

// ---------------------------------------------------------------------
// The cells and the table.
// ---------------------------------------------------------------------

/// Wall and CPU seconds of the measured batches of one variant.
#[derive(Default)]
struct Batches {
    times: Rounds,
    stats: CopyStats,
}

impl Batches {
    /// Adds another pass's batches and counters.
    fn absorb(&mut self, other: Batches) {
        self.times.absorb(other.times);
        let (a, b) = (&mut self.stats, &other.stats);
        a.spliced_bytes += b.spliced_bytes;
        a.copied_bytes += b.copied_bytes;
        a.splice_calls += b.splice_calls;
        a.fallbacks += b.fallbacks;
        a.pipes_created += b.pipes_created;
        a.pipes_closed += b.pipes_closed;
        a.pool_len = b.pool_len;
    }
}

/// One scenario × variant: backend, proxy and connections set up on the
/// first call, kept for the rest.
struct Cell {
    backend: Backend,
    proxy: Proxy,
    conns: Vec<std::net::TcpStream>,
}

impl Cell {
    fn open(scenario: Scenario, variant: Variant) -> Cell {
        let n = scenario.conns();
        let backend = Backend::start(n, scenario == Scenario::Bulk);
        let (addr, proxy) = Proxy::start(variant, backend.addr, n, scenario.buf_size());
        let conns = (0..n)
            .map(|_| {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                s
            })
            .collect();
        Cell {
            backend,
            proxy,
            conns,
        }
    }

    fn close(self) {
        drop(self.conns);
        self.proxy.join();
        self.backend.join();
    }
}

fn bench_variant(c: &mut Criterion, scenario: Scenario, variant: Variant, pass: usize) -> Batches {
    let mut group = c.benchmark_group(format!("proxy_{}_pass{}", scenario.name(), pass + 1));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    let before = greenrt::io::stats();
    let mut cell = None;
    let mut batches = Batches::default();
    group.bench_function(variant.name(), |b| {
        b.iter_custom(|iters| {
            let cell = cell.get_or_insert_with(|| Cell::open(scenario, variant));
            batches.times.run(iters, || batch(scenario, &cell.conns))
        })
    });
    group.finish();
    if let Some(cell) = cell {
        cell.close();
    }
    batches.stats = greenrt::io::stats().since(&before);
    batches
}

/// A few unmeasured batches of every scenario through greenrt and tokio
/// first: the first cell of the process otherwise runs measurably slower
/// (page faults of fresh stacks and buffers, cold caches), which would
/// count against whichever variant comes first.
fn warm_up() {
    for scenario in [Scenario::Short, Scenario::Body] {
        for variant in [Variant::GreenrtCopy, Variant::Tokio] {
            let cell = Cell::open(scenario, variant);
            for _ in 0..3 {
                batch(scenario, &cell.conns);
            }
            cell.close();
        }
    }
    greenrt::io::clear_pipe_pool();
}

fn main() {
    // Positional arguments are criterion's filters; `inprocess` picks the
    // in-one-runtime variant alone, no filter runs everything.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let inprocess_only = filters.iter().any(|a| a == "inprocess");
    println!(
        "[proxy] load average {} on {} CPUs",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !inprocess_only {
        relayed();
    }
    if filters.is_empty() || inprocess_only {
        // One smoke round under `cargo test --benches`.
        let rounds = if benchmarking() {
            std::env::var("GREENRT_PROXY_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(INPROCESS_ROUNDS)
        } else {
            1
        };
        inprocess::run(rounds);
    }
}

/// The scenarios with OS-thread clients and backends, through criterion.
fn relayed() {
    let mut c = Criterion::default().configure_from_args();
    // Create greenrt's process-wide poller before counting fds.
    drop(greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let mut rows = Vec::new();
    let mut leaks = Vec::new();
    if benchmarking() {
        warm_up();
    }
    for (i, scenario) in [Scenario::Short, Scenario::Body, Scenario::Bulk]
        .into_iter()
        .enumerate()
    {
        // Two passes over the variants in rotated orders (different for
        // each scenario), so that no variant is always measured first:
        // the first cell after a pause runs measurably slower on a busy
        // machine. A variant's batches of both passes are pooled.
        let mut results: Vec<Batches> = VARIANTS.iter().map(|_| Batches::default()).collect();
        for pass in 0..PASSES {
            for k in 0..VARIANTS.len() {
                let v = (k + i + pass) % VARIANTS.len();
                let variant = VARIANTS[v];
                let fds = open_fds();
                let b = bench_variant(&mut c, scenario, variant, pass);
                results[v].absorb(b);
                greenrt::io::clear_pipe_pool();
                let after = open_fds();
                if after != fds {
                    leaks.push(format!(
                        "{}/{}: {fds} fds before, {after} after",
                        scenario.name(),
                        variant.name()
                    ));
                }
            }
        }
        if results.iter().all(|b| !b.times.wall.is_empty()) {
            rows.push((scenario, results));
        }
    }
    c.final_summary();
    if !benchmarking() || rows.is_empty() {
        return;
    }
    println!(
        "\nproxy throughput ({WORKERS} proxy workers; median over batches), load average now {}:",
        load_average()
    );
    println!(
        "| scenario | greenrt splice | greenrt copy | tokio | splice / tokio | copy / tokio | \
         CPU µs per unit (splice / copy / tokio) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (scenario, results) in &rows {
        let (units, unit) = scenario.units();
        let scale = if unit == "MB/s" { 1e-6 } else { 1.0 };
        let tput: Vec<f64> = results
            .iter()
            .map(|b| {
                median(
                    &b.times
                        .wall
                        .iter()
                        .map(|w| units / w * scale)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let cpu: Vec<f64> = results
            .iter()
            .map(|b| b.times.mean_cpu() / (units * scale) * 1e6)
            .collect();
        println!(
            "| {} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} |",
            scenario.name(),
            tput[0],
            tput[1],
            tput[2],
            tput[0] / tput[2],
            tput[1] / tput[2],
            cpu[0],
            cpu[1],
            cpu[2]
        );
    }
    println!("\ngreenrt copy counters per cell (spliced bytes / copied bytes / splice calls / fallbacks / pipes created):");
    for (scenario, results) in &rows {
        for (variant, b) in VARIANTS.iter().zip(results) {
            if *variant == Variant::Tokio {
                continue;
            }
            let s = &b.stats;
            println!(
                "  {}/{}: {} / {} / {} / {} / {}",
                scenario.name(),
                variant.name(),
                s.spliced_bytes,
                s.copied_bytes,
                s.splice_calls,
                s.fallbacks,
                s.pipes_created
            );
        }
    }
    if leaks.is_empty() {
        println!("open fds after each cell equal to before it");
    } else {
        println!("WARNING: fds left open: {}", leaks.join("; "));
    }
}
