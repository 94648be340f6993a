//! How often the netpoller calls epoll_wait when a runtime is nearly idle.
//!
//! A single test in its own process: `RuntimeMetrics::netpoll_polls`
//! counts the process's epoll_wait calls, so nothing else may poll
//! meanwhile.

use std::io::{Read, Write};
use std::time::Duration;

/// One connection doing request/response with a peer that takes its time
/// (an OS thread that waits 2 ms before each reply): after every request
/// the green thread parks, its worker finds nothing else to do and sleeps
/// in epoll_wait until the reply comes. That is one epoll_wait per round
/// trip; a worker that first polls without blocking, finds nothing (the
/// reply is milliseconds away) and then blocks makes two, each a system
/// call on a latency-bound server's path (issue 14 §5: the 1-connection
/// echo cell). The bound leaves room for the occasional extra poll (a
/// wake-up that found the reply not yet readable, sysmon).
#[test]
fn a_worker_with_nothing_else_to_do_makes_one_epoll_call_per_wait() {
    const ROUND_TRIPS: u64 = 200;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        for _ in 0..ROUND_TRIPS {
            s.read_exact(&mut b).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            s.write_all(&b).unwrap();
        }
    });
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    let polls = rt.block_on(move || {
        let mut s = greenrt::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [7u8; 1];
        // One round trip first, so the runtime's start-up is behind us.
        s.write_all(&b).unwrap();
        s.read_exact(&mut b).unwrap();
        let before = greenrt::metrics().netpoll_polls();
        for _ in 1..ROUND_TRIPS {
            s.write_all(&b).unwrap();
            s.read_exact(&mut b).unwrap();
        }
        greenrt::metrics().netpoll_polls() - before
    });
    peer.join().unwrap();
    let per_trip = polls as f64 / (ROUND_TRIPS - 1) as f64;
    println!(
        "{polls} epoll_wait calls for {} round trips ({per_trip:.2} each)",
        ROUND_TRIPS - 1
    );
    assert!(
        per_trip < 1.5,
        "{per_trip:.2} epoll_wait calls per round trip, expected about 1"
    );
}
