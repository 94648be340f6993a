//! An HTTP/1.1 reverse proxy with keep-alive: parse the head, splice the
//! body. Every request accepted on `--listen` goes to `--upstream`; the
//! heads are parsed and rewritten (`Via`, `X-Forwarded-For`, hop-by-hop
//! headers dropped), `Content-Length` bodies are spliced with
//! `greenrt::io::copy` on a `Take` of the socket, chunked bodies relayed
//! chunk by chunk, `Expect: 100-continue` answered, and HTTP/2 over
//! cleartext (prior knowledge or an accepted `Upgrade: h2c`) switched to
//! a transparent splice in both directions. The logic is in `proxy.rs`
//! (shared with `tests/http_proxy.rs` and `benches/http_proxy.rs`).
//!
//! ```sh
//! cargo run --release --example http_proxy -- --listen 127.0.0.1:8080 --upstream 127.0.0.1:80
//! curl -v http://127.0.0.1:8080/
//! ```

#[path = "proxy.rs"]
mod proxy;

use std::process::ExitCode;
use std::time::Duration;

use greenrt::net::TcpListener;

const USAGE: &str = "\
usage: http_proxy --listen ADDR:PORT --upstream ADDR:PORT [--mode splice|copy]
                  [--idle-timeout SECS] [--workers N] [--quiet]

  --listen ADDR:PORT     address to accept connections on
  --upstream ADDR:PORT   HTTP server every request goes to
  --mode splice|copy     splice bodies and tunnels (default), or copy them
                         through a user-space buffer
  --idle-timeout SECS    close client connections idle this long (default 60)
  --workers N            greenrt worker threads (default: GREENRT_WORKERS
                         or the number of CPUs)
  --quiet                do not log failed connections
  -h, --help             this text";

struct Args {
    listen: String,
    config: proxy::Config,
    workers: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut upstream, mut workers) = (None, None, None);
    let (mut buffered, mut quiet, mut idle) = (false, false, 60u64);
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
                buffered = match value("--mode")?.as_str() {
                    "splice" => false,
                    "copy" => true,
                    other => return Err(format!("--mode must be splice or copy, not {other:?}")),
                }
            }
            "--idle-timeout" => {
                let v = value("--idle-timeout")?;
                idle = v.parse().ok().filter(|&s| s > 0).ok_or(format!(
                    "--idle-timeout must be a positive number, not {v:?}"
                ))?;
            }
            "--workers" => {
                let v = value("--workers")?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--workers must be a positive number, not {v:?}"))?;
                workers = Some(n);
            }
            "--quiet" => quiet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut config = proxy::Config::new(upstream.ok_or("--upstream is required")?);
    if buffered {
        config = config.buffered();
    }
    config.idle_timeout = Duration::from_secs(idle);
    config.log_errors = !quiet;
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        config,
        workers,
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
            eprintln!("http_proxy: {e}\n\n{USAGE}");
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
            eprintln!("http_proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(move || -> std::io::Result<()> {
        let listener = TcpListener::bind(&args.listen)?;
        println!(
            "http_proxy: {} -> {} ({:?} mode)",
            listener.local_addr()?,
            args.config.upstream,
            args.config.opts.get_mode()
        );
        proxy::serve(listener, args.config)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
