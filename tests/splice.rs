//! `greenrt::io::copy` / `copy_bidirectional`: the splice path and the
//! buffered path, through an in-process TCP proxy on loopback.
//!
//! The proxy runs on a greenrt runtime (2 workers); the client and the
//! upstream server are plain OS threads with std's blocking sockets (or,
//! for the 1 000-connection test, green threads of a second runtime), so
//! they test the proxy without sharing its code. Every test holds
//! `SERIAL`: they compare process-wide fd counts and copy counters, which
//! tests running at the same time would disturb.

mod common;

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use greenrt::io::{CopyMode, CopyOptions, CopyStats};
use greenrt::net::{TcpListener, TcpStream};
use greenrt::os::unix::net::UnixStream;

use common::{close_with_reset, serial, with_timeout};

const GIB: u64 = 1 << 30;
/// Transfer unit of the pattern streams (the totals are multiples of it).
const CHUNK: usize = 64 * 1024;

fn splice_opts() -> CopyOptions {
    CopyOptions::new().mode(CopyMode::Splice)
}

fn buffered_opts() -> CopyOptions {
    CopyOptions::new().mode(CopyMode::Buffered)
}

// ---------------------------------------------------------------------
// Helpers: fds, the byte pattern, the proxy, the upstream server.
// ---------------------------------------------------------------------

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Makes the process-wide, never-closed resources exist (the poller's
/// epoll and eventfd), so fd counts taken afterwards compare equal.
fn warm_up() {
    let rt = common::runtime(1);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    });
}

/// Open fds now, after closing the pooled pipes.
fn settled_fds() -> usize {
    greenrt::io::clear_pipe_pool();
    open_fds()
}

/// A deterministic byte stream: word k is splitmix64(seed + k), so both
/// ends generate it independently and nothing is held in memory.
struct Pattern {
    state: u64,
}

impl Pattern {
    fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_exact_mut(8) {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            w.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
    }
}

/// Writes `total` bytes of pattern `seed`.
fn send_pattern(w: &mut impl Write, seed: u64, total: u64) -> io::Result<()> {
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0;
    while sent < total {
        p.fill(&mut buf);
        w.write_all(&buf)?;
        sent += CHUNK as u64;
    }
    Ok(())
}

/// Reads pattern `seed` until end of stream, comparing chunk by chunk;
/// returns the byte count. A mismatch is an `InvalidData` error naming
/// the offset.
fn verify_pattern(r: &mut impl Read, seed: u64) -> io::Result<u64> {
    let mut p = Pattern::new(seed);
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        // Fill a whole chunk (or reach end of stream).
        let mut n = 0;
        while n < CHUNK {
            match r.read(&mut got[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            return Ok(total);
        }
        p.fill(&mut want);
        if got[..n] != want[..n] {
            let at = (0..n).find(|&i| got[i] != want[i]).unwrap();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("byte {} differs", total + at as u64),
            ));
        }
        total += n as u64;
        if n < CHUNK {
            return Ok(total);
        }
    }
}

/// A proxy on its own greenrt runtime: accepts `conns` connections, relays
/// each to `upstream` with `copy_bidirectional_with(opts)`, and reports
/// every connection's result.
struct Proxy {
    addr: SocketAddr,
    results: mpsc::Receiver<io::Result<(u64, u64)>>,
    accept_loop: greenrt::JoinHandle<io::Result<()>>,
    conns: usize,
    rt: greenrt::Runtime,
}

impl Proxy {
    fn start(upstream: SocketAddr, conns: usize, opts: CopyOptions) -> Proxy {
        Proxy::start_with(upstream, conns, opts, false)
    }

    /// With `small_buffers`, the proxy's sockets get 16 KiB send buffers,
    /// so a slow reader makes its copy park with bytes in its pipe.
    fn start_with(
        upstream: SocketAddr,
        conns: usize,
        opts: CopyOptions,
        small_buffers: bool,
    ) -> Proxy {
        let rt = common::runtime(2);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, results) = mpsc::channel();
        let accept_loop = rt.spawn(move || {
            for _ in 0..conns {
                let (client, _) = listener.accept()?;
                let tx = tx.clone();
                greenrt::spawn(move || {
                    // Both sockets are closed before the result is sent.
                    let r = relay(client, upstream, opts, small_buffers);
                    let _ = tx.send(r);
                });
            }
            Ok(())
        });
        Proxy {
            addr,
            results,
            accept_loop,
            conns,
            rt,
        }
    }

    /// Waits for every connection's result, then stops the runtime.
    fn finish(self) -> Vec<io::Result<(u64, u64)>> {
        let results: Vec<_> = (0..self.conns)
            .map(|_| {
                self.results
                    .recv_timeout(Duration::from_secs(60))
                    .expect("a proxied connection did not finish")
            })
            .collect();
        self.accept_loop.join().unwrap().unwrap();
        drop(self.rt);
        results
    }
}

fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    opts: CopyOptions,
    small_buffers: bool,
) -> io::Result<(u64, u64)> {
    let mut up = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    up.set_nodelay(true)?;
    if small_buffers {
        set_buffer(&client, libc::SO_SNDBUF, 16 * 1024);
        set_buffer(&up, libc::SO_SNDBUF, 16 * 1024);
    }
    greenrt::io::copy_bidirectional_with(&mut client, &mut up, opts)
}

/// Sets SO_SNDBUF or SO_RCVBUF (the kernel doubles it, and stops tuning
/// it).
fn set_buffer(s: &impl std::os::fd::AsRawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt on an open socket with a valid int.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// A one-connection upstream server on an OS thread running `serve`.
fn upstream<T: Send + 'static>(
    serve: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<T>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || serve(l.accept().unwrap().0));
    (addr, t)
}

/// Every byte moved, all but the first buffer of each burst by splice.
/// How many bursts there are depends on timing (a copy that catches up
/// with its writer starts a new one), so "most" is only "at least half".
#[track_caller]
fn assert_mostly_spliced(d: &CopyStats, total: u64) {
    println!(
        "{:.1}% of {total} bytes spliced: {d:?}",
        d.spliced_bytes as f64 * 100.0 / total as f64
    );
    assert_eq!(d.spliced_bytes + d.copied_bytes, total, "{d:?}");
    assert!(d.spliced_bytes >= total / 2, "{d:?}");
    assert_eq!(d.fallbacks, 0, "{d:?}");
}

// ---------------------------------------------------------------------
// 1 GiB each way through the proxy.
// ---------------------------------------------------------------------

/// 1 GiB client → upstream and 1 GiB upstream → client at the same time,
/// both verified against the pattern as they arrive; both sides end with
/// a half-close that the proxy must pass on.
fn gib_through_proxy(opts: CopyOptions) -> CopyStats {
    warm_up();
    let fds = settled_fds();
    let before = greenrt::io::stats();
    let started = Instant::now();
    let (up_addr, up) = upstream(|s| {
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            send_pattern(&mut w, 2, GIB)?;
            w.shutdown(Shutdown::Write)
        });
        let got = verify_pattern(&mut &s, 1);
        writer.join().unwrap().unwrap();
        got
    });
    let proxy = Proxy::start(up_addr, 1, opts);
    let client = std::net::TcpStream::connect(proxy.addr).unwrap();
    let mut w = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        send_pattern(&mut w, 1, GIB)?;
        w.shutdown(Shutdown::Write)
    });
    let back = verify_pattern(&mut &client, 2).unwrap();
    writer.join().unwrap().unwrap();
    let there = up.join().unwrap().unwrap();
    let results = proxy.finish();
    drop(client);
    let elapsed = started.elapsed();
    assert_eq!((there, back), (GIB, GIB), "bytes that arrived each way");
    assert_eq!(*results[0].as_ref().unwrap(), (GIB, GIB), "proxy counts");
    let d = greenrt::io::stats().since(&before);
    println!(
        "{:?}: 2 GiB (1 GiB each way) in {elapsed:.2?} = {:.0} MB/s; {d:?}",
        opts.get_mode(),
        2.0 * GIB as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(greenrt::io::stats().pipes_in_use(), 0);
    assert_eq!(settled_fds(), fds, "fds open before and after");
    d
}

#[test]
fn gib_spliced_arrives_intact() {
    let _serial = serial();
    let d = with_timeout(
        Duration::from_secs(120),
        || gib_through_proxy(splice_opts()),
    );
    assert_mostly_spliced(&d, 2 * GIB);
}

#[test]
fn gib_buffered_arrives_intact() {
    let _serial = serial();
    let d = with_timeout(Duration::from_secs(120), || {
        gib_through_proxy(buffered_opts())
    });
    assert_eq!(d.copied_bytes, 2 * GIB, "every byte copied");
    assert_eq!(d.spliced_bytes, 0);
    assert_eq!(d.splice_calls, 0);
}

// ---------------------------------------------------------------------
// Resets.
// ---------------------------------------------------------------------

/// Reads until end of stream or an error; returns the bytes read and
/// whether it ended in an error.
fn drain_until_closed(mut s: &std::net::TcpStream) -> (u64, bool) {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (n, false),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (n, true),
        }
    }
}

/// Writes pattern `seed` until `stop` is set or a write fails.
fn send_until(w: &mut impl Write, seed: u64, stop: &AtomicBool) -> io::Result<()> {
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        p.fill(&mut buf);
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Data flows both ways; after 8 MiB one side resets. The proxy's copy
/// must fail, and the other side must see its connection closed (end of
/// stream or an error) rather than hang; no fd or pipe may leak.
fn reset_mid_transfer(opts: CopyOptions, client_resets: bool) {
    const BEFORE_RESET: u64 = 8 << 20;
    warm_up();
    let fds = settled_fds();
    // Set when the side that resets has read BEFORE_RESET bytes; its own
    // writer then stops, so that closing its last fd sends the RST.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_up = Arc::new(AtomicBool::new(false));
    let (up_addr, up) = upstream(move |s| {
        let mut w = s.try_clone().unwrap();
        let stop_w = stop_up.clone();
        let writer = std::thread::spawn(move || {
            let _ = send_until(&mut w, 3, &stop_w);
        });
        if client_resets {
            // The survivor: its connection must end.
            let ended = drain_until_closed(&s);
            stop_up.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            Some(ended)
        } else {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            while got < BEFORE_RESET {
                got += (&s).read(&mut buf).unwrap() as u64;
            }
            stop_up.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            close_with_reset(s);
            None
        }
    });
    let proxy = Proxy::start(up_addr, 1, opts);
    let client = std::net::TcpStream::connect(proxy.addr).unwrap();
    let mut w = client.try_clone().unwrap();
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let _ = send_until(&mut w, 4, &stop_w);
    });
    if client_resets {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < BEFORE_RESET {
            got += (&client).read(&mut buf).unwrap() as u64;
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        close_with_reset(client);
        let (n, _) = up.join().unwrap().expect("the upstream's report");
        assert!(n > 0);
    } else {
        // The survivor: its connection must end.
        let _ = drain_until_closed(&client);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        drop(client);
        up.join().unwrap();
    }
    let results = proxy.finish();
    let err = results[0]
        .as_ref()
        .expect_err("the proxy's copy must fail after a reset");
    println!(
        "{:?}, client resets: {client_resets}: {err}",
        opts.get_mode()
    );
    assert_eq!(greenrt::io::stats().pipes_in_use(), 0);
    assert_eq!(settled_fds(), fds, "fds open before and after");
}

#[test]
fn client_reset_spliced() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || reset_mid_transfer(splice_opts(), true));
}

#[test]
fn upstream_reset_spliced() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || reset_mid_transfer(splice_opts(), false));
}

#[test]
fn client_reset_buffered() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        reset_mid_transfer(buffered_opts(), true)
    });
}

#[test]
fn upstream_reset_buffered() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        reset_mid_transfer(buffered_opts(), false)
    });
}

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

// ---------------------------------------------------------------------
// Which path runs: stats, fallbacks, other types.
// ---------------------------------------------------------------------

/// A connected pair of greenrt TCP streams (call on a green thread).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (c, l.accept().unwrap().0)
}

/// copy() from one greenrt socket to another, `total` bytes; returns the
/// counter deltas. `src` is fed by a green thread, `dst`'s peer verified
/// by another.
fn socket_copy(opts: CopyOptions, unix: bool, total: u64) -> CopyStats {
    let before = greenrt::io::stats();
    let n = common::block_on(2, move || {
        let (feed, verify, copied) = if unix {
            let (mut feed, mut src) = UnixStream::pair().unwrap();
            let (mut dst, mut sink) = UnixStream::pair().unwrap();
            let f = greenrt::spawn(move || {
                send_pattern(&mut feed, 7, total).unwrap();
            });
            let v = greenrt::spawn(move || verify_pattern(&mut sink, 7).unwrap());
            let n = greenrt::io::copy_with(&mut src, &mut dst, opts).unwrap();
            (f, v, n)
        } else {
            let (mut feed, mut src) = tcp_pair();
            let (mut dst, mut sink) = tcp_pair();
            let f = greenrt::spawn(move || {
                send_pattern(&mut feed, 7, total).unwrap();
            });
            let v = greenrt::spawn(move || verify_pattern(&mut sink, 7).unwrap());
            let n = greenrt::io::copy_with(&mut src, &mut dst, opts).unwrap();
            (f, v, n)
        };
        // `dst` was dropped at the end of its block: the sink sees EOF.
        feed.join().unwrap();
        assert_eq!(verify.join().unwrap(), total);
        copied
    });
    assert_eq!(n, total);
    greenrt::io::stats().since(&before)
}

#[test]
fn tcp_copy_uses_splice() {
    let _serial = serial();
    let d = socket_copy(splice_opts(), false, 64 << 20);
    assert_mostly_spliced(&d, 64 << 20);
}

#[test]
fn unix_copy_uses_splice() {
    let _serial = serial();
    let d = socket_copy(splice_opts(), true, 64 << 20);
    assert_mostly_spliced(&d, 64 << 20);
}

#[test]
fn buffered_mode_never_splices() {
    let _serial = serial();
    let d = socket_copy(buffered_opts(), false, 16 << 20);
    assert_eq!(d.copied_bytes, 16 << 20, "{d:?}");
    assert_eq!((d.spliced_bytes, d.splice_calls), (0, 0), "{d:?}");
}

#[test]
fn tcp_to_unix_uses_splice() {
    let _serial = serial();
    let total = 8u64 << 20;
    let before = greenrt::io::stats();
    common::block_on(2, move || {
        let (mut feed, mut src) = tcp_pair();
        let (mut dst, mut sink) = UnixStream::pair().unwrap();
        let f = greenrt::spawn(move || send_pattern(&mut feed, 9, total).unwrap());
        let v = greenrt::spawn(move || verify_pattern(&mut sink, 9).unwrap());
        assert_eq!(greenrt::io::copy(&mut src, &mut dst).unwrap(), total);
        drop(dst);
        f.join().unwrap();
        assert_eq!(v.join().unwrap(), total);
    });
    let d = greenrt::io::stats().since(&before);
    assert_mostly_spliced(&d, total);
}

/// Request/response traffic (messages smaller than the copy buffer) is
/// read and written, never spliced: three splice calls and a page per
/// message would cost more than copying a few bytes.
#[test]
fn small_messages_are_copied_not_spliced() {
    const ROUNDS: u64 = 2000;
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        let before = greenrt::io::stats();
        let (up_addr, up) = upstream(|mut s| {
            let mut buf = [0u8; 100];
            for _ in 0..ROUNDS {
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
            }
        });
        let proxy = Proxy::start(up_addr, 1, splice_opts());
        let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
        client.set_nodelay(true).unwrap();
        let mut buf = [7u8; 100];
        for _ in 0..ROUNDS {
            client.write_all(&buf).unwrap();
            client.read_exact(&mut buf).unwrap();
        }
        up.join().unwrap();
        drop(client);
        let results = proxy.finish();
        assert_eq!(*results[0].as_ref().unwrap(), (100 * ROUNDS, 100 * ROUNDS));
        let d = greenrt::io::stats().since(&before);
        assert_eq!(d.copied_bytes, 200 * ROUNDS, "{d:?}");
        assert_eq!((d.spliced_bytes, d.splice_calls), (0, 0), "{d:?}");
    });
}

/// Regular files, `Cursor`s and `Vec`s cannot be spliced: copies involving
/// them are buffered and still move every byte.
#[test]
fn files_and_memory_fall_back_to_buffered() {
    let _serial = serial();
    let total = 4u64 << 20;
    let path = std::env::temp_dir().join(format!("greenrt-splice-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    send_pattern(&mut file, 11, total).unwrap();
    drop(file);
    let before = greenrt::io::stats();
    let path2 = path.clone();
    common::block_on(2, move || {
        // File → socket → Vec, through two copies on two green threads.
        let (mut a, mut b) = tcp_pair();
        let reader = greenrt::spawn(move || {
            let mut out = Vec::new();
            let n = greenrt::io::copy(&mut b, &mut out).unwrap();
            (n, out)
        });
        let mut file = std::fs::File::open(&path2).unwrap();
        assert_eq!(greenrt::io::copy(&mut file, &mut a).unwrap(), total);
        drop(a);
        let (n, out) = reader.join().unwrap();
        assert_eq!(n, total);
        assert_eq!(verify_pattern(&mut Cursor::new(&out), 11).unwrap(), total);
        // Cursor → Vec, with a tiny buffer.
        let mut sink = Vec::new();
        let opts = CopyOptions::new().buffer_size(1000);
        let n = greenrt::io::copy_with(&mut Cursor::new(out), &mut sink, opts).unwrap();
        assert_eq!(n, total);
        assert_eq!(verify_pattern(&mut Cursor::new(&sink), 11).unwrap(), total);
    });
    std::fs::remove_file(&path).unwrap();
    let d = greenrt::io::stats().since(&before);
    // File → socket goes by sendfile (see tests/io_copy_file.rs); socket
    // → Vec and Cursor → Vec are buffered.
    assert_eq!(d.copied_bytes, 2 * total, "{d:?}");
    assert_eq!(d.spliced_bytes, total, "{d:?}");
    assert_eq!(d.splice_calls, 0, "{d:?}");
}

#[test]
fn bidirectional_needs_sockets() {
    let _serial = serial();
    let mut a = Cursor::new(vec![1u8; 10]);
    let mut b = Cursor::new(Vec::new());
    let e = greenrt::io::copy_bidirectional(&mut a, &mut b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("TcpStream"), "{e}");
    // A std socket is blocking: not spliced, not relayed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let e = greenrt::io::copy_bidirectional(&mut c, &mut b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
}

/// From a plain OS thread the second direction runs on a helper OS thread;
/// half-closes pass through and the counts come back per direction.
#[test]
fn bidirectional_from_an_os_thread() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        let (mut a, mut a_peer) = UnixStream::pair().unwrap();
        let (mut b, mut b_peer) = UnixStream::pair().unwrap();
        let ta = std::thread::spawn(move || {
            a_peer.write_all(&[1u8; 3000]).unwrap();
            a_peer.shutdown(Shutdown::Write).unwrap();
            let mut v = Vec::new();
            a_peer.read_to_end(&mut v).unwrap();
            v.len()
        });
        let tb = std::thread::spawn(move || {
            let mut v = Vec::new();
            b_peer.read_to_end(&mut v).unwrap(); // ends: a's half-close passed on
            b_peer.write_all(&[2u8; 5000]).unwrap();
            v.len()
        });
        let counts = greenrt::io::copy_bidirectional(&mut a, &mut b).unwrap();
        assert_eq!(counts, (3000, 5000));
        assert_eq!((ta.join().unwrap(), tb.join().unwrap()), (5000, 3000));
    });
}

/// A read timeout on the source bounds each wait of a spliced copy as it
/// bounds a read: WouldBlock, as std reports SO_RCVTIMEO.
#[test]
fn read_timeout_applies_to_spliced_copy() {
    let _serial = serial();
    common::block_on(2, || {
        let (_feed, mut src) = tcp_pair();
        let (mut dst, _sink) = tcp_pair();
        src.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t = Instant::now();
        let e = greenrt::io::copy(&mut src, &mut dst).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(50));
    });
    assert_eq!(greenrt::io::stats().pipes_in_use(), 0);
}
