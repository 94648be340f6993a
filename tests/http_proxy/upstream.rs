//! The upstreams and clients of tests/http_proxy.rs: an HTTP/1.1 echo
//! server on std threads, an h2c server on tokio and the `h2` crate, a
//! response reader and an h2 client.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A parsed HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

/// Reads a head (up to the empty line) as lines.
fn read_head(r: &mut impl BufRead) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n").to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn parse_headers(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// Reads a body: chunked, by Content-Length, or none.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<(Vec<u8>, bool)> {
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
            if size == 0 {
                read_head(r)?; // trailers
                return Ok((body, true));
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    let len = get("content-length").map_or(0, |v| v.parse().unwrap_or(0));
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((body, false))
}

/// Reads one response (a 1xx one is returned like any other).
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let lines = read_head(r)?;
    let status = lines
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
    let headers = parse_headers(&lines[1..]);
    let (body, chunked) = read_body(r, &headers)?;
    Ok(Response {
        status,
        headers,
        body,
        chunked,
    })
}

/// The HTTP/1.1 upstream: a thread per connection, keep-alive. It answers
/// `/echo` with the request body, `/chunked` with it in chunks, anything
/// else with "METHOD PATH" (and closes after `/drop`); each answer carries the `Via`,
/// `X-Forwarded-For` and `Expect` it saw as `X-Seen-*`.
pub struct Http1 {
    pub addr: SocketAddr,
}

impl Http1 {
    pub fn start() -> Http1 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve_http1(s);
                });
            }
        });
        Http1 { addr }
    }
}

fn serve_http1(s: TcpStream) -> io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let lines = match read_head(&mut r) {
            Ok(l) => l,
            Err(_) => return Ok(()),
        };
        let mut start = lines[0].split(' ');
        let (method, path) = (start.next().unwrap_or(""), start.next().unwrap_or(""));
        let headers = parse_headers(&lines[1..]);
        let (body, _) = read_body(&mut r, &headers)?;
        let seen = |name: &str| {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let close = seen("connection").eq_ignore_ascii_case("close");
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nX-Seen-Via: {}\r\nX-Seen-Xff: {}\r\nX-Seen-Expect: {}\r\n",
            seen("via"),
            seen("x-forwarded-for"),
            seen("expect")
        );
        if close {
            head.push_str("Connection: close\r\n");
        }
        match path {
            "/chunked" => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let mut out = head.into_bytes();
                for piece in body.chunks(7_000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                w.write_all(&out)?;
            }
            _ => {
                let answer = if path == "/echo" {
                    body
                } else {
                    format!("{method} {path}").into_bytes()
                };
                head.push_str(&format!("Content-Length: {}\r\n\r\n", answer.len()));
                w.write_all(head.as_bytes())?;
                w.write_all(&answer)?;
            }
        }
        if close || path == "/drop" {
            // `/drop`: closed after the answer without saying so, as an
            // upstream whose keep-alive timeout ran out.
            return Ok(());
        }
    }
}

/// The h2c upstream (tokio, `h2`): HTTP/2 with prior knowledge, or an
/// HTTP/1.1 `Upgrade: h2c` answered 101 and followed by HTTP/2. Answers
/// every request with "h2 PATH". For `/curl-upgrade` it answers the
/// upgraded request itself as stream 1 in hand-made frames (the `h2`
/// crate cannot serve an upgrade: it knows no implicit stream 1).
pub struct H2 {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl H2 {
    pub fn start() -> H2 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve_h2_conn(s).await;
                });
            }
        });
        H2 { addr, _rt: rt }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_h2_conn(mut s: tokio::net::TcpStream) -> Result<(), BoxError> {
    let mut first = [0u8; 3];
    s.peek(&mut first).await?;
    if &first != b"PRI" {
        // An HTTP/1.1 head, read byte by byte so nothing after it is
        // taken (the client waits for the 101 before its preface anyway).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await?);
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !text.contains("\r\nupgrade: h2c\r\n") {
            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        )
        .await?;
        if text.starts_with("get /curl-upgrade ") {
            return answer_upgraded_stream(s).await;
        }
    }
    let mut conn = h2::server::handshake(s).await?;
    while let Some(request) = conn.accept().await {
        let (req, mut respond) = request?;
        let body = format!("h2 {}", req.uri().path());
        let mut send = respond.send_response(http::Response::new(()), false)?;
        send.send_data(bytes::Bytes::from(body), true)?;
    }
    Ok(())
}

/// HTTP/2 after an upgrade, by hand: reads the client's preface and
/// SETTINGS, then sends SETTINGS, its ACK, and the response to the
/// upgraded request on stream 1 (`:status 200`, HPACK static index 8,
/// and the body), then reads until the client closes.
async fn answer_upgraded_stream(mut s: tokio::net::TcpStream) -> Result<(), BoxError> {
    let mut preface = [0u8; 24];
    s.read_exact(&mut preface).await?;
    let mut header = [0u8; 9];
    s.read_exact(&mut header).await?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut out = frame(4, 0, 0, &[]); // SETTINGS
    out.extend(frame(4, 1, 0, &[])); // SETTINGS ACK
    out.extend(frame(1, 4, 1, &[0x88])); // HEADERS, END_HEADERS
    out.extend(frame(0, 1, 1, b"h2 upgraded")); // DATA, END_STREAM
    s.write_all(&out).await?;
    let mut sink = Vec::new();
    s.read_to_end(&mut sink).await?;
    Ok(())
}

/// GETs `paths` over one HTTP/2 connection through `proxy` (with an
/// `Upgrade: h2c` first if `upgrade`); returns the bodies.
pub fn h2_get(proxy: SocketAddr, paths: &[&str], upgrade: bool) -> Result<Vec<String>, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(proxy).await?;
        if upgrade {
            s.write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                  Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            )
            .await?;
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(s.read_u8().await?);
            }
            let text = String::from_utf8_lossy(&head);
            if !text.starts_with("HTTP/1.1 101 ") {
                return Err(format!("no 101: {text}").into());
            }
        }
        let (client, conn) = h2::client::handshake(s).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut bodies = Vec::new();
        for path in paths {
            let mut client = client.clone().ready().await?;
            let req = http::Request::get(format!("http://t{path}")).body(())?;
            let (response, _) = client.send_request(req, true)?;
            let mut body = response.await?.into_body();
            let mut text = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                text.extend_from_slice(&chunk);
            }
            bodies.push(String::from_utf8(text)?);
        }
        Ok(bodies)
    })
}
