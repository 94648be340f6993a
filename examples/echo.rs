//! A TCP echo server and a load client in plain blocking, std-like code:
//! every connection is a green thread, and a read or write that would block
//! parks that green thread only, not the worker running it.
//!
//! cargo run --release --example echo
//! cargo run --release --example echo -- --connections 1000 --size 16384 --seconds 10
//! cargo run --release --example echo -- --serve 127.0.0.1:7007
//! cargo run --release --example echo -- --server 127.0.0.1:7007 --connections 50
//!
//! By default the server runs in-process on 127.0.0.1 (a free port) and
//! the client opens `--connections` connections to it (default 100). Each
//! client green thread sends `--size` bytes (default 64), reads them back
//! and repeats for `--seconds` (default 5), timing every round trip; then
//! the program prints requests/s and latency percentiles. `--serve ADDR`
//! runs only the server (until killed), so other load tools can be pointed
//! at it; `--server ADDR` runs only the client, against any echo server.
//! `--workers W` sets the runtime's worker threads (default:
//! `GREENRT_WORKERS`, else one per CPU). `--idle-timeout S` (default 60)
//! is the server's read timeout: a connection that sends nothing for that
//! long is closed, so one whose client vanished without a FIN or RST
//! reaching the server (half-open: a reset dropped on the way, a host
//! gone) does not keep its fd and green thread forever.

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use greenrt::net::{TcpListener, TcpStream};
use greenrt::sync::WaitGroup;

const USAGE: &str = "usage: echo [--connections N] [--size BYTES] [--seconds S] [--workers W]
            [--idle-timeout S] [--server ADDR | --serve ADDR]

  --connections N  client connections, one green thread each (default 100)
  --size BYTES     bytes per message (default 64)
  --seconds S      how long the client runs, may be fractional (default 5)
  --workers W      worker threads (default: $GREENRT_WORKERS, else one per CPU)
  --idle-timeout S the server closes a connection silent for S seconds
                   (default 60), so half-open ones are reclaimed
  --server ADDR    run only the client, against the echo server at ADDR
  --serve ADDR     run only the server, on ADDR (e.g. 127.0.0.1:7007)";

struct Options {
    connections: usize,
    size: usize,
    seconds: f64,
    workers: Option<usize>,
    idle_timeout: Duration,
    server: Option<SocketAddr>,
    serve: Option<SocketAddr>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        connections: 100,
        size: 64,
        seconds: 5.0,
        workers: None,
        idle_timeout: Duration::from_secs(60),
        server: None,
        serve: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => opts.connections = count(&flag, &value()?)?,
            "--size" => opts.size = count(&flag, &value()?)?,
            "--workers" => opts.workers = Some(count(&flag, &value()?)?),
            "--seconds" => opts.seconds = seconds(&flag, &value()?)?,
            "--idle-timeout" => {
                opts.idle_timeout = Duration::from_secs_f64(seconds(&flag, &value()?)?)
            }
            "--server" => opts.server = Some(address(&flag, &value()?)?),
            "--serve" => opts.serve = Some(address(&flag, &value()?)?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if opts.server.is_some() && opts.serve.is_some() {
        return Err("--server and --serve exclude each other".into());
    }
    Ok(opts)
}

fn count(flag: &str, v: &str) -> Result<usize, String> {
    let n = v.parse().ok().filter(|&n| n > 0);
    n.ok_or(format!("{flag} {v}: expected a whole number ≥ 1"))
}

fn seconds(flag: &str, v: &str) -> Result<f64, String> {
    let s = v.parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0);
    s.ok_or(format!("{flag} {v}: expected a positive number of seconds"))
}

fn address(flag: &str, v: &str) -> Result<SocketAddr, String> {
    let addr = v.to_socket_addrs().map(|mut a| a.next());
    addr.ok()
        .flatten()
        .ok_or(format!("{flag} {v}: expected HOST:PORT"))
}

fn main() {
    let opts = parse_args().unwrap_or_else(|e| {
        eprintln!("echo: {e}\n\n{USAGE}");
        std::process::exit(2);
    });
    raise_fd_limit();
    let mut builder = greenrt::Builder::new();
    if let Some(w) = opts.workers {
        builder = builder.workers(w);
    }
    let rt = builder.build().expect("build the runtime");
    let result = rt.block_on(move || -> std::io::Result<()> {
        if let Some(addr) = opts.serve {
            let listener = TcpListener::bind(addr)?;
            println!("echo server on {}", listener.local_addr()?);
            serve(listener, opts.idle_timeout);
            return Ok(());
        }
        let addr = match opts.server {
            Some(addr) => addr,
            None => {
                let listener = TcpListener::bind("127.0.0.1:0")?;
                let addr = listener.local_addr()?;
                let idle = opts.idle_timeout;
                greenrt::spawn(move || serve(listener, idle));
                addr
            }
        };
        run_client(addr, &opts)
    });
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

/// Accepts connections forever, one green thread each.
fn serve(listener: TcpListener, idle: Duration) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                greenrt::spawn(move || echo(stream, idle));
            }
            Err(e) => eprintln!("echo: accept: {e}"),
        }
    }
}

/// Writes back whatever arrives, until the peer closes, an error, or
/// `idle` without a byte (the read fails with WouldBlock).
fn echo(mut stream: TcpStream, idle: Duration) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(idle)).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Connects, runs the load for `opts.seconds` and prints the results.
fn run_client(addr: SocketAddr, opts: &Options) -> std::io::Result<()> {
    // Connecting one at a time keeps within the server's listen backlog.
    let mut streams = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        let stream = TcpStream::connect(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("connect to {addr}: {e}")))?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    println!(
        "{} connections to {addr}, {} B messages, for {} s ...",
        opts.connections, opts.size, opts.seconds
    );
    let (size, run_for) = (opts.size, Duration::from_secs_f64(opts.seconds));
    let start = WaitGroup::new();
    start.add(1);
    let clients: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let start = start.clone();
            greenrt::spawn(move || {
                start.wait();
                round_trips(stream, size, run_for)
            })
        })
        .collect();
    let t0 = Instant::now();
    start.done();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.join().expect("a client panicked")?);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let Some(&max) = latencies.last() else {
        println!("no round trip completed");
        return Ok(());
    };
    let pct = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).max(1) - 1];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{} round trips in {elapsed:.2} s: {:.0} requests/s, {:.1} MB/s each way",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        (latencies.len() * size) as f64 / elapsed / 1e6
    );
    println!(
        "latency: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(pct(0.50)),
        us(pct(0.90)),
        us(pct(0.99)),
        us(max)
    );
    Ok(())
}

/// Sends `size` bytes and reads them back until `run_for` has passed;
/// returns the time of every round trip.
fn round_trips(
    mut stream: TcpStream,
    size: usize,
    run_for: Duration,
) -> std::io::Result<Vec<Duration>> {
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut buf = vec![0; size];
    let mut latencies = Vec::new();
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        let t = Instant::now();
        stream.write_all(&msg)?;
        stream.read_exact(&mut buf)?;
        latencies.push(t.elapsed());
        if buf != msg {
            return Err(std::io::Error::other("the echo differs from the message"));
        }
    }
    Ok(latencies)
}

/// Raises the soft limit on open files to the hard limit, so that a
/// thousand connections (two fds each in-process) fit.
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
