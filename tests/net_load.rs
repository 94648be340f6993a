//! `greenrt::net` under load: echo round trips on one and two workers,
//! 10 000 connections open at once, and I/O progressing beside a CPU hog
//! on one worker.
//!
//! Every test holds `SERIAL` (the tests of this file run one at a time)
//! and checks that it leaves as many fds open as it found: the fd table is
//! shared by the whole process, so overlapping tests would blur the count.
//! Bounds on time are lower bounds (a timeout must not fire early) or
//! generous caps.

mod common;
mod net_util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_tag, describe, run_child};
use greenrt::net::{TcpListener, TcpStream};
use net_util::{echo, echo_client, echo_server, fd_checked_for, localhost, on_runtime, pattern};

fn echo_round_trip(workers: usize) {
    on_runtime(workers, || {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = 4;
        let server = echo_server(listener, clients);
        // 1 MiB each: far more than the socket buffers, so writers park.
        let cs: Vec<_> = (0..clients)
            .map(|i| greenrt::spawn(move || echo_client(addr, pattern(1 << 20, i))))
            .collect();
        for c in cs {
            c.join().expect("client panicked");
        }
        server.join().expect("server panicked");
    });
}

#[test]
fn echo_round_trip_one_worker() {
    echo_round_trip(1);
}

#[test]
fn echo_round_trip_two_workers() {
    echo_round_trip(2);
}

const MANY: usize = 10_000;
const MANY_ADDR_ENV: &str = "GREENRT_NET_ECHO_ADDR";

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid rlimit; raising the soft limit up to the hard one is
    // always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    lim.rlim_cur
}

/// A counting semaphore for green threads.
struct Semaphore {
    count: greenrt::sync::Mutex<usize>,
    cv: greenrt::sync::Condvar,
}

impl Semaphore {
    fn acquire(&self) {
        let g = self.count.lock().unwrap();
        let mut g = self.cv.wait_while(g, |c| *c == 0).unwrap();
        *g -= 1;
    }
    fn release(&self) {
        *self.count.lock().unwrap() += 1;
        self.cv.notify_one();
    }
}

/// The child's side of `ten_thousand_concurrent_connections`: MANY green
/// threads connect (at most 64 handshakes in flight, below the listen
/// backlog), do a round trip, wait until every one of them is connected,
/// do a second round trip and close.
fn many_clients(addr: SocketAddr) {
    raise_nofile();
    common::runtime(2).block_on(move || {
        let sem = Arc::new(Semaphore {
            count: greenrt::sync::Mutex::new(64),
            cv: greenrt::sync::Condvar::new(),
        });
        let all_connected = greenrt::sync::WaitGroup::new();
        all_connected.add(MANY);
        let clients: Vec<_> = (0..MANY)
            .map(|i| {
                let sem = sem.clone();
                let all_connected = all_connected.clone();
                greenrt::spawn(move || {
                    let id = (i as u64).to_le_bytes();
                    let mut back = [0u8; 8];
                    sem.acquire();
                    let mut s = TcpStream::connect(addr).expect("client connect");
                    s.write_all(&id).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, id);
                    sem.release();
                    all_connected.done();
                    all_connected.wait();
                    s.write_all(&id).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, id);
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client panicked");
        }
    });
}

/// 10 000 connections open at once through an echo server inside greenrt
/// (2 workers). The clients run in a child process (also on greenrt), so
/// each process needs about 10 000 fds, not 20 000. The server counts
/// connections open at once: all 10 000 must be.
#[test]
fn ten_thousand_concurrent_connections() {
    if child_tag().as_deref() == Some("many-clients") {
        let addr = std::env::var(MANY_ADDR_ENV).unwrap().parse().unwrap();
        many_clients(addr);
        println!("CHILD_OK many-clients");
        return;
    }
    let limit = raise_nofile();
    let needed = MANY as u64 + 512;
    if limit < needed {
        eprintln!(
            "skipping ten_thousand_concurrent_connections: RLIMIT_NOFILE hard limit is {limit}, \
             {needed} fds are needed"
        );
        return;
    }
    fd_checked_for(Duration::from_secs(180), || {
        let rt = common::runtime(2);
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (o, m) = (open.clone(), max_open.clone());
        let server = rt.spawn(move || {
            let handlers: Vec<_> = (0..MANY)
                .map(|_| {
                    let (s, _) = listener.accept().expect("accept");
                    let now = o.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                    let o = o.clone();
                    greenrt::spawn(move || {
                        echo(s);
                        o.fetch_sub(1, SeqCst);
                    })
                })
                .collect();
            for h in handlers {
                h.join().expect("echo handler panicked");
            }
        });
        let out = run_child(
            "ten_thousand_concurrent_connections",
            "many-clients",
            &[(MANY_ADDR_ENV, Some(&addr.to_string()))],
            Duration::from_secs(150),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD_OK many-clients"),
            "client process failed:\n{}",
            describe(&out)
        );
        server.join().expect("server panicked");
        assert_eq!(open.load(SeqCst), 0);
        assert_eq!(
            max_open.load(SeqCst),
            MANY,
            "not all connections were open at once"
        );
    });
}

/// One worker, one green thread computing without ever yielding, and 20
/// echo pairs doing round trips: with preemption the I/O makes progress
/// and finishes while the hog still runs.
#[test]
fn io_progresses_beside_a_cpu_hog_on_one_worker() {
    on_runtime(1, || {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let hog = greenrt::spawn(move || {
            let start = Instant::now();
            let mut x = 0u64;
            while !d.load(SeqCst) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                if start.elapsed() > Duration::from_secs(40) {
                    return false; // the I/O never finished
                }
            }
            true
        });
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let pairs = 20;
        let server = echo_server(listener, pairs);
        let clients: Vec<_> = (0..pairs)
            .map(|i| {
                greenrt::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    for round in 0..20u8 {
                        s.write_all(&[i as u8, round]).unwrap();
                        let mut b = [0u8; 2];
                        s.read_exact(&mut b).unwrap();
                        assert_eq!(b, [i as u8, round]);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        server.join().unwrap();
        done.store(true, SeqCst);
        assert!(hog.join().unwrap(), "the I/O did not finish beside the hog");
    });
}
