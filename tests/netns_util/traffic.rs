//! The traffic of the veth tests: an echo server and a proxy as the
//! examples run them (a read timeout on the echo server's connections, TCP
//! keepalive on the proxy's, so half-open connections are reclaimed), a
//! UDP echo server, and their clients, which check every byte.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenrt::io::{CopyMode, CopyOptions};
use greenrt::net::{TcpListener, TcpStream, UdpSocket};
use greenrt::JoinHandle;

use super::{settled_fds, Netns, Veth};

/// Name prefix of the server runtime's threads (checked to be inside the
/// server namespace).
pub const SERVER_THREADS: &str = "netns-srv";

/// Builds a 2-worker runtime inside the server namespace, runs `f` as its
/// main green thread there, checks that every thread of the runtime was
/// inside the namespace, and drops the runtime (see the module doc of
/// `netns_util` for why all of this happens on one thread).
pub fn on_server_runtime<T, F>(veth: &Arc<Veth>, f: F) -> T
where
    F: FnOnce(Arc<Veth>) -> T + Send + 'static,
    T: Send + 'static,
{
    let (v, w) = (veth.clone(), veth.clone());
    veth.server.run(move || {
        let rt = greenrt::Builder::new()
            .workers(2)
            .thread_name(SERVER_THREADS)
            .build()
            .expect("build the server runtime");
        let out = rt.block_on(move || f(v));
        w.server.assert_threads_inside(SERVER_THREADS);
        drop(rt);
        out
    })
}

/// A TCP connection made from inside `ns` (the socket is created there),
/// handed to greenrt.
pub fn connect_from(ns: &Netns, addr: SocketAddr) -> io::Result<TcpStream> {
    let std = ns.run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?;
    let s = TcpStream::try_from(std)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A TCP listener on `ip:0` inside `ns`, handed to greenrt.
pub fn listen_in(ns: &Netns, ip: std::net::Ipv4Addr) -> io::Result<TcpListener> {
    TcpListener::try_from(ns.run(|| std::net::TcpListener::bind((ip, 0)))?)
}

// ---------------------------------------------------------------------
// Servers.
// ---------------------------------------------------------------------

/// An accept loop on its own green thread, one green thread per
/// connection running `serve`, until [`Server::stop`]. (Not a fixed count
/// of connections: a reset injected into a handshake's last ACK leaves the
/// client "connected" to a connection the server never accepts.)
pub struct Server<R> {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<R>>,
}

impl<R: Send + 'static> Server<R> {
    pub fn start<F>(listener: TcpListener, serve: F) -> Server<R>
    where
        F: Fn(TcpStream) -> R + Send + Sync + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let serve = Arc::new(serve);
        let handle = greenrt::spawn(move || {
            let mut handlers = Vec::new();
            loop {
                let (s, _) = listener.accept().expect("accept");
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let serve = serve.clone();
                handlers.push(greenrt::spawn(move || serve(s)));
            }
            drop(listener);
            handlers.into_iter().map(|h| h.join().unwrap()).collect()
        });
        Server { addr, stop, handle }
    }

    /// Stops accepting (woken by a connection made inside `ns`, the
    /// listener's namespace, so over its loopback and past the fault
    /// rules), closes the listener and returns every connection's result.
    pub fn stop(self, ns: &Netns) -> Vec<R> {
        self.stop.store(true, Ordering::SeqCst);
        drop(connect_from(ns, self.addr).expect("wake the accept loop"));
        self.handle.join().unwrap()
    }
}

/// An echo server as examples/echo.rs runs it, with `--idle-timeout`.
pub fn echo_server(listener: TcpListener, idle: Duration) -> Server<io::Result<u64>> {
    Server::start(listener, move |s| echo_conn(s, idle))
}

/// A splice proxy to `upstream` as examples/proxy.rs runs it, with
/// `--keepalive`.
pub fn proxy_server(
    listener: TcpListener,
    upstream: SocketAddr,
    keepalive_secs: u32,
) -> Server<io::Result<(u64, u64)>> {
    Server::start(listener, move |s| relay(s, upstream, keepalive_secs))
}

/// Echoes until end of stream, an error, or `idle` without a byte (a
/// half-open connection: the peer is gone without a FIN or RST reaching
/// us).
fn echo_conn(mut s: TcpStream, idle: Duration) -> io::Result<u64> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(idle))?;
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    keepalive_secs: u32,
) -> io::Result<(u64, u64)> {
    let mut server = TcpStream::connect(upstream)?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        set_keepalive(s, keepalive_secs)?;
    }
    let opts = CopyOptions::new().mode(CopyMode::Splice);
    greenrt::io::copy_bidirectional_with(&mut client, &mut server, opts)
}

/// TCP keepalive: the first probe after `secs` idle, then every `secs`,
/// three unanswered probes end the connection (a probe answered with a
/// reset ends it at once).
pub fn set_keepalive(s: &impl std::os::fd::AsFd, secs: u32) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let secs = secs.max(1);
    setsockopt(s, sockopt::KeepAlive, &true)?;
    setsockopt(s, sockopt::TcpKeepIdle, &secs)?;
    setsockopt(s, sockopt::TcpKeepInterval, &secs)?;
    setsockopt(s, sockopt::TcpKeepCount, &3)?;
    Ok(())
}

/// Echoes datagrams until `stop` is set; returns how many it echoed.
pub fn udp_echo_server(sock: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    greenrt::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut echoed = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if sock.send_to(&buf[..n], from).is_ok() {
                    echoed += 1;
                }
            }
        }
        echoed
    })
}

// ---------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------

/// Byte `pos` of stream `seed`: splitmix64 of the 8-byte word it is in,
/// so any offset can be checked without keeping what was sent.
pub fn pattern_byte(seed: u64, pos: u64) -> u8 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((pos / 8).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()[(pos % 8) as usize]
}

fn fill(buf: &mut [u8], seed: u64, from: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, from + i as u64);
    }
}

fn check(buf: &[u8], seed: u64, from: u64) -> io::Result<()> {
    match (0..buf.len()).find(|&i| buf[i] != pattern_byte(seed, from + i as u64)) {
        None => Ok(()),
        Some(i) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stream {seed}: byte {} differs", from + i as u64),
        )),
    }
}

/// Sends `total` bytes of stream `seed` while reading the echo back on a
/// second green thread and checking every byte; then half-closes and
/// expects end of stream right after the last byte. Returns the bytes
/// that came back (== `total` or an error).
pub fn echo_stream(stream: TcpStream, seed: u64, total: u64) -> io::Result<u64> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let writer = stream.try_clone()?;
    let sender = greenrt::spawn(move || -> io::Result<()> {
        let mut w = writer;
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = buf.len().min((total - sent) as usize);
            fill(&mut buf[..n], seed, sent);
            w.write_all(&buf[..n])?;
            sent += n as u64;
        }
        w.shutdown(Shutdown::Write)
    });
    let mut r = stream;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    let read = loop {
        match r.read(&mut buf) {
            Ok(0) => break Ok(got),
            Ok(n) => {
                if let Err(e) = check(&buf[..n], seed, got) {
                    break Err(e);
                }
                got += n as u64;
            }
            Err(e) => break Err(e),
        }
    };
    // Unblocks the sender if the reader failed first.
    let _ = r.shutdown(Shutdown::Both);
    sender.join().unwrap()?;
    let got = read?;
    if got != total {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream {seed}: {got} of {total} bytes came back"),
        ));
    }
    Ok(got)
}

/// `rounds` round trips of `size` bytes of stream `seed`, each checked;
/// returns the bytes that came back. `hang_after` bounds each read: a
/// read that waits that long is a `TimedOut` error (a hang).
pub fn round_trips(
    mut s: TcpStream,
    seed: u64,
    rounds: usize,
    size: usize,
    hang_after: Duration,
) -> io::Result<u64> {
    s.set_read_timeout(Some(hang_after))?;
    let (mut msg, mut back) = (vec![0u8; size], vec![0u8; size]);
    let mut pos = 0;
    for _ in 0..rounds {
        fill(&mut msg, seed, pos);
        s.write_all(&msg)?;
        s.read_exact(&mut back).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, "no echo: hung"),
            _ => e,
        })?;
        check(&back, seed, pos)?;
        pos += size as u64;
    }
    Ok(pos)
}

/// What a UDP client counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpCounts {
    pub sent: u64,
    pub received: u64,
}

/// `rounds` windows of `window` datagrams of `size` bytes (a sequence
/// number, then pattern bytes); after each window, reads echoes until all
/// of them are back or none has come for `wait`. Checks each echo's
/// content and that none comes back twice.
pub fn udp_windows(
    sock: &UdpSocket,
    rounds: u32,
    window: u32,
    size: usize,
    wait: Duration,
) -> io::Result<UdpCounts> {
    sock.set_read_timeout(Some(wait))?;
    let mut seen = vec![false; (rounds * window) as usize];
    let mut counts = UdpCounts::default();
    let (mut msg, mut back) = (vec![0u8; size], vec![0u8; size + 1]);
    for r in 0..rounds {
        for k in 0..window {
            let seq = r * window + k;
            msg[..4].copy_from_slice(&seq.to_le_bytes());
            fill(&mut msg[4..], u64::from(seq), 0);
            sock.send(&msg)?;
            counts.sent += 1;
        }
        let mut got = 0;
        while got < window {
            let n = match sock.recv(&mut back) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let seq = u32::from_le_bytes(back[..4].try_into().unwrap());
            let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("datagram {seq}"));
            if n != size || seq >= rounds * window || seen[seq as usize] {
                return Err(bad());
            }
            check(&back[4..n], u64::from(seq), 0).map_err(|_| bad())?;
            seen[seq as usize] = true;
            counts.received += 1;
            if seq / window == r {
                got += 1;
            }
        }
    }
    Ok(counts)
}

/// A UDP socket bound inside `ns` on `ip:0`, connected to `peer`.
pub fn udp_from(ns: &Netns, ip: std::net::Ipv4Addr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::try_from(ns.run(|| std::net::UdpSocket::bind((ip, 0)))?)?;
    sock.connect(peer)?;
    Ok(sock)
}

/// Waits (at most `limit`) for the process's open fds to come down to
/// `baseline`; returns the count and how long that took.
pub fn fds_settle(baseline: usize, limit: Duration) -> (usize, Duration) {
    let t0 = Instant::now();
    loop {
        let n = settled_fds();
        if n <= baseline || t0.elapsed() >= limit {
            return (n, t0.elapsed());
        }
        greenrt::sleep(Duration::from_millis(20));
    }
}
