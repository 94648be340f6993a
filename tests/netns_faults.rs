//! The fault run: echo, splice proxy and UDP across a veth pair between two
//! network namespaces (netns_util), with faults injected by nftables rules
//! inside the namespaces (netns_util::faults):
//!
//! - random loss, one packet in 20 each way (`numgen random mod 20 0
//!   drop`): TCP delivers every byte intact through echo and proxy; UDP's
//!   counts are printed, and fewer (but some) datagrams come back.
//! - resets of established connections, one packet in 50 towards each
//!   listening port (`reject with tcp reset`): clients see reset-type
//!   errors, never a hang or a panic, and the process's open fds come back
//!   to their baseline within a bounded time once the clients are gone,
//!   although the servers' side of each reset connection is left half-open:
//!   the echo server's read timeout and the proxy's TCP keepalive (as in
//!   examples/echo.rs and examples/proxy.rs) reclaim them.
//!
//! Skips with a printed reason without root, `ip`, veth or `nft`.

mod common;
mod netns_util;

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenrt::net::{TcpListener, UdpSocket};

use netns_util::faults::{self, apply, nft_available};
use netns_util::traffic::{
    connect_from, echo_server, echo_stream, fds_settle, listen_in, on_server_runtime, proxy_server,
    round_trips, udp_echo_server, udp_from, udp_windows,
};
use netns_util::{settled_fds, Veth, CLIENT_IF, CLIENT_IP, SERVER_IF, SERVER_IP};

/// Makes the pair (or skips, also without nft), then runs `body` as the
/// main green thread of the server namespace's runtime, under a limit.
fn with_faults(body: impl FnOnce(Arc<Veth>) + Send + 'static) {
    let _serial = common::serial();
    common::with_timeout(Duration::from_secs(60), move || {
        if !nft_available() {
            return;
        }
        let Some(veth) = Veth::create() else { return };
        on_server_runtime(&Arc::new(veth), body);
    });
}

/// One packet in 20 lost each way: no byte lost or changed at the
/// application level over TCP (echo, and proxy with both hops lossy);
/// some UDP datagrams lost, none duplicated or changed.
#[test]
fn loss_echo_proxy_udp() {
    const CLIENTS: u64 = 6;
    const BYTES: u64 = 128 * 1024;
    with_faults(|veth| {
        if !apply(&veth.server, &faults::loss(SERVER_IF, 20))
            || !apply(&veth.client, &faults::loss(CLIENT_IF, 20))
        {
            return;
        }
        let t0 = Instant::now();
        let idle = Duration::from_secs(10);
        let echo = echo_server(TcpListener::bind((SERVER_IP, 0)).unwrap(), idle);
        let upstream = echo_server(listen_in(&veth.client, CLIENT_IP).unwrap(), idle);
        let proxy = proxy_server(
            TcpListener::bind((SERVER_IP, 0)).unwrap(),
            upstream.addr,
            10,
        );
        let udp = UdpSocket::bind((SERVER_IP, 0)).unwrap();
        let udp_addr = udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_echo = udp_echo_server(udp, stop.clone());
        let baseline = settled_fds();

        let mut clients = Vec::new();
        for (seed, to) in (0..2 * CLIENTS).map(|i| (i, [echo.addr, proxy.addr][(i % 2) as usize])) {
            let s = connect_from(&veth.client, to).unwrap();
            clients.push(greenrt::spawn(move || echo_stream(s, seed, BYTES)));
        }
        let sock = udp_from(&veth.client, CLIENT_IP, udp_addr).unwrap();
        let counts = udp_windows(&sock, 20, 16, 512, Duration::from_millis(30)).unwrap();
        drop(sock);
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), BYTES, "a TCP stream lost bytes");
        }
        let tcp_time = t0.elapsed();
        let (fds, settle) = fds_settle(baseline, Duration::from_secs(5));
        println!(
            "loss 1/20 each way: {} TCP streams x {BYTES} B echoed intact ({} direct, {} \
             through the proxy) in {:.2} s; UDP: {} sent, {} echoed back ({:.1}% lost); fds \
             {fds} (baseline {baseline}) after {} ms",
            2 * CLIENTS,
            CLIENTS,
            CLIENTS,
            tcp_time.as_secs_f64(),
            counts.sent,
            counts.received,
            100.0 * (counts.sent - counts.received) as f64 / counts.sent as f64,
            settle.as_millis()
        );
        assert!(
            counts.received > 0 && counts.received <= counts.sent,
            "{counts:?}"
        );
        assert_eq!(fds, baseline, "fds left open after the lossy run");
        stop.store(true, Ordering::Relaxed);
        assert!(udp_echo.join().unwrap() <= counts.sent);
        for r in echo.stop(&veth.server) {
            assert_eq!(r.unwrap(), BYTES);
        }
        for r in proxy.stop(&veth.server) {
            assert_eq!(r.unwrap(), (BYTES, BYTES));
        }
        upstream.stop(&veth.client);
    });
}

/// How a client's run ended.
fn outcome(r: &io::Result<u64>) -> &'static str {
    match r {
        Ok(_) => "completed",
        Err(e) => match e.kind() {
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => "reset",
            _ => "other",
        },
    }
}

/// One packet in 50 towards each listening port answered with a reset:
/// clients end with a reset-type error or complete (data intact), none
/// hangs; the half-open server sides are reclaimed, so the fds come back
/// to their baseline within the read timeout/keepalive plus a margin.
/// Two more connections (to the echo server and to the proxy) are left
/// half-open with nothing in flight, deterministically (`half_open`):
/// the echo server's must end by its read timeout.
#[test]
fn resets_echo_proxy() {
    const CLIENTS: u64 = 12;
    const ROUNDS: usize = 32;
    const SIZE: usize = 1024;
    with_faults(|veth| {
        // Half-open connections are noticed after a second of silence.
        let (idle, keepalive) = (Duration::from_secs(1), 1);
        let echo = echo_server(TcpListener::bind((SERVER_IP, 0)).unwrap(), idle);
        let upstream = echo_server(listen_in(&veth.client, CLIENT_IP).unwrap(), idle);
        let proxy = proxy_server(
            TcpListener::bind((SERVER_IP, 0)).unwrap(),
            upstream.addr,
            keepalive,
        );
        let baseline = settled_fds();
        let t0 = Instant::now();
        // Their first round trip before any rule: it must succeed.
        let half_open = [
            half_open(&veth, echo.addr, SIZE),
            half_open(&veth, proxy.addr, SIZE),
        ];
        let server_rules = faults::resets(SERVER_IF, echo.addr.port(), 50)
            + &faults::resets(SERVER_IF, proxy.addr.port(), 50);
        if !apply(&veth.server, &server_rules)
            || !apply(
                &veth.client,
                &faults::resets(CLIENT_IF, upstream.addr.port(), 50),
            )
        {
            return;
        }
        let mut clients = Vec::new();
        for (seed, to) in (0..2 * CLIENTS).map(|i| (i, [echo.addr, proxy.addr][(i % 2) as usize])) {
            // The reset may hit the handshake's last ACK: connect fails.
            let conn = connect_from(&veth.client, to);
            clients.push(greenrt::spawn(move || {
                round_trips(conn?, seed, ROUNDS, SIZE, Duration::from_secs(10))
            }));
        }
        let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        for h in half_open {
            h.join().unwrap();
        }
        let clients_time = t0.elapsed();
        let count = |what| results.iter().filter(|r| outcome(r) == what).count();
        let (done, reset) = (count("completed"), count("reset"));
        let others: Vec<_> = results.iter().filter(|r| outcome(r) == "other").collect();
        assert!(
            others.is_empty(),
            "clients failed otherwise (a hang is TimedOut): {others:?}"
        );
        for r in results.iter().flatten() {
            assert_eq!(*r, (ROUNDS * SIZE) as u64);
        }
        let (fds, settle) = fds_settle(baseline, Duration::from_secs(15));
        println!(
            "resets 1/50 towards the listeners: {} clients (and 2 left half-open) in {:.2} s, {done} \
             completed, {reset} reset; fds {fds} (baseline {baseline}) {:.2} s after the last client",
            2 * CLIENTS,
            clients_time.as_secs_f64(),
            settle.as_secs_f64()
        );
        assert!(reset > 0, "no client saw a reset: the rules did nothing");
        assert_eq!(fds, baseline, "half-open connections were not reclaimed");
        let echoes = echo.stop(&veth.server);
        println!("echo server: {}", endings(&echoes));
        let timed_out = echoes
            .iter()
            .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock));
        assert!(
            timed_out.count() >= 1,
            "the half-open echo connection did not time out"
        );
        println!("proxy: {}", endings(&proxy.stop(&veth.server)));
        println!(
            "upstream echo server: {}",
            endings(&upstream.stop(&veth.client))
        );
    });
}

/// A connection to `to` left half-open on purpose: one round trip (here,
/// before the random rules are loaded), a pause (so the echo is
/// acknowledged and nothing is in flight), then a rule that resets every
/// later packet from the client's port; the client writes once and must
/// see the reset. Returns the green thread doing the second part.
fn half_open(veth: &Arc<Veth>, to: SocketAddr, size: usize) -> greenrt::JoinHandle<()> {
    let s = connect_from(&veth.client, to).unwrap();
    let hang_after = Duration::from_secs(10);
    round_trips(s.try_clone().unwrap(), 1000, 1, size, hang_after).unwrap();
    let veth = veth.clone();
    greenrt::spawn(move || {
        greenrt::sleep(Duration::from_millis(300));
        let port = s.local_addr().unwrap().port();
        assert!(apply(&veth.server, &faults::reset_from(SERVER_IF, port)));
        let r = round_trips(s, 1001, 1, size, Duration::from_secs(10));
        let e = r.expect_err("the client was not reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    })
}

/// How a server's connections ended: "N connections: K ok, K Kind, ...".
fn endings<T>(results: &[io::Result<T>]) -> String {
    let mut kinds = std::collections::BTreeMap::new();
    for r in results {
        let kind = match r {
            Ok(_) => "end of stream".to_string(),
            // An expired read timeout is WouldBlock (EAGAIN), as in std.
            Err(e) if e.kind() == ErrorKind::WouldBlock => "read timeout".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    let kinds: Vec<_> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} connections: {}", results.len(), kinds.join(", "))
}
