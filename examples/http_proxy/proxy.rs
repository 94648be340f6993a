//! An HTTP/1.1 reverse proxy with keep-alive on greenrt: each request and
//! response head is parsed in user space (httparse), each body is passed
//! on without being looked at — a `Content-Length` body by
//! `greenrt::io::copy` on a `Take` of the socket, which splices it, a
//! chunked one chunk by chunk. HTTP/2 over cleartext (prior knowledge, or
//! an `Upgrade: h2c` the upstream accepts with 101) is multiplexed in
//! frames a head parser must not touch: such a connection becomes a
//! transparent bidirectional splice (`greenrt::io::copy_bidirectional`).
//!
//! Shared by the example's `main.rs`, `tests/http_proxy.rs` and
//! `benches/http_proxy.rs`.
#![allow(dead_code)]

#[path = "http.rs"]
pub mod http;

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use greenrt::io::{CopyMode, CopyOptions};
use greenrt::net::{TcpListener, TcpStream};

use http::{Body, Head, HeadBuf};

/// The HTTP/2 connection preface's first line (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where every request goes.
    pub upstream: SocketAddr,
    /// How bodies and tunnels are copied: `CopyMode::Splice` (default) or
    /// `CopyMode::Buffered` (read/write, to compare).
    pub opts: CopyOptions,
    /// The head buffer's starting size (per connection and side).
    pub head_buf: usize,
    /// The largest head accepted.
    pub max_head: usize,
    /// A client connection idle this long between requests (or a client
    /// silent this long mid-request) is closed.
    pub idle_timeout: Duration,
    /// Log each failed connection to stderr.
    pub log_errors: bool,
}

impl Config {
    pub fn new(upstream: SocketAddr) -> Config {
        Config {
            upstream,
            opts: CopyOptions::new(),
            head_buf: 1024,
            max_head: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            log_errors: true,
        }
    }

    /// The same with buffered copies instead of splice.
    pub fn buffered(mut self) -> Config {
        self.opts = self.opts.mode(CopyMode::Buffered);
        self
    }
}

/// The accept loop: one green thread per client connection. Runs until
/// the listener fails for good (its runtime's end stops it too).
pub fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let config = Arc::new(config);
    loop {
        let (client, peer) = match listener.accept() {
            Ok(c) => c,
            // Out of fds and the like: report, keep serving.
            Err(e) => {
                eprintln!("http_proxy: accept: {e}");
                greenrt::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let config = config.clone();
        greenrt::spawn(move || {
            if let Err(e) = handle(client, peer, &config) {
                if config.log_errors {
                    eprintln!("http_proxy: {peer}: {e}");
                }
            }
        });
    }
}

/// Serves one client connection: request after request until either side
/// closes, or the connection becomes a tunnel.
pub fn handle(mut client: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(config.idle_timeout))?;
    // A client that stops reading (zero window, alive to keepalive) is
    // dropped as well.
    client.set_write_timeout(Some(config.idle_timeout))?;
    set_keepalive(&client, config.idle_timeout)?;
    let peer_ip = peer.ip().to_string();
    let mut from_client = HeadBuf::new(config.head_buf, config.max_head);
    let mut from_upstream = HeadBuf::new(config.head_buf, config.max_head);
    let mut upstream: Option<TcpStream> = None;
    let mut first = true;
    loop {
        let request = match read_request(&mut client, &mut from_client, &peer_ip, first)? {
            Incoming::Closed => return Ok(()),
            Incoming::Request(head) => head,
            Incoming::H2Preface => {
                let up = connect(&mut upstream, config, &mut client)?;
                return tunnel(&mut client, up, &from_client, &from_upstream, config);
            }
        };
        first = false;
        let reused = upstream.is_some();
        let up = connect(&mut upstream, config, &mut client)?;
        if request.expect_continue {
            // Answered here: the upstream sees no Expect, only the body.
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        // A malformed request body (InvalidData: sockets never give it)
        // is the client's fault, answered 400, not 502.
        let mut bad_body = false;
        let mut response = send_head(&request.lines, request.body, &mut from_client, up)
            .and_then(|rest| {
                http::relay_body(rest, &mut from_client, &mut client, up, config.opts)
                    .inspect_err(|e| bad_body = e.kind() == io::ErrorKind::InvalidData)
            })
            .and_then(|()| read_response(up, &mut from_upstream, &mut client, &request));
        if let Err(e) = &response {
            // A kept upstream connection the upstream closed while it was
            // idle: a request without a body is sent once more, on a
            // fresh connection (nothing of it can have been acted on).
            if reused && request.body == Body::None && from_upstream.data().is_empty() && stale(e) {
                upstream = None;
                let up = connect(&mut upstream, config, &mut client)?;
                response = up
                    .write_all(&request.lines)
                    .and_then(|()| read_response(up, &mut from_upstream, &mut client, &request));
            }
        }
        let response = match response {
            Ok(r) => r,
            Err(e) if bad_body => return Err(refuse(&mut client, e)),
            Err(e) => {
                let _ = client.write_all(BAD_GATEWAY);
                return Err(e);
            }
        };
        let up = upstream.as_mut().expect("connected above");
        if response.status == 101 {
            client.write_all(&response.lines)?;
            return tunnel(&mut client, up, &from_client, &from_upstream, config);
        }
        let rest = send_head(
            &response.lines,
            response.body,
            &mut from_upstream,
            &mut client,
        )?;
        http::relay_body(rest, &mut from_upstream, up, &mut client, config.opts)?;
        if request.close || response.close || response.body == Body::UntilClose {
            let _ = client.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// What arrived on a client connection.
enum Incoming {
    Request(Head),
    /// The client closed (or idled out) between requests.
    Closed,
    /// The connection opens with the HTTP/2 preface.
    H2Preface,
}

/// Reads the next request head. A malformed one is answered 400, and the
/// connection closes (its framing is lost).
fn read_request(
    client: &mut TcpStream,
    buf: &mut HeadBuf,
    peer_ip: &str,
    first: bool,
) -> io::Result<Incoming> {
    loop {
        let data = buf.data();
        if first && data.starts_with(H2_PREFACE) {
            return Ok(Incoming::H2Preface);
        }
        let maybe_preface = first && H2_PREFACE.starts_with(data);
        if !maybe_preface || data.is_empty() {
            match http::parse_request(data, peer_ip) {
                Ok(Some((head, len))) => {
                    buf.consume(len);
                    return Ok(Incoming::Request(head));
                }
                Ok(None) => {}
                Err(e) => return Err(refuse(client, e)),
            }
        }
        let idle = buf.data().is_empty();
        match buf.fill(client) {
            Ok(0) if idle => return Ok(Incoming::Closed),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            // The idle timeout between requests: a plain close.
            Err(e) if idle && timed_out(&e) => return Ok(Incoming::Closed),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(refuse(client, e)),
            Err(e) => return Err(e),
        }
    }
}

/// Answers 400 and closes; returns the cause.
fn refuse(client: &mut TcpStream, e: io::Error) -> io::Error {
    let _ = client.write_all(BAD_REQUEST);
    let _ = client.shutdown(Shutdown::Write);
    e
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads the upstream's response head to `request`; informational
/// responses other than 101 go on to the client as they come.
fn read_response(
    up: &mut TcpStream,
    buf: &mut HeadBuf,
    client: &mut TcpStream,
    request: &Head,
) -> io::Result<Head> {
    loop {
        if let Some((head, len)) = http::parse_response(buf.data(), request.is_head)? {
            buf.consume(len);
            if (100..200).contains(&head.status) && head.status != 101 {
                client.write_all(&head.lines)?;
                continue;
            }
            if head.status == 101 && !request.h2c_upgrade {
                return Err(http::invalid("101 to a request that asked for no upgrade"));
            }
            return Ok(head);
        }
        if buf.fill(up)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed before a response",
            ));
        }
    }
}

/// Writes a head together with the part of its body already in `buf`
/// (one write for a small message); returns the body still to relay.
fn send_head(lines: &[u8], body: Body, buf: &mut HeadBuf, dst: &mut TcpStream) -> io::Result<Body> {
    let Body::Length(n) = body else {
        dst.write_all(lines)?;
        return Ok(body);
    };
    let held = buf
        .data()
        .len()
        .min(usize::try_from(n).unwrap_or(usize::MAX));
    if held == 0 {
        dst.write_all(lines)?;
    } else {
        let mut out = Vec::with_capacity(lines.len() + held);
        out.extend_from_slice(lines);
        out.extend_from_slice(&buf.data()[..held]);
        buf.consume(held);
        dst.write_all(&out)?;
    }
    Ok(match n - held as u64 {
        0 => Body::None,
        left => Body::Length(left),
    })
}

/// Errors that mean the upstream connection was gone before the request.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The upstream connection, connected on first use (kept for the client
/// connection's later requests). A failed connect is answered 502.
fn connect<'u>(
    upstream: &'u mut Option<TcpStream>,
    config: &Config,
    client: &mut TcpStream,
) -> io::Result<&'u mut TcpStream> {
    if upstream.is_none() {
        // The upstream gets the idle timeout as its read timeout: one
        // that stops answering does not hold the client forever.
        let s = TcpStream::connect(config.upstream)
            .and_then(|s| s.set_nodelay(true).map(|()| s))
            .and_then(|s| s.set_read_timeout(Some(config.idle_timeout)).map(|()| s))
            .and_then(|s| s.set_write_timeout(Some(config.idle_timeout)).map(|()| s))
            .inspect_err(|_| {
                let _ = client.write_all(BAD_GATEWAY);
            })?;
        *upstream = Some(s);
    }
    Ok(upstream.as_mut().expect("just connected"))
}

/// Turns the connection into a transparent relay in both directions
/// (HTTP/2 from here on): first what either side's buffer still holds,
/// then `copy_bidirectional`, which splices.
fn tunnel(
    client: &mut TcpStream,
    up: &mut TcpStream,
    from_client: &HeadBuf,
    from_upstream: &HeadBuf,
    config: &Config,
) -> io::Result<()> {
    // An HTTP/2 connection idles between streams as long as it likes;
    // dead peers are found by TCP keepalive instead (the write timeouts
    // stay: a side that stops reading ends the tunnel).
    client.set_read_timeout(None)?;
    up.set_read_timeout(None)?;
    up.write_all(from_client.data())?;
    client.write_all(from_upstream.data())?;
    greenrt::io::copy_bidirectional_with(client, up, config.opts).map(drop)
}

/// TCP keepalive: a peer that vanished (half-open connection) is found
/// after `idle` plus three probes 10 s apart, also while tunnelling.
fn set_keepalive(s: &TcpStream, idle: Duration) -> io::Result<()> {
    let idle = idle.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3),
    ] {
        // SAFETY: setsockopt reads a c_int from a valid pointer of the
        // size given; the fd is open while `s` is borrowed.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
