//! Fairness of the netpoller under overload: more ready connections than a
//! P's local queue holds.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::net::{TcpListener, TcpStream};

/// More than a P's local queue holds (256), client and server green
/// threads together, several times over.
const CONNECTIONS: usize = 600;

/// 600 echo connections on one worker, every client doing round trips
/// back to back: each connection must get a fair share of them. Gs the
/// netpoller readied beyond the local queue's room used to overflow into
/// the global queue, which a busy P serves one G per 61 ticks, while the
/// Gs in the local queue kept cycling: some connections then made a few
/// round trips while others made ten times as many. The bound is
/// generous: a quarter of the busiest connection's count; epoll's FIFO
/// ready list gives every connection about the same count (before, the
/// least served made 5–30 times fewer than the busiest).
#[test]
fn overloaded_echo_connections_each_get_a_fair_share_of_round_trips() {
    let _serial = common::serial();
    let counts = common::block_on(1, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let client = TcpStream::connect(addr).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            greenrt::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = server.read(&mut buf) {
                    server.write_all(&buf[..n]).unwrap();
                }
            });
            clients.push(client);
        }
        // WARMING_UP, then COUNTING, then STOPPED.
        let phase = Arc::new(AtomicU8::new(WARMING_UP));
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                let phase = phase.clone();
                greenrt::spawn(move || {
                    let mut buf = [0u8; 64];
                    let mut rounds = 0usize;
                    loop {
                        let now = phase.load(Ordering::Relaxed);
                        if now == STOPPED {
                            return rounds;
                        }
                        c.write_all(&[7u8; 64]).unwrap();
                        c.read_exact(&mut buf).unwrap();
                        rounds += usize::from(now == COUNTING);
                    }
                })
            })
            .collect();
        // The clients spawned all at once overflowed the local queue into
        // the global one, and leave it at their own pace: not counted.
        greenrt::sleep(Duration::from_millis(500));
        phase.store(COUNTING, Ordering::Relaxed);
        greenrt::sleep(Duration::from_millis(1500));
        phase.store(STOPPED, Ordering::Relaxed);
        let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        counts
    });
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    eprintln!("round trips per connection: {min} to {max}");
    assert!(max >= 20, "too few round trips to judge: at most {max}");
    assert!(
        4 * min >= max,
        "one connection made {min} round trips, another {max}"
    );
}

const WARMING_UP: u8 = 0;
const COUNTING: u8 = 1;
const STOPPED: u8 = 2;
