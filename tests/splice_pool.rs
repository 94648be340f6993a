//! `greenrt::io::copy`: the pipe pool stays bounded under 1 000
//! concurrent proxied connections.
//!
//! The proxy runs on a greenrt runtime (2 workers); the client and the
//! upstream server are plain OS threads with std's blocking sockets (or,
//! for the 1 000-connection test, green threads of a second runtime), so
//! they test the proxy without sharing its code. Every test holds
//! `SERIAL`: they compare process-wide fd counts and copy counters, which
//! tests running at the same time would disturb.

mod common;
mod splice_util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenrt::net::{TcpListener, TcpStream};

use common::{serial, with_timeout};
use splice_util::{
    send_pattern, set_buffer, settled_fds, splice_opts, warm_up, Pattern, Proxy, CHUNK,
};

// ---------------------------------------------------------------------
// The pipe pool under 1 000 concurrent connections.
// ---------------------------------------------------------------------

/// Raises RLIMIT_NOFILE to the hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn pool_stays_bounded_under_1000_connections() {
    const CONNS: usize = 1000;
    const EACH: u64 = 256 * 1024;
    let _serial = serial();
    // Four sockets per connection (client, two in the proxy, upstream),
    // plus pipes in flight (two fds each, at most two per connection).
    let need = (CONNS * 8 + 500) as u64;
    let limit = raise_nofile();
    if limit < need {
        println!("SKIPPED: RLIMIT_NOFILE hard limit is {limit}, this test needs {need} fds");
        return;
    }
    with_timeout(Duration::from_secs(120), || {
        warm_up();
        let fds = settled_fds();
        let before = greenrt::io::stats();
        let load = common::runtime(2);
        // Upstream: an echo server for every connection.
        let up_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up_listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let accepted_up = accepted.clone();
        let echo_server = load.spawn(move || {
            let echoes: Vec<_> = (0..CONNS)
                .map(|_| {
                    let (mut s, _) = up_listener.accept().unwrap();
                    accepted_up.fetch_add(1, Ordering::Release);
                    greenrt::spawn(move || {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            for e in echoes {
                e.join().unwrap();
            }
        });
        let proxy = Proxy::start_with(up_addr, CONNS, splice_opts(), true);
        // Sample the pool while the connections run.
        let done = Arc::new(AtomicBool::new(false));
        let max_pool = Arc::new(AtomicUsize::new(0));
        let max_in_use = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (done, max_pool, max_in_use) = (done.clone(), max_pool.clone(), max_in_use.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let s = greenrt::io::stats();
                    max_pool.fetch_max(s.pool_len, Ordering::Relaxed);
                    max_in_use.fetch_max(s.pipes_in_use(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        // Clients: connect one at a time, each once the upstream has
        // accepted the proxy's connection for the previous one (a burst of
        // 1 000 connects would overflow the listen backlogs, and the
        // kernel then drops or resets connections); then all send and (a
        // little later) read back their echo at once, and hang up only
        // when every one is done.
        let addr = proxy.addr;
        let clients = load.block_on(move || {
            let mut conns = Vec::with_capacity(CONNS);
            for i in 0..CONNS {
                let s = TcpStream::connect(addr).unwrap();
                set_buffer(&s, libc::SO_RCVBUF, 16 * 1024);
                conns.push(Arc::new(s));
                while accepted.load(Ordering::Acquire) <= i {
                    greenrt::sleep(Duration::from_micros(50));
                }
            }
            let finished = Arc::new(greenrt::sync::WaitGroup::new());
            finished.add(CONNS);
            let hs: Vec<_> = conns
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let finished = finished.clone();
                    let i = i as u64;
                    greenrt::spawn(move || -> io::Result<u64> {
                        let echoed = (|| {
                            let w = s.clone();
                            let writer = greenrt::spawn(move || send_pattern(&mut &*w, i, EACH));
                            // Read late, so that the echo backs up into the
                            // proxy: its copies park with bytes in their
                            // pipes, and many pipes are in use at once.
                            greenrt::sleep(Duration::from_millis(100));
                            let mut r = &*s;
                            let mut got = 0u64;
                            let mut p = Pattern::new(i);
                            let (mut buf, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
                            while got < EACH {
                                r.read_exact(&mut buf)?;
                                p.fill(&mut want);
                                if buf != want {
                                    return Err(io::Error::other("echo differs"));
                                }
                                got += CHUNK as u64;
                            }
                            writer.join().unwrap()?;
                            Ok(got)
                        })();
                        // Also on error, or the others would wait forever.
                        finished.done();
                        finished.wait();
                        s.shutdown(Shutdown::Write)?;
                        echoed
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        for c in clients {
            assert_eq!(c.unwrap(), EACH);
        }
        let results = proxy.finish();
        echo_server.join().unwrap();
        drop(load);
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        for r in &results {
            assert_eq!(*r.as_ref().unwrap(), (EACH, EACH));
        }
        let d = greenrt::io::stats().since(&before);
        let (max_pool, max_in_use) = (
            max_pool.load(Ordering::Relaxed),
            max_in_use.load(Ordering::Relaxed),
        );
        println!(
            "{CONNS} connections: pool at most {max_pool} (bound {}), at most {max_in_use} \
             pipes in use, {} created; {d:?}",
            greenrt::io::MAX_POOLED_PIPES,
            d.pipes_created
        );
        assert!(
            d.pipes_created > greenrt::io::MAX_POOLED_PIPES as u64,
            "the slow readers should have made the copies hold more pipes than the pool keeps"
        );
        assert!(max_pool <= greenrt::io::MAX_POOLED_PIPES);
        assert!(greenrt::io::stats().pool_len <= greenrt::io::MAX_POOLED_PIPES);
        assert_eq!(d.spliced_bytes + d.copied_bytes, 2 * EACH * CONNS as u64);
        assert!(d.spliced_bytes > 0);
        assert_eq!(greenrt::io::stats().pipes_in_use(), 0);
        assert_eq!(settled_fds(), fds, "fds open before and after");
    });
}
