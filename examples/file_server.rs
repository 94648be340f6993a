//! A static HTTP/1.1 file server in which big files bypass the page cache:
//! the direct-I/O article's scenario (README, "File server: direct I/O
//! keeps the hot set cached").
//!
//! ```sh
//! cargo run --release --example file_server -- --make-demo /var/tmp/fsdemo
//! cargo run --release --example file_server -- --root /var/tmp/fsdemo --report
//! curl -s -o /dev/null http://127.0.0.1:8080/big.bin
//! ```
//!
//! GET and HEAD, keep-alive, `Content-Length`, one `Range: bytes=a-b` (206),
//! one green thread per connection. A file of at least `--direct-threshold`
//! bytes (default 1 MiB) is read with O_DIRECT (`greenrt::fs`) in 1 MiB
//! aligned chunks, the next chunk's read running in a green thread of its
//! own while the current one is written to the socket; smaller files go
//! from the page cache through `greenrt::io::copy`. `--report` prints, at
//! exit (`--requests N` served, `--duration SECS` over, or Ctrl-C), how
//! much of each served file the page cache holds, as vmtouch does.
//! `--make-demo`, `--evict` and `--residency` set up and inspect the demo.

#[path = "file_server/demo.rs"]
mod demo;
#[path = "file_server/http.rs"]
mod http;

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::fs::{AlignedBuf, File, OpenOptions};
use greenrt::io::CopyOptions;
use greenrt::net::{TcpListener, TcpStream};
use http::{Request, Response};

const USAGE: &str = "\
usage: file_server --root DIR [--addr ADDR:PORT] [--workers N] [--direct-threshold SIZE|off]
                   [--report] [--requests N] [--duration SECS]
       file_server --make-demo DIR [--big-mib N] [--small-files N] [--small-kib N]
       file_server --evict PATH...      (fsync, then drop from the page cache)
       file_server --residency PATH...  (page-cache residency, as vmtouch)

  --root DIR               directory to serve (nothing outside it is served)
  --addr ADDR:PORT         address to listen on (default 127.0.0.1:8080)
  --workers N              greenrt worker threads (default: GREENRT_WORKERS
                           or the number of CPUs)
  --direct-threshold SIZE  files of at least SIZE bytes (K, M, G suffixes)
                           are read with O_DIRECT (default 1M); off or
                           never: every file through the page cache
  --report                 at exit, print the page-cache residency of every
                           file served
  --requests N             exit after N requests
  --duration SECS          exit after SECS seconds
  --make-demo DIR          create DIR/small/000.bin... (--small-files, default
                           200, of --small-kib KiB, default 16) and DIR/big.bin
                           (--big-mib MiB, default 1024), big.bin uncached
  -h, --help               this text";

/// Bytes per direct read (a multiple of any O_DIRECT alignment).
const CHUNK: usize = 1 << 20;

/// How the server was asked to run.
struct Config {
    root: PathBuf,
    addr: String,
    workers: Option<usize>,
    direct_threshold: Option<u64>,
    report: bool,
    requests: Option<u64>,
    duration: Option<Duration>,
}

enum Mode {
    Serve(Config),
    MakeDemo(demo::DemoSpec),
    Evict(Vec<PathBuf>),
    Residency(Vec<PathBuf>),
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("not a size: {s:?}"))
}

fn parse_args() -> Result<Mode, String> {
    let mut cfg = Config {
        root: PathBuf::new(),
        addr: "127.0.0.1:8080".into(),
        workers: None,
        direct_threshold: Some(1 << 20),
        report: false,
        requests: None,
        duration: None,
    };
    let mut root = None;
    let mut demo = None;
    let mut spec = demo::DemoSpec::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} must be a number, not {v:?}"))
        };
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--addr" => cfg.addr = value("--addr")?,
            "--workers" => match number("--workers", value("--workers")?)? {
                0 => return Err("--workers must be at least 1".into()),
                n => cfg.workers = Some(n as usize),
            },
            "--direct-threshold" => {
                cfg.direct_threshold = match value("--direct-threshold")?.as_str() {
                    "off" | "never" => None,
                    v => Some(parse_size(v)?),
                }
            }
            "--report" => cfg.report = true,
            "--requests" => cfg.requests = Some(number("--requests", value("--requests")?)?),
            "--duration" => {
                let secs = number("--duration", value("--duration")?)?;
                cfg.duration = Some(Duration::from_secs(secs));
            }
            "--make-demo" => demo = Some(PathBuf::from(value("--make-demo")?)),
            "--big-mib" => spec.big_mib = number("--big-mib", value("--big-mib")?)?,
            "--small-files" => spec.small_files = number("--small-files", value("--small-files")?)?,
            "--small-kib" => spec.small_kib = number("--small-kib", value("--small-kib")?)?,
            "--evict" => return Ok(Mode::Evict(args.map(PathBuf::from).collect())),
            "--residency" => return Ok(Mode::Residency(args.map(PathBuf::from).collect())),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(dir) = demo {
        spec.dir = dir;
        return Ok(Mode::MakeDemo(spec));
    }
    cfg.root = root.ok_or("--root (or --make-demo, --evict, --residency) is required")?;
    Ok(Mode::Serve(cfg))
}

fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("file_server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Serve(cfg) => serve_main(cfg),
        Mode::MakeDemo(spec) => demo::make(&spec),
        Mode::Evict(paths) => demo::evict(&paths),
        Mode::Residency(paths) => demo::print_residency(&paths),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("file_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Files served (canonical path → how), for `--report`.
static SERVED: greenrt::sync::Mutex<Vec<(PathBuf, &'static str)>> =
    greenrt::sync::Mutex::new(Vec::new());
static REPORT: AtomicU64 = AtomicU64::new(0);

/// Prints the report (if asked for) and ends the process. Called once
/// from whichever comes first: the request limit, the duration, SIGINT.
fn finish(code: i32) -> ! {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if REPORT.load(Ordering::SeqCst) != 0 {
        let mut served = SERVED.lock().unwrap_or_else(|e| e.into_inner()).clone();
        served.sort();
        served.dedup();
        demo::report(&served);
    }
    let _ = io::stdout().flush();
    std::process::exit(code)
}

fn serve_main(cfg: Config) -> io::Result<()> {
    // SIGINT (and SIGTERM) blocked here, before the runtime starts its
    // threads (which inherit the mask), and taken by one std thread with
    // sigwait: no async-signal-safety to worry about when it reports.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGINT);
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.thread_block().map_err(io::Error::from)?;
    std::thread::spawn(move || {
        let code = match set.wait() {
            Ok(sig) => 128 + sig as i32,
            Err(_) => 1,
        };
        finish(code)
    });
    if let Some(d) = cfg.duration {
        std::thread::spawn(move || {
            std::thread::sleep(d);
            finish(0)
        });
    }
    REPORT.store(cfg.report as u64, Ordering::SeqCst);
    let mut builder = greenrt::Builder::new();
    if let Some(n) = cfg.workers {
        builder = builder.workers(n);
    }
    let rt = builder.build()?;
    let workers = rt.workers();
    rt.block_on(move || serve(cfg, workers))
}

/// The accept loop (the main green thread).
fn serve(mut cfg: Config, workers: usize) -> io::Result<()> {
    cfg.root = std::fs::canonicalize(&cfg.root)
        .map_err(|e| io::Error::new(e.kind(), format!("--root {}: {e}", cfg.root.display())))?;
    let listener = TcpListener::bind(&cfg.addr)?;
    let direct = match cfg.direct_threshold {
        Some(t) => format!("O_DIRECT for files of {t} bytes or more"),
        None => "every file through the page cache".into(),
    };
    println!(
        "file_server: serving {} on http://{} ({direct}, {workers} workers)",
        cfg.root.display(),
        listener.local_addr()?
    );
    let _ = io::stdout().flush();
    let cfg = Arc::new(cfg);
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("file_server: accept: {e}");
                greenrt::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let cfg = cfg.clone();
        greenrt::spawn(move || {
            if let Err(e) = connection(stream, &cfg) {
                use io::ErrorKind::*;
                if !matches!(
                    e.kind(),
                    ConnectionReset | BrokenPipe | WouldBlock | TimedOut
                ) {
                    eprintln!("file_server: {peer}: {e}");
                }
            }
        });
    }
}

/// Serves the requests of one connection until the client closes it, asks
/// to (`Connection: close`), or sends something unparsable.
fn connection(stream: TcpStream, cfg: &Config) -> io::Result<()> {
    static HANDLED: AtomicU64 = AtomicU64::new(0);
    stream.set_nodelay(true)?;
    // An idle keep-alive connection is dropped after a minute (the read
    // then fails with WouldBlock, which is not logged).
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut conn = BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut conn)? {
            None => return Ok(()),
            Some(Ok(req)) => req,
            Some(Err(resp)) => return resp.send(conn.get_mut(), false, false).map(drop),
        };
        let keep_alive = respond(&req, cfg, conn.get_mut())? && req.keep_alive;
        conn.get_mut().flush()?;
        let n = HANDLED.fetch_add(1, Ordering::SeqCst) + 1;
        if cfg.requests == Some(n) {
            finish(0);
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Answers one request; Ok(false) if the connection must close after it.
fn respond(req: &Request, cfg: &Config, out: &mut TcpStream) -> io::Result<bool> {
    let head_only = req.method == "HEAD";
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET and HEAD").send(out, req.keep_alive, head_only);
    }
    let path = match http::resolve(&cfg.root, &req.target) {
        Ok(p) => p,
        Err(resp) => return resp.send(out, req.keep_alive, head_only),
    };
    let direct = cfg
        .direct_threshold
        .is_some_and(|t| std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() >= t));
    let file = match open(&path, direct) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Response::error(404, "not found").send(out, req.keep_alive, head_only)
        }
        Err(e) => {
            eprintln!("file_server: {}: {e}", path.display());
            return Response::error(403, "cannot open").send(out, req.keep_alive, head_only);
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Response::error(404, "not a file").send(out, req.keep_alive, head_only);
    }
    let size = meta.len();
    let (start, end) = match req.range.map(|r| r.resolve(size)) {
        None => (0, size),
        Some(Some(r)) => r,
        Some(None) => {
            let mut resp = Response::error(416, "range not satisfiable");
            resp.content_range = Some(format!("bytes */{size}"));
            return resp.send(out, req.keep_alive, head_only);
        }
    };
    let mut resp = Response::new(if req.range.is_some() { 206 } else { 200 });
    resp.content_length = end - start;
    resp.content_type = http::content_type(&path);
    if req.range.is_some() {
        resp.content_range = Some(format!("bytes {start}-{}/{size}", end.max(1) - 1));
    }
    resp.send(out, req.keep_alive, head_only)?;
    if req.method == "HEAD" || start == end {
        return Ok(true);
    }
    let how = if file.direct_alignment().is_some() {
        "direct"
    } else {
        "buffered"
    };
    SERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((path.clone(), how));
    let sent = if file.direct_alignment().is_some() {
        send_direct(Arc::new(file), start, end, out)?
    } else {
        send_buffered(file, start, end, size, out)?
    };
    if sent != end - start {
        // The file shrank under us: the promised length cannot be kept,
        // and closing is the only way to tell the client.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{}: sent {sent} of {} bytes", path.display(), end - start),
        ));
    }
    Ok(true)
}

/// Opens `path`, with O_DIRECT if asked; a file system without O_DIRECT
/// (tmpfs...) gets a note and buffered reads.
fn open(path: &Path, direct: bool) -> io::Result<File> {
    if direct {
        match OpenOptions::new().read(true).direct(true).open(path) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("file_server: {e}; reading it through the page cache")
            }
            other => return other,
        }
    }
    File::open(path)
}

/// Bytes `start..end` of a page-cache file (of `size` bytes), by
/// `greenrt::io::copy_with`: a 256 KiB buffer rather than `copy`'s 8 KiB,
/// for fewer syscalls per MiB. The whole file is passed as the `File`
/// itself, so a zero-copy path of `io::copy` for files applies to it.
fn send_buffered(
    mut file: File,
    start: u64,
    end: u64,
    size: u64,
    out: &mut TcpStream,
) -> io::Result<u64> {
    let opts = CopyOptions::new().buffer_size(256 << 10);
    if start == 0 && end == size {
        return greenrt::io::copy_with(&mut file, out, opts);
    }
    file.seek(SeekFrom::Start(start))?;
    greenrt::io::copy_with(&mut file.take(end - start), out, opts)
}

/// A direct read of `buf.len()` bytes at `offset`, in a green thread of
/// its own: the read-ahead. It owns the buffer and the file until done,
/// so dropping its handle (an error while writing) is safe.
fn read_chunk(
    file: Arc<File>,
    mut buf: AlignedBuf,
    offset: u64,
) -> greenrt::JoinHandle<(AlignedBuf, io::Result<usize>)> {
    greenrt::spawn(move || {
        let r = file.read_at(&mut buf, offset);
        (buf, r)
    })
}

/// Bytes `start..end` of an O_DIRECT file: aligned 1 MiB reads, the next
/// one in flight while the current chunk is written to `out`. Reads
/// start at `start` rounded down to the alignment (the bytes before it
/// are skipped); the last one may pass `end` or the end of the file
/// (direct reads return the bytes that exist).
fn send_direct(file: Arc<File>, start: u64, end: u64, out: &mut TcpStream) -> io::Result<u64> {
    let align = file.direct_alignment().expect("a direct file");
    let chunk = CHUNK.next_multiple_of(align.offset);
    let mut offset = start - start % align.offset as u64;
    let mut skip = (start - offset) as usize;
    let mut spare = Some(AlignedBuf::for_alignment(chunk, align));
    let first = AlignedBuf::for_alignment(chunk, align);
    let mut pending = Some(read_chunk(file.clone(), first, offset));
    let mut sent = 0u64;
    while let Some(handle) = pending.take() {
        let (buf, r) = handle
            .join()
            .map_err(|_| io::Error::other("read-ahead green thread panicked"))?;
        let n = r?;
        let next = offset + n as u64;
        if n > 0 && next < end && n % align.offset == 0 {
            let spare = spare.take().expect("two buffers, one in flight");
            pending = Some(read_chunk(file.clone(), spare, next));
        }
        let upto = n.min((end - offset) as usize);
        if upto > skip {
            out.write_all(&buf[skip..upto])?;
            sent += (upto - skip) as u64;
        }
        skip = 0;
        offset = next;
        spare = Some(buf);
    }
    Ok(sent)
}
