//! HTTP/1.1 pieces of the proxy: the head buffer, parsed heads and their
//! rewriting, and body relays (a counted body by `greenrt::io::copy` on a
//! `Take`, which splices it; a chunked body frame by frame).

use std::io::{self, Read, Write};

use greenrt::io::CopyOptions;
use greenrt::net::TcpStream;

/// Most headers a head may have.
pub const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;

/// Headers that concern one hop only (RFC 9110 7.6.1): never forwarded.
/// `Upgrade` and `Connection` go on only for an h2c upgrade.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// The bytes read from a socket and not yet used: a head, and whatever
/// followed it in the same reads (the start of a body, the next request).
/// Starts at the configured size and grows, up to `max`, for long heads.
pub struct HeadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl HeadBuf {
    pub fn new(size: usize, max: usize) -> HeadBuf {
        HeadBuf {
            buf: vec![0; size.max(64)],
            start: 0,
            end: 0,
            max: max.max(size),
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Reads more from `s`; 0 at end of stream. Fails with InvalidData if
    /// the buffer is full at its largest (a head too long).
    pub fn fill(&mut self, s: &mut TcpStream) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else if self.buf.len() < self.max {
                let grown = (self.buf.len() * 2).min(self.max);
                self.buf.resize(grown, 0);
            } else {
                return Err(invalid("head too long"));
            }
        }
        let n = s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Takes the next line (without its CRLF) out of the buffer, reading
    /// more as needed.
    fn line(&mut self, s: &mut TcpStream) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.data().windows(2).position(|w| w == b"\r\n") {
                let line = self.data()[..i].to_vec();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.data().len() > MAX_LINE {
                return Err(invalid("chunk line too long"));
            }
            if self.fill(s)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

pub fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What the proxy needs to know of a parsed head.
#[derive(Debug)]
pub struct Head {
    /// The head as forwarded: start line and the headers kept.
    pub lines: Vec<u8>,
    pub body: Body,
    /// The sender asked to close after this message.
    pub close: bool,
    /// HTTP/1.0 (keep-alive only if asked for).
    pub http10: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// A request asking to upgrade to h2c.
    pub h2c_upgrade: bool,
    /// Request method HEAD, or response status.
    pub is_head: bool,
    pub status: u16,
}

/// Parses a request head at the start of `data`: Ok(None) if incomplete,
/// else the head and its length. `peer` goes into X-Forwarded-For.
pub fn parse_request(data: &[u8], peer: &str) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("bad request head: {e}"))),
    };
    let (method, path, version) = (req.method.unwrap(), req.path.unwrap(), req.version.unwrap());
    let mut head = classify(req.headers, version == 0)?;
    head.is_head = method == "HEAD";
    if head.body == Body::UntilClose {
        // A request without a length has no body (RFC 9112 6.3).
        head.body = Body::None;
    }
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let mut xff = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            xff = Some(format!("{}, {peer}", String::from_utf8_lossy(h.value)));
        } else if keep(h.name, &head) {
            push_header(&mut out, h.name, h.value);
        }
    }
    finish(
        &mut out,
        &head,
        Some(xff.unwrap_or_else(|| peer.to_string())),
    );
    head.lines = out;
    Ok(Some((head, len)))
}

/// Parses a response head, as [`parse_request`].
pub fn parse_response(data: &[u8], to_head: bool) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
    };
    let status = res.code.unwrap();
    let mut head = classify(res.headers, res.version == Some(0))?;
    head.status = status;
    if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
        head.body = Body::None;
    }
    let reason = res.reason.unwrap_or("");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    if status == 101 {
        // The switch itself: forwarded as it is, hop-by-hop and all.
        for h in res.headers.iter() {
            push_header(&mut out, h.name, h.value);
        }
        out.extend_from_slice(b"Via: 1.1 greenrt-http-proxy\r\n\r\n");
    } else {
        for h in res.headers.iter() {
            if keep(h.name, &head) {
                push_header(&mut out, h.name, h.value);
            }
        }
        finish(&mut out, &head, None);
    }
    head.lines = out;
    Ok(Some((head, len)))
}

/// A number of digits in `radix` and nothing else: no sign, no space,
/// not empty (RFC 9110 and 9112; `str::parse` would take a `+`, and a
/// proxy must frame a body as strictly as any upstream). None if it is
/// not one or overflows.
fn parse_digits(text: &[u8], radix: u32) -> Option<u64> {
    if text.is_empty() || !text.iter().all(|&b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, radix).ok()
}

/// The framing and connection handling the headers ask for.
fn classify(headers: &[httparse::Header<'_>], http10: bool) -> io::Result<Head> {
    let mut head = Head {
        lines: Vec::new(),
        body: Body::UntilClose,
        close: http10,
        http10,
        expect_continue: false,
        h2c_upgrade: false,
        is_head: false,
        status: 0,
    };
    let mut length: Option<u64> = None;
    let (mut upgrade_h2c, mut connection_upgrade) = (false, false);
    for h in headers {
        let value = std::str::from_utf8(h.value).map_err(|_| invalid("non-ASCII header"))?;
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let n = parse_digits(value.trim().as_bytes(), 10)
                    .ok_or_else(|| invalid("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(invalid("conflicting Content-Length"));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return Err(invalid("unsupported Transfer-Encoding"));
                }
                head.body = Body::Chunked;
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                        head.close = false;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        connection_upgrade = true;
                    }
                }
            }
            "upgrade" => upgrade_h2c = value.trim().eq_ignore_ascii_case("h2c"),
            "expect" => head.expect_continue = value.trim().eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if head.body != Body::Chunked {
        if let Some(n) = length {
            head.body = if n == 0 { Body::None } else { Body::Length(n) };
        }
    } else if length.is_some() {
        // Both: a smuggling attempt or a broken sender (RFC 9112 6.3).
        return Err(invalid("both Content-Length and Transfer-Encoding"));
    }
    head.h2c_upgrade = upgrade_h2c && connection_upgrade;
    Ok(head)
}

/// Whether a header goes on to the next hop.
fn keep(name: &str, head: &Head) -> bool {
    let lower = name.to_ascii_lowercase();
    if head.h2c_upgrade && matches!(lower.as_str(), "upgrade" | "http2-settings") {
        return true;
    }
    if lower == "expect" {
        // The proxy answers 100-continue itself.
        return false;
    }
    !HOP_BY_HOP.contains(&lower.as_str())
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The headers the proxy adds, and the end of the head.
fn finish(out: &mut Vec<u8>, head: &Head, forwarded_for: Option<String>) {
    out.extend_from_slice(b"Via: 1.1 greenrt-http-proxy\r\n");
    if let Some(xff) = forwarded_for {
        push_header(out, "X-Forwarded-For", xff.as_bytes());
    }
    if head.h2c_upgrade {
        out.extend_from_slice(b"Connection: Upgrade, HTTP2-Settings\r\n");
    } else if head.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Moves exactly `n` body bytes from `src` (what `buf` holds first) to
/// `dst`; the rest by `greenrt::io::copy_with` on a `Take` of `src`,
/// which splices it. A sender that stops short is UnexpectedEof.
pub fn relay_exact(
    buf: &mut HeadBuf,
    src: &mut TcpStream,
    dst: &mut TcpStream,
    n: u64,
    opts: CopyOptions,
) -> io::Result<()> {
    let held = buf
        .data()
        .len()
        .min(usize::try_from(n).unwrap_or(usize::MAX));
    if held > 0 {
        dst.write_all(&buf.data()[..held])?;
        buf.consume(held);
    }
    let rest = n - held as u64;
    if rest == 0 {
        return Ok(());
    }
    let mut body = (&mut *src).take(rest);
    greenrt::io::copy_with(&mut body, dst, opts)?;
    if body.limit() != 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Relays a chunked body: each chunk-size line and the trailers as they
/// are, each chunk's data by [`relay_exact`].
pub fn relay_chunked(
    buf: &mut HeadBuf,
    src: &mut TcpStream,
    dst: &mut TcpStream,
    opts: CopyOptions,
) -> io::Result<()> {
    let mut out = Vec::new();
    loop {
        let line = buf.line(src)?;
        let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size =
            parse_digits(size_text.trim_ascii(), 16).ok_or_else(|| invalid("bad chunk size"))?;
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let t = buf.line(src)?;
                out.extend_from_slice(&t);
                out.extend_from_slice(b"\r\n");
                if t.is_empty() {
                    return dst.write_all(&out);
                }
            }
        }
        dst.write_all(&out)?;
        out.clear();
        relay_exact(buf, src, dst, size, opts)?;
        if !buf.line(src)?.is_empty() {
            return Err(invalid("chunk data not followed by CRLF"));
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Relays a body delimited by the sender's close.
pub fn relay_until_close(
    buf: &mut HeadBuf,
    src: &mut TcpStream,
    dst: &mut TcpStream,
    opts: CopyOptions,
) -> io::Result<()> {
    dst.write_all(buf.data())?;
    let held = buf.data().len();
    buf.consume(held);
    greenrt::io::copy_with(src, dst, opts).map(drop)
}

/// Relays a body of the given framing.
pub fn relay_body(
    body: Body,
    buf: &mut HeadBuf,
    src: &mut TcpStream,
    dst: &mut TcpStream,
    opts: CopyOptions,
) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => relay_exact(buf, src, dst, n, opts),
        Body::Chunked => relay_chunked(buf, src, dst, opts),
        Body::UntilClose => relay_until_close(buf, src, dst, opts),
    }
}
