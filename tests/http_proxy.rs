//! The HTTP/1.1 reverse proxy of `examples/http_proxy` (its `proxy.rs`,
//! included here), between std-socket clients and a small upstream:
//! keep-alive with Content-Length bodies (spliced), chunked bodies,
//! `Expect: 100-continue`, `Connection: close`, `Via` and
//! `X-Forwarded-For`, a malformed head (400, closed); and HTTP/2 over
//! cleartext — prior knowledge and `Upgrade: h2c` — through the proxy to
//! an upstream built on the `h2` crate, with an `h2` client and, where
//! installed, curl.

#[path = "../examples/http_proxy/proxy.rs"]
mod proxy;

mod common;
#[path = "http_proxy/upstream.rs"]
mod upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use upstream::{h2_get, read_response, Response};

/// A proxy to `upstream` on its own greenrt runtime (dropping the runtime
/// stops it).
fn start_proxy(upstream: SocketAddr) -> (SocketAddr, greenrt::Runtime) {
    let rt = common::runtime(2);
    let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = proxy::Config::new(upstream);
    config.log_errors = false;
    drop(rt.spawn(move || proxy::serve(listener, config)));
    (addr, rt)
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Several requests on one connection: GET, a 200 kB POST (spliced both
/// ways: the upstream echoes it), a small POST; each answer carries what
/// the upstream saw of `Via` and `X-Forwarded-For`.
#[test]
fn keep_alive_content_length_bodies() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let mut c = connect(addr);
        let before = greenrt::io::stats();
        c.get_mut()
            .write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"GET /a"[..]));
        assert!(header(&r, "x-seen-via").unwrap().contains("greenrt"));
        assert_eq!(header(&r, "x-seen-xff"), Some("127.0.0.1"));
        assert!(header(&r, "via").unwrap().contains("greenrt"));

        let big = body(200_000);
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: {}\r\n\r\n",
            big.len()
        );
        c.get_mut().write_all(head.as_bytes()).unwrap();
        c.get_mut().write_all(&big).unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == big, "the echoed body differs");
        assert_eq!(header(&r, "x-seen-xff"), Some("10.0.0.1, 127.0.0.1"));
        // The proxy counts a splice when its copy returns, which can be
        // after the last byte reached us: wait for the count to settle.
        let want = 2 * (200_000 - 2048);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spliced = greenrt::io::stats().since(&before).spliced_bytes;
        while spliced < want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            spliced = greenrt::io::stats().since(&before).spliced_bytes;
        }
        assert!(
            spliced >= want,
            "the bodies were not spliced: {spliced} bytes"
        );

        c.get_mut()
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.body, b"hello");
    });
}

/// A chunked request body reaches the upstream intact (it decodes it and
/// answers chunked, which the client decodes).
#[test]
fn chunked_bodies_both_ways() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let mut c = connect(addr);
        let big = body(50_000);
        let mut req =
            b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in [&big[..10], &big[10..30_010], &big[30_010..]] {
            req.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            req.extend_from_slice(piece);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
        c.get_mut().write_all(&req).unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.chunked, "the upstream's chunked framing was not relayed");
        assert!(r.body == big, "the chunked body differs");
        // The connection stays usable.
        c.get_mut()
            .write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut c).unwrap().body, b"GET /after");
    });
}

/// `Expect: 100-continue`: the proxy answers 100, takes the body, and
/// the upstream sees no Expect.
#[test]
fn expect_100_continue() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let mut c = connect(addr);
        c.get_mut()
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            )
            .unwrap();
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
        c.read_line(&mut line).unwrap();
        c.get_mut().write_all(b"data").unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"data"[..]));
        assert_eq!(header(&r, "x-seen-expect"), Some(""));
    });
}

/// `Connection: close` from the client: the answer says close, then the
/// proxy closes.
#[test]
fn connection_close() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let mut c = connect(addr);
        c.get_mut()
            .write_all(b"GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.body, b"GET /bye");
        assert_eq!(header(&r, "connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "not closed");
    });
}

/// The upstream closes a kept connection after `/drop` without saying
/// so: the next request (no body) is retried on a fresh connection.
#[test]
fn stale_upstream_connection_is_replaced() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let mut c = connect(addr);
        for path in ["/drop", "/next", "/drop", "/last"] {
            // Give the upstream's close time to arrive first, half the
            // time (the retry covers both orders).
            if path == "/last" {
                std::thread::sleep(Duration::from_millis(50));
            }
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
            c.get_mut().write_all(req.as_bytes()).unwrap();
            let r = read_response(&mut c).unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body, format!("GET {path}").as_bytes());
        }
    });
}

/// A malformed head is answered 400 and the connection closed; a proxy
/// that then gets a good request on a new connection still works.
#[test]
fn malformed_head_is_400_and_closed() {
    let up = upstream::Http1::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Digits only (RFC 9110 8.6): Rust's parse takes a sign, an
            // upstream may not, and the two would frame the body apart.
            b"POST / HTTP/1.1\r\nContent-Length: +0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            // The same for a chunk size; the fault is the client's (not a
            // 502), though the head went upstream already.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+0\r\n\r\n",
        ] {
            let mut c = connect(addr);
            c.get_mut().write_all(bad).unwrap();
            let r = read_response(&mut c).unwrap();
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
            let mut rest = Vec::new();
            assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
        }
        let mut c = connect(addr);
        c.get_mut()
            .write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut c).unwrap().status, 200);
    });
}

/// HTTP/2 with prior knowledge, and after an `Upgrade: h2c` the upstream
/// accepts: an h2 client gets its responses through the proxy's tunnel.
#[test]
fn h2c_through_the_proxy() {
    let up = upstream::H2::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        let got = h2_get(addr, &["/one", "/two"], false).unwrap();
        assert_eq!(got, ["h2 /one", "h2 /two"]);
        let got = h2_get(addr, &["/three"], true).unwrap();
        assert_eq!(got, ["h2 /three"]);
    });
}

/// The same with curl (`--http2-prior-knowledge`, and `--http2`, which
/// upgrades), if curl is installed.
#[test]
fn h2c_with_curl() {
    let curl_ok = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    if !curl_ok {
        eprintln!("skipped: no curl with HTTP/2 support on PATH");
        return;
    }
    let up = upstream::H2::start();
    let (addr, _rt) = start_proxy(up.addr);
    common::guarded(move || {
        for (flag, path, want) in [
            ("--http2-prior-knowledge", "/pk", "h2 /pk"),
            ("--http2", "/curl-upgrade", "h2 upgraded"),
        ] {
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "-",
                    "-w",
                    " %{http_version}",
                ])
                .arg(flag)
                .arg(format!("http://{addr}{path}"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text == format!("{want} 2"),
                "curl {flag}: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
