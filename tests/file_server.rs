//! `examples/file_server` end to end: the compiled example (built by
//! `cargo test` and `cargo build --examples`, in the same profile as this
//! test) serves a temporary tree, and plain std sockets check GET, HEAD,
//! Range, keep-alive, `Connection: close`, the error statuses, path
//! traversal, and byte-identical bodies of a direct-read file whose size
//! is not a multiple of the alignment. Skips, saying why, when the
//! example binary is missing (e.g. `cargo test --test file_server` alone
//! does not build examples).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example binary of this build profile (or the other one).
fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/file_server-<hash>
    let profile_dir = exe.parent()?.parent()?;
    let target = profile_dir.parent()?;
    let ours = profile_dir.join("examples/file_server");
    let others = ["release", "debug"].map(|p| target.join(p).join("examples/file_server"));
    std::iter::once(ours).chain(others).find(|p| p.is_file())
}

struct Server {
    child: Child,
    addr: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(bin: &Path, root: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(["--root", root.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(["--workers", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the file_server example");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the banner");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            stdout,
        }
    }

    fn connect(&self) -> BufReader<TcpStream> {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        BufReader::new(s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on `conn` and reads its reply (no body for HEAD).
fn request(conn: &mut BufReader<TcpStream>, method: &str, target: &str, extra: &str) -> Reply {
    let req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    conn.get_mut().write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').expect("header");
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = reply.header("content-length").unwrap().parse().unwrap();
    if method != "HEAD" {
        reply.body.resize(len, 0);
        conn.read_exact(&mut reply.body).unwrap();
    }
    reply
}

fn get(server: &Server, target: &str, extra: &str) -> Reply {
    request(&mut server.connect(), "GET", target, extra)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree under the target directory (ext4 here, unlike a tmpfs /tmp,
/// so O_DIRECT works).
fn make_tree(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .unwrap()
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("hello.txt"), b"hello, file server\n").unwrap();
    std::fs::write(dir.join("sub/inner.bin"), noise(5000, 1)).unwrap();
    // Crosses the 1 MiB threshold and two 1 MiB chunks; unaligned size.
    std::fs::write(dir.join("odd.bin"), noise(2 * (1 << 20) + 12345, 2)).unwrap();
    std::fs::write(secret_path(&dir), b"no").unwrap();
    dir
}

/// A file beside the tree, which traversal must not reach: named after
/// the tree (so per process, like it), since one test process's cleanup
/// must not remove another's.
fn secret_path(root: &std::path::Path) -> PathBuf {
    let mut name = root.file_name().unwrap().to_os_string();
    name.push("-secret");
    root.with_file_name(name)
}

#[test]
fn file_server_example() {
    let Some(bin) = example_binary() else {
        println!("skipped: examples/file_server is not built (cargo build --examples)");
        return;
    };
    println!("testing {}", bin.display());
    let root = make_tree("file_server_root");
    let server = Server::start(&bin, &root, &["--direct-threshold", "1M"]);
    let odd = std::fs::read(root.join("odd.bin")).unwrap();

    // GET and HEAD.
    let r = get(&server, "/hello.txt", "");
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, file server\n"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = request(&mut server.connect(), "HEAD", "/odd.bin", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*odd.len().to_string()));

    // The direct-read file, whole and in ranges (unaligned start, across
    // a chunk boundary, to the unaligned end, suffix).
    let r = get(&server, "/odd.bin", "");
    assert_eq!(r.status, 200);
    assert!(r.body == odd, "odd.bin differs ({} bytes)", r.body.len());
    for (spec, lo, hi) in [
        ("bytes=1000-1048999", 1000, 1049000),
        ("bytes=1048575-2097152", 1048575, 2097153),
        ("bytes=2000000-", 2000000, odd.len()),
        ("bytes=-100", odd.len() - 100, odd.len()),
        ("bytes=5-99999999", 5, odd.len()),
    ] {
        let r = get(&server, "/odd.bin", &format!("Range: {spec}\r\n"));
        assert_eq!(r.status, 206, "{spec}");
        let want = format!("bytes {lo}-{}/{}", hi - 1, odd.len());
        assert_eq!(r.header("content-range"), Some(&*want), "{spec}");
        assert!(r.body == odd[lo..hi], "{spec}: body differs");
    }
    let inner = std::fs::read(root.join("sub/inner.bin")).unwrap();
    let r = get(&server, "/sub/inner.bin", "Range: bytes=10-19\r\n");
    assert_eq!((r.status, &r.body[..]), (206, &inner[10..20]));
    let r = get(&server, "/sub/inner.bin", "Range: bytes=5000-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */5000"));

    // Errors and traversal.
    assert_eq!(get(&server, "/missing", "").status, 404);
    assert_eq!(get(&server, "/sub", "").status, 404);
    let r = request(&mut server.connect(), "POST", "/hello.txt", "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let secret_file = secret_path(&root);
    let secret = secret_file.file_name().unwrap().to_str().unwrap();
    for target in [
        format!("/../{secret}"),
        format!("/sub/../../{secret}"),
        format!("/%2e%2e/{secret}"),
        format!("/sub/%2E%2E/%2e%2e/{secret}"),
    ] {
        let r = get(&server, &target, "");
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.header("connection"), Some("close"), "{target}");
    }
    std::os::unix::fs::symlink(&secret_file, root.join("link")).unwrap();
    assert_eq!(get(&server, "/link", "").status, 403);

    // Keep-alive: two requests on one connection, then Connection: close.
    let mut conn = server.connect();
    let r = request(&mut conn, "GET", "/hello.txt", "");
    assert_eq!((r.status, r.header("connection")), (200, None));
    let r = request(&mut conn, "GET", "/sub/inner.bin", "");
    assert!(r.status == 200 && r.body == inner);
    let r = request(&mut conn, "GET", "/hello.txt", "Connection: close\r\n");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("the server closes");
    assert!(rest.is_empty());

    drop(server);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&secret_file);
}

#[test]
fn file_server_report_after_requests() {
    let Some(bin) = example_binary() else {
        println!("skipped: examples/file_server is not built (cargo build --examples)");
        return;
    };
    let root = make_tree("file_server_report");
    let mut server = Server::start(&bin, &root, &["--report", "--requests", "2"]);
    assert_eq!(get(&server, "/odd.bin", "").status, 200);
    assert_eq!(get(&server, "/hello.txt", "").status, 200);
    let mut out = String::new();
    server.stdout.read_to_string(&mut out).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains("page-cache residency"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .to_string()
    };
    assert!(line("odd.bin").contains("direct"), "{out}");
    assert!(line("hello.txt").contains("1/1"), "{out}");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(secret_path(&root));
}
