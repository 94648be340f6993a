//! A TCP proxy: every connection accepted on `--listen` is relayed to
//! `--upstream` with `greenrt::io::copy_bidirectional`, one green thread
//! (plus a helper for the second direction) per connection.
//!
//! ```sh
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --upstream 127.0.0.1:80
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --upstream 127.0.0.1:80 \
//!     --mode copy --workers 2
//! ```
//!
//! `--mode splice` (the default) moves bytes with splice(2) through pooled
//! pipes, never through user space; `--mode copy` forces the buffered
//! read/write copy, for comparison. Each finished connection is logged
//! with its byte counts; Ctrl-C stops the proxy.
//!
//! `--keepalive S` (default 30) turns on TCP keepalive on both sockets of
//! every connection: after S seconds of silence the kernel probes the
//! peer, every S seconds, and three unanswered probes (or one answered by
//! a reset) end the connection. A half-open connection (the client or the
//! upstream server vanished without a FIN or RST reaching the proxy) is so
//! closed and its fds and green threads freed, while a connection that is
//! merely idle, or busy in one direction only, stays up (which a read
//! timeout would not allow).

use std::net::SocketAddr;
use std::process::ExitCode;

use greenrt::io::{CopyMode, CopyOptions};
use greenrt::net::{TcpListener, TcpStream};

const USAGE: &str = "\
usage: proxy --listen ADDR:PORT --upstream ADDR:PORT [--mode splice|copy] [--workers N]
             [--keepalive S]

  --listen ADDR:PORT     address to accept connections on
  --upstream ADDR:PORT   address every connection is relayed to
  --mode splice|copy     splice(2) between the sockets (default), or a
                         buffered read/write copy
  --workers N            greenrt worker threads (default: GREENRT_WORKERS
                         or the number of CPUs)
  --keepalive S          TCP keepalive probes after S seconds of silence,
                         so half-open connections are closed (default 30)
  --quiet                do not log each connection
  -h, --help             this text";

struct Args {
    listen: String,
    upstream: SocketAddr,
    mode: CopyMode,
    workers: Option<usize>,
    keepalive_secs: u32,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut mode = CopyMode::Splice;
    let mut workers = None;
    let mut quiet = false;
    let mut keepalive_secs = 30;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?),
            "--upstream" => {
                let v = value("--upstream")?;
                // Resolved once, so every connection goes to the same place.
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&v)
                    .map_err(|e| format!("--upstream {v}: {e}"))?
                    .next()
                    .ok_or(format!("--upstream {v}: no address"))?;
                upstream = Some(addr);
            }
            "--mode" => {
                mode = match value("--mode")?.as_str() {
                    "splice" => CopyMode::Splice,
                    "copy" => CopyMode::Buffered,
                    other => return Err(format!("--mode must be splice or copy, not {other:?}")),
                }
            }
            "--workers" => {
                let v = value("--workers")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--workers must be a number, not {v:?}"))?;
                if n == 0 {
                    return Err("--workers must be at least 1".into());
                }
                workers = Some(n);
            }
            "--keepalive" => {
                let v = value("--keepalive")?;
                keepalive_secs = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=32_767).contains(s))
                    .ok_or(format!("--keepalive must be 1 to 32767 seconds, not {v:?}"))?;
            }
            "--quiet" => quiet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        mode,
        workers,
        keepalive_secs,
        quiet,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("proxy: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = greenrt::Builder::new();
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = rt.workers();
    let result = rt.block_on(move || serve(args, workers));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The accept loop (the main green thread).
fn serve(args: Args, workers: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(&args.listen)?;
    let opts = CopyOptions::new().mode(args.mode);
    let mode = match args.mode {
        CopyMode::Buffered => "copy",
        _ => "splice",
    };
    println!(
        "proxy: {} -> {} ({mode} mode, {workers} workers)",
        listener.local_addr()?,
        args.upstream,
    );
    let (upstream, quiet, keepalive) = (args.upstream, args.quiet, args.keepalive_secs);
    loop {
        let (client, peer) = match listener.accept() {
            Ok(c) => c,
            // Out of fds and the like: report, keep serving.
            Err(e) => {
                eprintln!("proxy: accept: {e}");
                greenrt::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        greenrt::spawn(move || match relay(client, upstream, opts, keepalive) {
            Ok((up, down)) if !quiet => {
                println!("proxy: {peer}: {up} bytes up, {down} bytes down")
            }
            Ok(_) => {}
            Err(e) => eprintln!("proxy: {peer}: {e}"),
        });
    }
}

/// Relays one connection until both directions have ended.
fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    opts: CopyOptions,
    keepalive_secs: u32,
) -> std::io::Result<(u64, u64)> {
    let mut server = TcpStream::connect(upstream)?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        set_keepalive(s, keepalive_secs)?;
    }
    greenrt::io::copy_bidirectional_with(&mut client, &mut server, opts)
}

/// TCP keepalive on `s`: the first probe after `secs` of silence, then
/// one every `secs`; three unanswered probes end the connection.
fn set_keepalive(s: &impl std::os::fd::AsFd, secs: u32) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let secs = secs.max(1);
    setsockopt(s, sockopt::KeepAlive, &true)?;
    setsockopt(s, sockopt::TcpKeepIdle, &secs)?;
    setsockopt(s, sockopt::TcpKeepInterval, &secs)?;
    setsockopt(s, sockopt::TcpKeepCount, &3)?;
    Ok(())
}
