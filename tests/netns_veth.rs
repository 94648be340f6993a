//! TCP echo, a splice proxy and UDP datagrams across a veth pair between
//! two network namespaces that each test creates (netns_util): the servers
//! run on a greenrt runtime inside the server namespace (10.77.0.1), the
//! clients' sockets are made inside the client namespace (10.77.0.2), so
//! every byte crosses the link. Skips with a printed reason where the
//! namespaces cannot be made (not root, no `ip`, no veth).
//!
//! The tests hold `SERIAL`: they compare the process's open fds before and
//! after, which other tests' `ip` commands would disturb.

mod common;
mod netns_util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::net::{TcpListener, UdpSocket};

use netns_util::traffic::{
    connect_from, echo_server, echo_stream, fds_settle, listen_in, on_server_runtime, pattern_byte,
    proxy_server, udp_echo_server, udp_from, udp_windows,
};
use netns_util::{settled_fds, Veth, CLIENT_IP, SERVER_IF, SERVER_IP};

const CLIENTS: u64 = 4;
const BYTES: u64 = 256 * 1024;

/// Makes the pair (or skips), then runs `body` as the main green thread
/// of the server namespace's runtime, under a time limit.
fn across_veth(body: impl FnOnce(Arc<Veth>) + Send + 'static) {
    let _serial = common::serial();
    common::with_timeout(Duration::from_secs(60), move || {
        let Some(veth) = Veth::create() else { return };
        on_server_runtime(&Arc::new(veth), body);
    });
}

/// Every client's byte stream comes back intact, the server echoed each
/// whole, and the fds opened for the connections are all closed.
#[test]
fn echo_across_veth() {
    across_veth(|veth| {
        let server = echo_server(
            TcpListener::bind((SERVER_IP, 0)).unwrap(),
            Duration::from_secs(10),
        );
        let baseline = settled_fds();
        let rx_before = veth.server.rx_bytes(SERVER_IF);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|seed| {
                let s = connect_from(&veth.client, server.addr).unwrap();
                assert_eq!(s.local_addr().unwrap().ip(), CLIENT_IP);
                greenrt::spawn(move || echo_stream(s, seed, BYTES))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), BYTES);
        }
        // The streams came in over the link, not some other way.
        let rx = veth.server.rx_bytes(SERVER_IF) - rx_before;
        assert!(rx >= CLIENTS * BYTES, "{rx} bytes received on {SERVER_IF}");
        let (fds, _) = fds_settle(baseline, Duration::from_secs(5));
        assert_eq!(fds, baseline, "fds left open after the echo");
        let echoed = server.stop(&veth.server);
        assert_eq!(echoed.len() as u64, CLIENTS);
        for r in echoed {
            assert_eq!(r.unwrap(), BYTES);
        }
    });
}

/// Client (client namespace) -> splice proxy (server namespace) -> echo
/// server (client namespace): both hops cross the link, every byte comes
/// back intact, and the proxy counted each stream both ways.
#[test]
fn proxy_across_veth() {
    across_veth(|veth| {
        let upstream = echo_server(
            listen_in(&veth.client, CLIENT_IP).unwrap(),
            Duration::from_secs(10),
        );
        let proxy = proxy_server(
            TcpListener::bind((SERVER_IP, 0)).unwrap(),
            upstream.addr,
            10,
        );
        let baseline = settled_fds();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|seed| {
                let s = connect_from(&veth.client, proxy.addr).unwrap();
                greenrt::spawn(move || echo_stream(s, seed, BYTES))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), BYTES);
        }
        let (fds, _) = fds_settle(baseline, Duration::from_secs(5));
        assert_eq!(fds, baseline, "fds left open after the proxied echo");
        for r in proxy.stop(&veth.server) {
            assert_eq!(r.unwrap(), (BYTES, BYTES));
        }
        for r in upstream.stop(&veth.client) {
            assert_eq!(r.unwrap(), BYTES);
        }
    });
}

/// Windows of 16 datagrams echoed across the link: without faults, every
/// one comes back, once, intact.
#[test]
fn udp_across_veth() {
    across_veth(|veth| {
        let server = UdpSocket::bind((SERVER_IP, 0)).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let echo = udp_echo_server(server, stop.clone());
        let sock = udp_from(&veth.client, CLIENT_IP, addr).unwrap();
        let counts = udp_windows(&sock, 20, 16, 512, Duration::from_secs(5)).unwrap();
        println!("udp across veth: {counts:?}");
        assert_eq!(counts.received, counts.sent);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(echo.join().unwrap(), counts.sent);
    });
}

/// UDP segmentation and receive offload across the link: batches of 16
/// datagrams of 1 200 bytes, each batch one `send_segments` call from the
/// client namespace, received with `recv_segments` under `set_gro(true)`
/// in the server namespace, which acknowledges each batch before the
/// next is sent (so no buffer overflows): every datagram arrives once and
/// intact, whatever number of receive calls the kernel's coalescing takes.
#[test]
fn gso_gro_across_veth() {
    const BATCHES: u32 = 50;
    const SEGS: u32 = 16;
    const SEG: usize = 1200;
    across_veth(|veth| {
        let rx = UdpSocket::bind((SERVER_IP, 0)).unwrap();
        rx.set_gro(true).unwrap();
        let tx = udp_from(&veth.client, CLIENT_IP, rx.local_addr().unwrap()).unwrap();
        let tx_addr = tx.local_addr().unwrap();
        let datagram = |seq: u32| -> Vec<u8> {
            let mut d: Vec<u8> = (0..SEG as u64)
                .map(|i| pattern_byte(u64::from(seq), i))
                .collect();
            d[..4].copy_from_slice(&seq.to_le_bytes());
            d
        };
        let receiver = greenrt::spawn(move || -> std::io::Result<(u32, u32)> {
            rx.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = vec![0u8; 65535];
            let mut seen = vec![false; (BATCHES * SEGS) as usize];
            let (mut datagrams, mut calls) = (0, 0);
            while datagrams < BATCHES * SEGS {
                let (n, seg) = rx.recv_segments(&mut buf)?;
                calls += 1;
                for d in buf[..n].chunks(seg) {
                    let seq = u32::from_le_bytes(d[..4].try_into().unwrap());
                    assert!(
                        seq < BATCHES * SEGS && !seen[seq as usize],
                        "datagram {seq}"
                    );
                    assert_eq!(d, &datagram(seq)[..], "datagram {seq} changed");
                    seen[seq as usize] = true;
                    datagrams += 1;
                    if seq % SEGS == SEGS - 1 {
                        rx.send_to(&seq.to_le_bytes(), tx_addr)?;
                    }
                }
            }
            Ok((datagrams, calls))
        });
        tx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for b in 0..BATCHES {
            let batch: Vec<u8> = (b * SEGS..(b + 1) * SEGS).flat_map(datagram).collect();
            assert_eq!(tx.send_segments(&batch, SEG).unwrap(), batch.len());
            let mut ack = [0u8; 4];
            assert_eq!(tx.recv(&mut ack).expect("batch acknowledged"), 4);
            assert_eq!(u32::from_le_bytes(ack), (b + 1) * SEGS - 1);
        }
        let (datagrams, calls) = receiver.join().unwrap().unwrap();
        println!(
            "GSO/GRO across veth: {datagrams} datagrams of {SEG} B in {BATCHES} sends \
             (max_gso_segments {}), received in {calls} calls",
            tx.max_gso_segments()
        );
        assert_eq!(datagrams, BATCHES * SEGS);
    });
}
