//! The server-only mode: a greenrt echo server and a tokio echo server,
//! each in a process of its own (this bench re-executed with
//! [`SERVER_ENV`] set), loaded in turn by the same client in this process,
//! so the server's cost alone decides (see the bench's module docs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::Load;

use crate::common::median;
use crate::util::Percentiles;
use crate::WORKERS;

/// Set to `greenrt` or `tokio`, the bench runs that echo server instead.
pub const SERVER_ENV: &str = "ECHO_BENCH_SERVER";
/// Both servers read up to this much at a time (the largest message).
const SERVER_BUF: usize = 16 * 1024;
/// Samples per server per cell (after one warm-up sample each), and how
/// long each runs.
pub const SAMPLES: usize = 10;
const SAMPLE_TIME: Duration = Duration::from_millis(300);

/// The child's side: serves on a free loopback port, prints it, and exits
/// when its stdin closes (the bench dropped it, or died).
pub fn serve(kind: &str) -> ! {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    match kind {
        "greenrt" => serve_greenrt(),
        "tokio" => serve_tokio(),
        _ => panic!("{SERVER_ENV}={kind}: expected greenrt or tokio"),
    }
    unreachable!("the server returned")
}

fn announce(addr: SocketAddr) {
    println!("{}", addr.port());
    std::io::stdout().flush().unwrap();
}

fn serve_greenrt() {
    let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
    rt.block_on(|| {
        let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
        announce(listener.local_addr().unwrap());
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            greenrt::spawn(move || {
                let mut buf = vec![0; SERVER_BUF];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn serve_tokio() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        announce(listener.local_addr().unwrap());
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0; SERVER_BUF];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A server process; killed (its stdin closed) on drop.
pub struct Server {
    /// How [`SERVERS_ENV`] named it.
    pub label: String,
    child: Child,
    addr: SocketAddr,
}

/// Which servers the server-only mode loads, comma-separated: each
/// `greenrt` or `tokio`, optionally followed by `@BINARY` (that build of
/// this bench runs the server, e.g. a build of an earlier commit, for a
/// before/after comparison in one run) and by `+VAR=VALUE` environment
/// settings for the server process. Default `greenrt,tokio`; ratios are
/// against the first `tokio`.
pub const SERVERS_ENV: &str = "ECHO_BENCH_SERVERS";

impl Server {
    pub fn start(spec: &str) -> Server {
        let mut parts = spec.split('+');
        let head = parts.next().unwrap();
        let (kind, bin) = match head.split_once('@') {
            Some((kind, bin)) => (kind, bin.into()),
            None => (head, std::env::current_exe().unwrap()),
        };
        let mut cmd = Command::new(bin);
        for var in parts {
            let (k, v) = var.split_once('=').expect("+VAR=VALUE");
            cmd.env(k, v);
        }
        let mut child = cmd
            .env(SERVER_ENV, kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server's port");
        Server {
            label: spec.into(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// CPU seconds (user + system) and context switches (voluntary and
    /// not) of the server process so far, all threads.
    fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let status = std::fs::read_to_string(task.unwrap().path().join("status"));
            for line in status.unwrap_or_default().lines() {
                if line.contains("ctxt_switches:") {
                    switches += line
                        .split_whitespace()
                        .nth(1)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap();
                }
            }
        }
        (ticks as f64 / hz, switches)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// One cell's figures for one server.
#[derive(Default)]
pub struct Figures {
    pub rps: Vec<f64>,
    pub latencies: Vec<Percentiles>,
    requests: f64,
    cpu: f64,
    switches: u64,
    /// The load client's own CPU time (its one thread) and the samples'
    /// wall-clock time, seconds.
    client_cpu: f64,
    wall: f64,
}

impl Figures {
    pub fn median_rps(&self) -> f64 {
        median(&self.rps)
    }
    /// Server CPU µs per request over all samples.
    pub fn cpu_us(&self) -> f64 {
        self.cpu / self.requests * 1e6
    }
    /// Server context switches per request over all samples.
    pub fn switches(&self) -> f64 {
        self.switches as f64 / self.requests
    }
    /// The load client's CPU µs per request over all samples.
    pub fn client_cpu_us(&self) -> f64 {
        self.client_cpu / self.requests * 1e6
    }
    /// How busy the load client's thread was over the samples (1.0: a
    /// whole CPU). Near 1.0 the client, not the server, caps requests/s.
    pub fn client_busy(&self) -> f64 {
        self.client_cpu / self.wall
    }
}

/// Runs a cell against every server: a warm-up sample each, then
/// [`SAMPLES`] rounds of one sample per server, in rotating order.
/// Returns each server's figures.
pub fn cell(servers: &[Server], connections: usize, size: usize) -> Vec<Figures> {
    let mut loads: Vec<Load> = servers
        .iter()
        .map(|s| Load::connect(s.addr, connections, size))
        .collect();
    let run = |load: &mut Load| load.sample(SAMPLE_TIME);
    for load in &mut loads {
        run(load);
    }
    let mut figs: Vec<Figures> = servers.iter().map(|_| Figures::default()).collect();
    let n = servers.len();
    for i in 0..SAMPLES {
        for j in 0..n {
            // Rotating (and on odd rounds reversed) order: no server
            // always follows the same one.
            let k = if i % 2 == 0 {
                (i + j) % n
            } else {
                (i + n - j) % n
            };
            let before = servers[k].usage();
            let (client_before, start) = (thread_cpu(), std::time::Instant::now());
            let (r, mut latencies) = run(&mut loads[k]);
            let (client_after, wall) = (thread_cpu(), start.elapsed().as_secs_f64());
            let after = servers[k].usage();
            let f = &mut figs[k];
            f.rps.push(r);
            f.requests += latencies.len() as f64;
            f.latencies
                .push(Percentiles::of(&mut latencies).unwrap_or_default());
            f.cpu += after.0 - before.0;
            f.switches += after.1 - before.1;
            f.client_cpu += client_after - client_before;
            f.wall += wall;
        }
    }
    figs
}

/// The calling thread's CPU time, seconds (the load client is one thread).
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Median over rounds of `a`'s requests/s over `b`'s.
pub fn ratio(a: &Figures, b: &Figures) -> f64 {
    let r: Vec<f64> = a.rps.iter().zip(&b.rps).map(|(x, y)| x / y).collect();
    median(&r)
}
