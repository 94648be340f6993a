//! "Parse the head, splice the body": the HTTP/1.1 reverse proxy of
//! `examples/http_proxy` against a tokio proxy that does the same head
//! work, in one run. Three proxies between the same clients and backend:
//!
//! - `greenrt_splice`: the example's proxy (`proxy.rs`): heads parsed
//!   with httparse from a 1 KiB buffer, `Content-Length` bodies moved by
//!   `greenrt::io::copy` on a `Take` of the socket, which splices them;
//! - `greenrt_copy`: the same proxy with `CopyMode::Buffered` (bodies
//!   read and written through an 8 KiB buffer);
//! - `tokio`: the same heads (the same parse and rewrite functions) and
//!   bodies through `tokio::io::copy` on a `take` (`tokio_proxy.rs`).
//!
//! Each proxy runtime has [`WORKERS`] workers; the clients and the backend
//! are OS threads with std's blocking sockets (one per connection), the
//! same for every proxy, and as cheap as they can be so that the proxy's
//! own cost shows: the clients send bodies from a memfd by sendfile(2),
//! the backend drops them in the kernel (recv with MSG_TRUNC). Scenarios, each on [`CONNS`] keep-alive
//! connections:
//!
//! 1. `post_1MiB`: each connection POSTs [`BODY_REQS`] 1 MiB bodies in
//!    turn; the backend reads them and answers with an empty body. MB/s.
//! 2. `empty`: each connection sends [`EMPTY_REQS`] GETs in turn, empty
//!    responses. Requests/s.
//!
//! A round sends one batch through each proxy, in an order rotated round
//! by round (the first after a pause runs slower on a busy machine);
//! after [`WARM_UP`] unmeasured rounds, [`ROUNDS`] rounds are measured
//! (`GREENRT_HTTP_PROXY_ROUNDS`). The table gives each proxy's median
//! throughput, the ratios to tokio, and greenrt's copy counters.
//!
//! `cargo bench --bench http_proxy` (about 15 s on 2 cores).

#[path = "../examples/http_proxy/proxy.rs"]
mod proxy;

mod common;
#[path = "http_proxy/tokio_proxy.rs"]
mod tokio_proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{benchmarking, load_average, median, timed};

const WORKERS: usize = 2;
const CONNS: usize = 8;
const BODY: usize = 1 << 20;
const BODY_REQS: usize = 8;
const EMPTY_REQS: usize = 400;
const WARM_UP: usize = 2;
const ROUNDS: usize = 21;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    GreenrtSplice,
    GreenrtCopy,
    Tokio,
}

const VARIANTS: [Variant; 3] = [Variant::GreenrtSplice, Variant::GreenrtCopy, Variant::Tokio];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::GreenrtSplice => "greenrt splice",
            Variant::GreenrtCopy => "greenrt copy",
            Variant::Tokio => "tokio",
        }
    }
}

/// A running proxy; dropping it stops its runtime.
enum Proxy {
    Greenrt(#[allow(dead_code)] greenrt::Runtime),
    Tokio(#[allow(dead_code)] tokio::runtime::Runtime),
}

fn start_proxy(variant: Variant, upstream: SocketAddr) -> (SocketAddr, Proxy) {
    if variant == Variant::Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(tokio_proxy::serve(listener, upstream));
        return (addr, Proxy::Tokio(rt));
    }
    let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
    let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = proxy::Config::new(upstream);
    if variant == Variant::GreenrtCopy {
        config = config.buffered();
    }
    drop(rt.spawn(move || proxy::serve(listener, config)));
    (addr, Proxy::Greenrt(rt))
}

/// The backend: a thread per connection; reads each request (and its
/// `Content-Length` body) and answers with an empty 200.
fn start_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            s.set_nodelay(true).unwrap();
            std::thread::spawn(move || serve_backend(s));
        }
    });
    addr
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one head into `buf` (which holds `have` bytes) and returns (head
/// length, Content-Length, bytes held); None at end of stream.
fn read_head(s: &mut TcpStream, buf: &mut [u8], mut have: usize) -> Option<(usize, usize, usize)> {
    loop {
        if let Some(i) = find(&buf[..have], b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..i]).unwrap();
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            return Some((i + 4, len, have));
        }
        let n = s.read(&mut buf[have..]).ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
}

/// Reads `len` body bytes, of which `held` are already in `buf` (past
/// `start`); returns the bytes of the next message already read (moved
/// to the front of `buf`).
fn skip_body(s: &mut TcpStream, buf: &mut [u8], start: usize, held: usize, len: usize) -> usize {
    let in_buf = held - start;
    if in_buf >= len {
        buf.copy_within(start + len..held, 0);
        return in_buf - len;
    }
    let mut left = len - in_buf;
    while left > 0 {
        let n = discard(s, left, buf);
        assert!(n > 0, "connection closed mid-body");
        left -= n;
    }
    0
}

/// Receives and drops up to `len` bytes: recv(2) with MSG_TRUNC, which on
/// TCP discards them in the kernel without copying (so the backend costs
/// every proxy as little as it can); a plain read where that fails.
fn discard(s: &mut TcpStream, len: usize, buf: &mut [u8]) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel writes nothing to
    // the buffer; a null one of any length is allowed. The fd is open
    // while `s` is borrowed.
    let n = unsafe { libc::recv(s.as_raw_fd(), std::ptr::null_mut(), len, libc::MSG_TRUNC) };
    if n >= 0 {
        return n as usize;
    }
    let want = len.min(buf.len());
    s.read(&mut buf[..want]).unwrap()
}

fn serve_backend(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    while let Some((head, len, held)) = read_head(&mut s, &mut buf, have) {
        have = skip_body(&mut s, &mut buf, head, held, len);
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// One connection's share of a batch: `reqs` requests in turn, each with
/// `body` bytes of body, each response read.
fn client(s: &mut TcpStream, reqs: usize, body: &BodyFile, size: usize) {
    let head = if size == 0 {
        "GET /empty HTTP/1.1\r\nHost: bench\r\n\r\n".to_string()
    } else {
        format!("POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n\r\n")
    };
    let mut buf = vec![0u8; 4096];
    for _ in 0..reqs {
        s.write_all(head.as_bytes()).unwrap();
        body.send(s, size);
        let (end, len, held) = read_head(s, &mut buf, 0).expect("the proxy closed");
        assert!(buf.starts_with(b"HTTP/1.1 200 "));
        assert_eq!(skip_body(s, &mut buf, end, held, len), 0, "no pipelining");
    }
}

/// The request body in a memfd, sent with sendfile(2): the pages go to
/// the socket without a copy, so the clients, like the backend, cost
/// every proxy as little as they can and the proxy's own cost shows.
struct BodyFile(std::fs::File);

impl BodyFile {
    fn new(len: usize) -> BodyFile {
        // SAFETY: a NUL-terminated name and valid flags; the fd returned
        // (if any) is owned by the File below and nowhere else.
        let fd = unsafe { libc::memfd_create(c"http_proxy_body".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.write_all(&vec![b'x'; len]).unwrap();
        BodyFile(f)
    }

    /// Sends the first `len` bytes of the body to `s`.
    fn send(&self, s: &TcpStream, len: usize) {
        use std::os::fd::AsRawFd;
        let mut offset: libc::off_t = 0;
        while (offset as usize) < len {
            // SAFETY: both fds are open while borrowed; `offset` is a
            // valid, writable off_t that sendfile advances.
            let n = unsafe {
                libc::sendfile(
                    s.as_raw_fd(),
                    self.0.as_raw_fd(),
                    &mut offset,
                    len - offset as usize,
                )
            };
            assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        }
    }
}

/// The scenarios: name, requests per connection, body size.
const SCENARIOS: [(&str, usize, usize); 2] =
    [("post_1MiB", BODY_REQS, BODY), ("empty", EMPTY_REQS, 0)];

fn main() {
    let measuring = benchmarking();
    let rounds = if measuring {
        std::env::var("GREENRT_HTTP_PROXY_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ROUNDS)
    } else {
        1 // one smoke round under `cargo test --benches`
    };
    let warm_up = if measuring { WARM_UP } else { 0 };
    println!(
        "[http_proxy] load average {} on {} CPUs; {CONNS} connections, {WORKERS} proxy workers",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let backend = start_backend();
    let proxies: Vec<_> = VARIANTS.iter().map(|&v| start_proxy(v, backend)).collect();
    let body = BodyFile::new(BODY);
    println!(
        "| scenario | greenrt splice | greenrt copy | tokio | splice / tokio | copy / tokio |"
    );
    println!("|---|---|---|---|---|---|");
    let mut counters = Vec::new();
    for (name, reqs, size) in SCENARIOS {
        let mut conns: Vec<Vec<TcpStream>> = proxies
            .iter()
            .map(|(addr, _)| {
                (0..CONNS)
                    .map(|_| {
                        let s = TcpStream::connect(addr).unwrap();
                        s.set_nodelay(true).unwrap();
                        s
                    })
                    .collect()
            })
            .collect();
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
        let mut stats = [greenrt::io::CopyStats::default(); 2];
        for round in 0..warm_up + rounds {
            for k in 0..VARIANTS.len() {
                let v = (k + round) % VARIANTS.len();
                let before = greenrt::io::stats();
                let (wall, _cpu) = timed(|| {
                    std::thread::scope(|scope| {
                        for s in conns[v].iter_mut() {
                            let body = &body;
                            scope.spawn(move || client(s, reqs, body, size));
                        }
                    })
                });
                if round >= warm_up {
                    walls[v].push(wall);
                    if v < 2 {
                        let d = greenrt::io::stats().since(&before);
                        stats[v].spliced_bytes += d.spliced_bytes;
                        stats[v].copied_bytes += d.copied_bytes;
                        stats[v].splice_calls += d.splice_calls;
                    }
                }
            }
        }
        let (units, unit, scale) = if size > 0 {
            ((CONNS * reqs * size) as f64, "MB/s", 1e-6)
        } else {
            ((CONNS * reqs) as f64, "req/s", 1.0)
        };
        let tput: Vec<f64> = walls
            .iter()
            .map(|w| median(&w.iter().map(|t| units / t * scale).collect::<Vec<_>>()))
            .collect();
        println!(
            "| {name} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {:.2} | {:.2} |",
            tput[0],
            tput[1],
            tput[2],
            tput[0] / tput[2],
            tput[1] / tput[2]
        );
        counters.push((name, stats));
    }
    println!(
        "\ngreenrt copy counters over the measured rounds (spliced / copied bytes / splice calls):"
    );
    for (name, stats) in counters {
        for (v, s) in VARIANTS.iter().zip(stats) {
            println!(
                "  {name}/{}: {} / {} / {}",
                v.name(),
                s.spliced_bytes,
                s.copied_bytes,
                s.splice_calls
            );
        }
    }
    println!(
        "medians of {rounds} rounds; load average now {}",
        load_average()
    );
    drop(proxies);
}
