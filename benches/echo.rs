//! TCP echo round trips over loopback, greenrt versus tokio.
//!
//! For 1, 100 and 1 000 connections × 64 B and 16 KiB messages (one
//! criterion group per cell, e.g. `echo_100conn_64B`), each runtime runs
//! both ends of every connection on [`WORKERS`] worker threads:
//!
//! - greenrt: green threads with blocking-style `greenrt::net` code; a
//!   server green thread per connection reads what arrives and writes it
//!   back (`read`, `write_all`), and a client green thread per connection
//!   sends a message and reads it back (`write_all`, `read_exact`).
//! - tokio: the same with `tokio::net` tasks and `AsyncReadExt` /
//!   `AsyncWriteExt`.
//!
//! A cell's runtime and connections are set up once (connect and accept
//! in lockstep, so the listen backlog never overflows; `TCP_NODELAY` on
//! both ends) and reused by every batch. A batch spawns one client per
//! connection doing a fixed number of round trips (about [`BATCH`] in all,
//! at least [`MIN_ROUNDS`] per connection) and waits for all of them;
//! criterion times batches (`iter_custom`, throughput in round trips).
//! Then [`PAIRS`] pairs of batches run back to back on both runtimes, in
//! alternating order. After a cell the clients close, the server green
//! threads/tasks see EOF and are joined, and the runtimes are dropped; the
//! number of open fds before and after each cell is compared, so a leak
//! shows.
//!
//! After all cells a table is printed: per cell, requests (round trips)
//! per second of each runtime (the median over criterion's measured
//! batches; the first, criterion's warm-up, is left out) and their ratio;
//! the median greenrt / tokio ratio over the alternating pairs, which is
//! less exposed to other processes' load drifting between criterion's two
//! functions; and the process CPU time per round trip (client and server
//! together).
//!
//! Run with `cargo bench --bench echo` (about a minute on 2 cores), or
//! some cells with e.g. `cargo bench --bench echo -- 1000conn`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{benchmarking, load_average, mean, median, open_fds, Rounds};

/// Worker threads of both runtimes.
const WORKERS: usize = 2;
const CONNECTIONS: [usize; 3] = [1, 100, 1000];
const SIZES: [usize; 2] = [64, 16 * 1024];
/// Round trips per batch, all connections together...
const BATCH: usize = 5000;
/// ... but at least this many per connection.
const MIN_ROUNDS: usize = 10;
/// Alternating pairs of batches per cell (see [`alternate`]).
const PAIRS: usize = 10;
/// Criterion's measurement time per function (at least one batch per
/// sample is run whatever it says).
const MEASUREMENT: Duration = Duration::from_secs(3);

/// One connection's client end with its message and receive buffer.
struct Conn<S> {
    stream: S,
    msg: Vec<u8>,
    buf: Vec<u8>,
}

impl<S> Conn<S> {
    fn new(stream: S, size: usize) -> Conn<S> {
        Conn {
            stream,
            msg: (0..size).map(|i| i as u8).collect(),
            buf: vec![0; size],
        }
    }
}

impl Conn<greenrt::net::TcpStream> {
    fn round_trips(mut self, rounds: usize) -> Self {
        for _ in 0..rounds {
            self.stream.write_all(&self.msg).unwrap();
            self.stream.read_exact(&mut self.buf).unwrap();
        }
        assert!(self.buf == self.msg, "the echo differs from the message");
        self
    }
}

impl Conn<tokio::net::TcpStream> {
    async fn round_trips(mut self, rounds: usize) -> Self {
        for _ in 0..rounds {
            self.stream.write_all(&self.msg).await.unwrap();
            self.stream.read_exact(&mut self.buf).await.unwrap();
        }
        assert!(self.buf == self.msg, "the echo differs from the message");
        self
    }
}

/// greenrt's server end: writes back what arrives until EOF.
fn greenrt_echo(mut stream: greenrt::net::TcpStream, size: usize) {
    let mut buf = vec![0; size];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => stream.write_all(&buf[..n]).unwrap(),
            Err(e) => panic!("server read: {e}"),
        }
    }
}

/// tokio's server end: writes back what arrives until EOF.
async fn tokio_echo(mut stream: tokio::net::TcpStream, size: usize) {
    let mut buf = vec![0; size];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
            Err(e) => panic!("server read: {e}"),
        }
    }
}

/// A runtime with `connections` echo connections to itself.
trait Cell: Sized {
    fn setup(connections: usize, size: usize) -> Self;
    /// Runs `rounds` round trips on every connection, all at once.
    fn batch(&mut self, rounds: usize);
    /// Closes the clients, joins the servers, drops the runtime.
    fn close(self);
}

struct GreenrtCell {
    rt: greenrt::Runtime,
    conns: Vec<Conn<greenrt::net::TcpStream>>,
    servers: Vec<greenrt::JoinHandle<()>>,
}

impl Cell for GreenrtCell {
    fn setup(connections: usize, size: usize) -> Self {
        use greenrt::net::{TcpListener, TcpStream};
        let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
        let (conns, servers) = rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            (0..connections)
                .map(|_| {
                    let client = TcpStream::connect(addr).unwrap();
                    let (server, _) = listener.accept().unwrap();
                    client.set_nodelay(true).unwrap();
                    server.set_nodelay(true).unwrap();
                    let echo = greenrt::spawn(move || greenrt_echo(server, size));
                    (Conn::new(client, size), echo)
                })
                .unzip()
        });
        GreenrtCell { rt, conns, servers }
    }

    fn batch(&mut self, rounds: usize) {
        let conns = std::mem::take(&mut self.conns);
        self.conns = self.rt.block_on(move || {
            let clients: Vec<_> = conns
                .into_iter()
                .map(|c| greenrt::spawn(move || c.round_trips(rounds)))
                .collect();
            clients.into_iter().map(|h| h.join().unwrap()).collect()
        });
    }

    fn close(self) {
        drop(self.conns);
        for server in self.servers {
            server.join().unwrap();
        }
        drop(self.rt);
    }
}

struct TokioCell {
    rt: tokio::runtime::Runtime,
    conns: Vec<Conn<tokio::net::TcpStream>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Cell for TokioCell {
    fn setup(connections: usize, size: usize) -> Self {
        use tokio::net::{TcpListener, TcpStream};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_all()
            .build()
            .unwrap();
        let (conns, servers) = rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let (mut conns, mut servers) = (Vec::new(), Vec::new());
            for _ in 0..connections {
                let client = TcpStream::connect(addr).await.unwrap();
                let (server, _) = listener.accept().await.unwrap();
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                servers.push(tokio::spawn(tokio_echo(server, size)));
                conns.push(Conn::new(client, size));
            }
            (conns, servers)
        });
        TokioCell { rt, conns, servers }
    }

    fn batch(&mut self, rounds: usize) {
        let conns = std::mem::take(&mut self.conns);
        self.conns = self.rt.block_on(async move {
            let clients: Vec<_> = conns
                .into_iter()
                .map(|c| tokio::spawn(c.round_trips(rounds)))
                .collect();
            let mut conns = Vec::with_capacity(clients.len());
            for h in clients {
                conns.push(h.await.unwrap());
            }
            conns
        });
    }

    fn close(self) {
        drop(self.conns);
        self.rt.block_on(async {
            for server in self.servers {
                server.await.unwrap();
            }
        });
        drop(self.rt);
    }
}

/// One cell's results for the summary.
struct Row {
    connections: usize,
    size: usize,
    /// Median requests/s and CPU µs per round trip: greenrt, tokio.
    rps: [f64; 2],
    cpu_us: [f64; 2],
    /// Median greenrt / tokio requests/s over alternating batches.
    alternating: f64,
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

/// Greenrt / tokio requests/s of [`PAIRS`] pairs of batches run back to
/// back (in alternating order), which cancels slow drifts in the load of
/// the machine that separate criterion's two functions.
fn alternate(g: &mut GreenrtCell, t: &mut TokioCell, rounds: usize) -> Vec<f64> {
    let time = |batch: &mut dyn FnMut()| {
        let start = Instant::now();
        batch();
        start.elapsed().as_secs_f64()
    };
    (0..PAIRS)
        .map(|i| {
            let (mut run_g, mut run_t) = (|| g.batch(rounds), || t.batch(rounds));
            let (g_time, t_time) = if i % 2 == 0 {
                (time(&mut run_g), time(&mut run_t))
            } else {
                let t_time = time(&mut run_t);
                (time(&mut run_g), t_time)
            };
            t_time / g_time
        })
        .collect()
}

fn echo(c: &mut Criterion) {
    raise_fd_limit();
    // Creates greenrt's process-wide poller (an epoll fd and an eventfd,
    // kept for the life of the process) before fds are counted.
    drop(greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap());
    println!(
        "[echo] load average {} on {} CPUs",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (mut rows, mut no_leaks) = (Vec::new(), true);
    for connections in CONNECTIONS {
        for size in SIZES {
            let rounds = (BATCH / connections).max(MIN_ROUNDS);
            let name = format!("echo_{connections}conn_{}", fmt_size(size));
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
            let ratios = match (&mut g_cell, &mut t_cell) {
                (Some(g), Some(t)) if benchmarking() => alternate(g, t, rounds),
                _ => Vec::new(),
            };
            if let Some(cell) = g_cell {
                cell.close();
            }
            if let Some(cell) = t_cell {
                cell.close();
            }
            no_leaks &= check_fds(&name, fds);

            if greenrt.wall.is_empty() || tokio.wall.is_empty() || ratios.is_empty() {
                continue;
            }
            let per_batch = (rounds * connections) as f64;
            let stats = |b: &Rounds| {
                let rps: Vec<f64> = b.wall.iter().map(|w| per_batch / w).collect();
                (median(&rps), mean(&b.cpu) / per_batch * 1e6)
            };
            let ((g_rps, g_cpu), (t_rps, t_cpu)) = (stats(&greenrt), stats(&tokio));
            rows.push(Row {
                connections,
                size,
                rps: [g_rps, t_rps],
                alternating: median(&ratios),
                cpu_us: [g_cpu, t_cpu],
            });
        }
    }
    if !benchmarking() || rows.is_empty() {
        return;
    }
    println!(
        "\necho round trips per second ({WORKERS} workers each; median over batches), \
         load average now {}:",
        load_average()
    );
    println!(
        "| connections × size | greenrt req/s | tokio req/s | greenrt / tokio | \
         alternating batches: greenrt / tokio | CPU µs per round trip (greenrt / tokio) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} × {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} |",
            r.connections,
            fmt_size(r.size),
            r.rps[0],
            r.rps[1],
            r.rps[0] / r.rps[1],
            r.alternating,
            r.cpu_us[0],
            r.cpu_us[1]
        );
    }
    println!(
        "open fds after each cell {} before it",
        if no_leaks { "equal to" } else { "NOT equal to" }
    );
}

fn fmt_size(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// Reports fds left open by a cell; returns whether there were none.
fn check_fds(cell: &str, before: usize) -> bool {
    let after = open_fds();
    if after != before {
        println!("WARNING: {cell}: {before} fds open before the cell, {after} after");
    }
    after == before
}

/// Raises the soft limit on open files to the hard limit: 1 000
/// connections are 2 000 fds in this process.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and then write from.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

criterion_group!(benches, echo);
criterion_main!(benches);
