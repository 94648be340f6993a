//! Two runtimes in one process share the process's netpoller: an idle
//! runtime's M that polled only the other runtime's green threads must
//! leave the poller to that runtime's Ms, not stand between every event
//! and the runtime it belongs to (two thread wake-ups per event).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Voluntary context switches of this process's threads whose name
/// starts with `prefix` (names are cut to 15 bytes in `comm`).
fn switches_of(prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

const CLIENTS: usize = 8;

/// A runtime named `name` serving `CLIENTS` echo connections.
fn echo_runtime(name: &str) -> (greenrt::Runtime, SocketAddr) {
    let rt = greenrt::Builder::new()
        .workers(2)
        .thread_name(name)
        .build()
        .unwrap();
    let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(move || {
        for _ in 0..CLIENTS {
            let (mut s, _) = listener.accept().unwrap();
            greenrt::spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).unwrap(),
                    }
                }
            });
        }
    });
    (rt, addr)
}

fn connect(addr: SocketAddr) -> Vec<TcpStream> {
    (0..CLIENTS)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            c
        })
        .collect()
}

/// `n` round trips on each client, the clients at once (OS threads).
fn round_trips(clients: &mut [TcpStream], n: u64) {
    std::thread::scope(|scope| {
        for c in clients {
            scope.spawn(move || {
                let mut buf = [0u8; 4];
                for _ in 0..n {
                    c.write_all(b"ping").unwrap();
                    c.read_exact(&mut buf).unwrap();
                }
            });
        }
    });
}

#[test]
fn an_idle_runtime_does_not_relay_another_runtimes_socket_events() {
    const ROUNDS: u64 = 500;
    let (_first_rt, first) = echo_runtime("firstrt");
    let (_second_rt, second) = echo_runtime("secondrt");
    let mut first_clients = connect(first);
    let mut second_clients = connect(second);
    // Traffic on the first runtime, so that its Ms are the last to go
    // idle (one of them then waits in the poller), then on the second,
    // counting how often the now idle first runtime's threads wake.
    let mut worst = 0;
    for _ in 0..3 {
        round_trips(&mut first_clients, ROUNDS / 5);
        let before = switches_of("firstrt");
        round_trips(&mut second_clients, ROUNDS);
        let woke = switches_of("firstrt") - before;
        eprintln!(
            "idle runtime's threads: {woke} context switches over {} round trips of the other",
            ROUNDS * CLIENTS as u64
        );
        worst = worst.max(woke);
    }
    // Relaying would cost about one per round trip; a few are fine
    // (sysmon, a stale poll, the first foreign poll).
    assert!(
        worst < ROUNDS * CLIENTS as u64 / 20,
        "the idle runtime's threads woke {worst} times during another runtime's traffic"
    );
}
