//! The HTTP/1.1 subset `file_server` speaks: request parsing (request
//! line, `Connection`, `Range`, a body to skip), safe path resolution, and
//! response heads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use greenrt::net::TcpStream;

/// Longest request or header line accepted.
const MAX_LINE: u64 = 8192;
/// Most header lines accepted.
const MAX_HEADERS: usize = 100;

/// One parsed request.
pub struct Request {
    pub method: String,
    /// The request target, as sent (`/small/000.bin?x=1`).
    pub target: String,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// A single `Range: bytes=...` (others are ignored, as RFC 9110
    /// allows: the whole file is sent).
    pub range: Option<ByteRange>,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
#[derive(Clone, Copy, Debug)]
pub enum ByteRange {
    From(u64, Option<u64>),
    Suffix(u64),
}

impl ByteRange {
    fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let a: u64 = a.parse().ok()?;
        if b.is_empty() {
            return Some(ByteRange::From(a, None));
        }
        let b: u64 = b.parse().ok()?;
        (b >= a).then_some(ByteRange::From(a, Some(b)))
    }

    /// The byte span `start..end` of a file of `size` bytes, or None if
    /// the range is not satisfiable (416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, _) if a >= size => None,
            ByteRange::From(a, b) => Some((a, b.map_or(size, |b| (b + 1).min(size)))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if size == 0 => None,
            ByteRange::Suffix(n) => Some((size.saturating_sub(n), size)),
        }
    }
}

/// Reads one line (at most `MAX_LINE` bytes); Ok(None) at end of stream.
fn line(conn: &mut BufReader<TcpStream>, buf: &mut String) -> io::Result<Option<bool>> {
    buf.clear();
    let n = conn.by_ref().take(MAX_LINE).read_line(buf)?;
    if n == 0 {
        return Ok(None);
    }
    let complete = buf.ends_with('\n');
    while buf.ends_with('\n') || buf.ends_with('\r') {
        buf.pop();
    }
    Ok(Some(complete))
}

/// Reads the next request's head (and skips its body). Ok(None): the
/// client closed the connection; Ok(Some(Err(resp))): a malformed
/// request, to answer with `resp` before closing.
pub fn read_request(
    conn: &mut BufReader<TcpStream>,
) -> io::Result<Option<Result<Request, Response>>> {
    let bad = |why: &str| Ok(Some(Err(Response::error(400, why))));
    let mut buf = String::new();
    // Empty lines before a request line are allowed (RFC 9112, 2.2).
    let request_line = loop {
        match line(conn, &mut buf) {
            Ok(None) => return Ok(None),
            Ok(Some(false)) => return bad("request line too long"),
            Ok(Some(true)) if buf.is_empty() => continue,
            Ok(Some(true)) => break buf.clone(),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return bad("not UTF-8"),
            Err(e) => return Err(e),
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("malformed request line");
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return bad("unsupported HTTP version"),
    };
    let mut range = None;
    let mut body = 0u64;
    for _ in 0..MAX_HEADERS {
        match line(conn, &mut buf) {
            Ok(None) => return Ok(None),
            Ok(Some(false)) => return bad("header line too long"),
            Ok(Some(true)) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return bad("not UTF-8"),
            Err(e) => return Err(e),
        }
        if buf.is_empty() {
            // The body of a GET or HEAD means nothing here: skip it.
            io::copy(&mut conn.by_ref().take(body), &mut io::sink())?;
            return Ok(Some(Ok(Request {
                method: method.to_string(),
                target: target.to_string(),
                keep_alive,
                range,
            })));
        }
        let Some((name, value)) = buf.split_once(':') else {
            return bad("malformed header");
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            "range" => range = ByteRange::parse(value),
            "content-length" => match value.parse() {
                Ok(n) => body = n,
                Err(_) => return bad("bad Content-Length"),
            },
            "transfer-encoding" => return bad("request bodies are not supported"),
            _ => {}
        }
    }
    bad("too many headers")
}

/// The file `target` names under `root` (canonical). `..` segments are
/// refused (400) and a symbolic link leading outside `root` is not
/// followed (403); a missing file resolves (the open gives 404).
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, Response> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(Response::error(400, "the target must be an absolute path"));
    }
    let decoded = percent_decode(path).ok_or_else(|| Response::error(400, "bad %-escape"))?;
    let mut full = root.to_path_buf();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return Err(Response::error(400, "'..' is not allowed")),
            s if s.contains(&0) => return Err(Response::error(400, "NUL in path")),
            s => full.push(std::ffi::OsStr::from_bytes(s)),
        }
    }
    // A few metadata syscalls on the worker: path lookups of a served
    // tree are cached by the kernel and short.
    match std::fs::canonicalize(&full) {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(Response::error(403, "outside the root")),
        Err(_) => Ok(full),
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// A response head, and the body of an error response.
pub struct Response {
    pub status: u16,
    pub content_length: u64,
    pub content_type: &'static str,
    pub content_range: Option<String>,
    body: Option<String>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            content_length: 0,
            content_type: "application/octet-stream",
            content_range: None,
            body: None,
        }
    }

    /// An error with a one-line text body.
    pub fn error(status: u16, why: &str) -> Response {
        let body = format!("{} {}: {why}\n", status, reason(status));
        Response {
            content_length: body.len() as u64,
            content_type: "text/plain; charset=utf-8",
            body: Some(body),
            ..Response::new(status)
        }
    }

    /// Writes the head (and an error's body, unless `head_only`); returns
    /// whether the connection may stay open (not after a 400).
    pub fn send(&self, out: &mut TcpStream, keep_alive: bool, head_only: bool) -> io::Result<bool> {
        let keep_alive = keep_alive && self.status != 400;
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nContent-Type: {}\r\n",
            self.status,
            reason(self.status),
            self.content_length,
            self.content_type
        );
        match self.status {
            200 | 206 => head.push_str("Accept-Ranges: bytes\r\n"),
            405 => head.push_str("Allow: GET, HEAD\r\n"),
            _ => {}
        }
        if let Some(r) = &self.content_range {
            head.push_str(&format!("Content-Range: {r}\r\n"));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        if let (Some(body), false) = (&self.body, head_only) {
            head.push_str(body);
        }
        out.write_all(head.as_bytes())?;
        Ok(keep_alive)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Error",
    }
}
