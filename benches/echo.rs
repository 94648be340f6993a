//! TCP echo round trips over loopback, greenrt versus tokio, in two modes.
//!
//! For 1, 100 and 1 000 connections × 64 B and 16 KiB messages, 2 worker
//! threads ([`WORKERS`]) per runtime, `TCP_NODELAY` on both ends:
//!
//! **In-process** (cells `echo_100conn_64B` etc., `inproc` module): each
//! runtime runs both ends of every connection. A server green thread
//! (tokio task) per connection reads what arrives and writes it back; a
//! client green thread (task) per connection sends a message and reads it
//! back. A cell's runtime and connections are set up once (connect and
//! accept in lockstep, so the listen backlog never overflows) and reused
//! by every batch. A batch spawns one client per connection doing a fixed
//! number of round trips (about [`BATCH`] in all, at least [`MIN_ROUNDS`]
//! per connection) and waits for all of them; criterion times batches
//! (`iter_custom`, throughput in round trips). Then [`PAIRS`] pairs of
//! batches run back to back on both runtimes, in alternating order, which
//! is less exposed to other processes' load drifting between criterion's
//! two functions; their round trips' latency percentiles are reported too.
//! After a cell the clients close, the servers see EOF and are joined, and
//! the number of open fds before and after is compared, so a leak shows.
//!
//! **Server-only** (cells `echo_server_100conn_64B` etc., `server` and
//! `client` modules): a cheaper client could hide a dearer server
//! in-process, so here a greenrt echo server and a tokio echo server run
//! in processes of their own (this bench re-executed with
//! `ECHO_BENCH_SERVER` set) and this process is the load, the same for
//! both: one OS thread driving every connection through one epoll set,
//! every connection doing round trips back to back for 0.3 s per sample,
//! a warm-up sample then 10 rounds of one sample per server in rotating
//! order. Reported per cell and server: the median requests/s, the median
//! ratio to tokio over the rounds, the median over samples of each
//! latency percentile, the server process's CPU time and context
//! switches per request (all its threads, from /proc), and the load
//! client's own CPU time per request and how busy its thread was. On a
//! 2-CPU machine a busy client near 100% caps the requests/s whatever the
//! server does: a cheaper server then shows as lower server CPU per
//! request, not as more requests.
//! `ECHO_BENCH_SERVERS` lists the servers (default `greenrt,tokio`;
//! `greenrt@BINARY` runs another build's greenrt server, for a
//! before/after in one run; see `server::SERVERS_ENV`).
//!
//! Run with `cargo bench --bench echo` (about two minutes on 2 cores), or
//! some cells with e.g. `cargo bench --bench echo -- 1000conn` (both
//! modes) or `-- echo_server` (server-only).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};

#[path = "echo/client.rs"]
mod client;
mod common;
#[path = "echo/inproc.rs"]
mod inproc;
#[path = "echo/server.rs"]
mod server;
#[path = "echo/util.rs"]
mod util;

use common::{benchmarking, load_average, mean, median, open_fds, Rounds};
use inproc::{alternate, Cell, GreenrtCell, TokioCell};
use util::{check_fds, fmt_size, raise_fd_limit, selected, Percentiles};

/// Worker threads of both runtimes.
const WORKERS: usize = 2;
const CONNECTIONS: [usize; 3] = [1, 100, 1000];
const SIZES: [usize; 2] = [64, 16 * 1024];
/// Round trips per batch, all connections together...
const BATCH: usize = 5000;
/// ... but at least this many per connection.
const MIN_ROUNDS: usize = 10;
/// Alternating pairs of batches per in-process cell.
const PAIRS: usize = 10;
/// Criterion's measurement time per function (at least one batch per
/// sample is run whatever it says).
const MEASUREMENT: Duration = Duration::from_secs(3);

/// One in-process cell's results for the summary.
struct Row {
    name: String,
    /// Median requests/s and CPU µs per round trip: greenrt, tokio.
    rps: [f64; 2],
    cpu_us: [f64; 2],
    /// Median greenrt / tokio requests/s over alternating batches.
    alternating: f64,
    latency: [Percentiles; 2],
}

/// Sets up `C` the first time criterion calls, then times batches.
fn bench_cell<C: Cell>(
    b: &mut criterion::Bencher<'_>,
    cell: &mut Option<C>,
    batches: &mut Rounds,
    connections: usize,
    size: usize,
    rounds: usize,
) {
    let cell = cell.get_or_insert_with(|| C::setup(connections, size));
    b.iter_custom(|iters| batches.run(iters, || cell.batch(rounds)));
}

/// The in-process cells; returns their rows and whether no fd leaked.
fn in_process(c: &mut Criterion) -> (Vec<Row>, bool) {
    let (mut rows, mut no_leaks) = (Vec::new(), true);
    for connections in CONNECTIONS {
        for size in SIZES {
            let rounds = (BATCH / connections).max(MIN_ROUNDS);
            let name = format!("echo_{connections}conn_{}", fmt_size(size));
            if !selected(&name) {
                continue;
            }
            let mut group = c.benchmark_group(&name);
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_millis(1))
                .measurement_time(MEASUREMENT)
                .throughput(Throughput::Elements((rounds * connections) as u64));

            let fds = open_fds();
            let (mut g_cell, mut greenrt) = (None, Rounds::default());
            group.bench_function("greenrt", |b| {
                bench_cell::<GreenrtCell>(b, &mut g_cell, &mut greenrt, connections, size, rounds)
            });
            let (mut t_cell, mut tokio) = (None, Rounds::default());
            group.bench_function("tokio", |b| {
                bench_cell::<TokioCell>(b, &mut t_cell, &mut tokio, connections, size, rounds)
            });
            group.finish();
            let alt = match (&mut g_cell, &mut t_cell) {
                (Some(g), Some(t)) if benchmarking() => Some(alternate(g, t, rounds)),
                _ => None,
            };
            if let Some(cell) = g_cell {
                cell.close();
            }
            if let Some(cell) = t_cell {
                cell.close();
            }
            no_leaks &= check_fds(&name, fds);

            let Some(alt) = alt else { continue };
            if greenrt.wall.is_empty() || tokio.wall.is_empty() {
                continue;
            }
            let per_batch = (rounds * connections) as f64;
            let stats = |b: &Rounds| {
                let rps: Vec<f64> = b.wall.iter().map(|w| per_batch / w).collect();
                (median(&rps), mean(&b.cpu) / per_batch * 1e6)
            };
            let ((g_rps, g_cpu), (t_rps, t_cpu)) = (stats(&greenrt), stats(&tokio));
            rows.push(Row {
                name,
                rps: [g_rps, t_rps],
                alternating: median(&alt.ratios),
                cpu_us: [g_cpu, t_cpu],
                latency: alt.latencies.map(|l| Percentiles::median_of(&l)),
            });
        }
    }
    (rows, no_leaks)
}

/// The server-only cells, with their table.
fn server_only() {
    let cells: Vec<(String, usize, usize)> = CONNECTIONS
        .iter()
        .flat_map(|&c| SIZES.map(|s| (format!("echo_server_{c}conn_{}", fmt_size(s)), c, s)))
        .filter(|(name, _, _)| selected(name))
        .collect();
    if cells.is_empty() || !benchmarking() {
        return;
    }
    let specs = std::env::var(server::SERVERS_ENV).unwrap_or("greenrt,tokio".into());
    let servers: Vec<server::Server> = specs.split(',').map(server::Server::start).collect();
    let tokio = servers.iter().position(|s| s.label == "tokio");
    println!(
        "\nserver-only: the same client (one thread, epoll) in this process against \
         each echo server ({WORKERS} workers, own process); medians of {} samples of 0.3 s; \
         load average {}:",
        server::SAMPLES,
        load_average()
    );
    println!(
        "| cell | server | req/s | / tokio (median of rounds) | latency p50 / p99 / max ms | \
         server CPU µs per request | server context switches per request | \
         client CPU µs per request | client busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, connections, size) in cells {
        let figs = server::cell(&servers, connections, size);
        for (s, f) in servers.iter().zip(&figs) {
            let ratio = tokio.map_or(f64::NAN, |t| server::ratio(f, &figs[t]));
            println!(
                "| {name} | {} | {:.0} | {:.2} | {} | {:.1} | {:.3} | {:.1} | {:.0}% |",
                s.label,
                f.median_rps(),
                ratio,
                Percentiles::median_of(&f.latencies).fmt_ms(),
                f.cpu_us(),
                f.switches(),
                f.client_cpu_us(),
                f.client_busy() * 100.0,
            );
        }
    }
}

fn main() {
    raise_fd_limit();
    if let Ok(kind) = std::env::var(server::SERVER_ENV) {
        server::serve(&kind);
    }
    // Creates greenrt's process-wide poller (an epoll fd and an eventfd,
    // kept for the life of the process) before fds are counted.
    drop(greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap());
    println!(
        "[echo] load average {} on {} CPUs",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut c = Criterion::default().configure_from_args();
    let (rows, no_leaks) = in_process(&mut c);
    if benchmarking() && !rows.is_empty() {
        println!(
            "\nin-process: echo round trips per second ({WORKERS} workers each; median over \
             batches), load average now {}:",
            load_average()
        );
        println!(
            "| cell | greenrt req/s | tokio req/s | greenrt / tokio | alternating batches: \
             greenrt / tokio | CPU µs per round trip (greenrt / tokio) | latency p50 / p99 / \
             max ms, greenrt | tokio |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for r in rows {
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} | {} | {} |",
                r.name,
                r.rps[0],
                r.rps[1],
                r.rps[0] / r.rps[1],
                r.alternating,
                r.cpu_us[0],
                r.cpu_us[1],
                r.latency[0].fmt_ms(),
                r.latency[1].fmt_ms()
            );
        }
        println!(
            "open fds after each cell {} before it",
            if no_leaks { "equal to" } else { "NOT equal to" }
        );
    }
    server_only();
    c.final_summary();
}
