//! Helpers shared by the `greenrt::io::copy` test files (splice_gib.rs,
//! splice_resets.rs, splice_pool.rs, splice_paths.rs): fd counts, the
//! byte pattern, the in-process proxy and the upstream server.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use greenrt::io::{CopyMode, CopyOptions, CopyStats};
use greenrt::net::{TcpListener, TcpStream};

use crate::common::{self};

pub const GIB: u64 = 1 << 30;
/// Transfer unit of the pattern streams (the totals are multiples of it).
pub const CHUNK: usize = 64 * 1024;

pub fn splice_opts() -> CopyOptions {
    CopyOptions::new().mode(CopyMode::Splice)
}

pub fn buffered_opts() -> CopyOptions {
    CopyOptions::new().mode(CopyMode::Buffered)
}

// ---------------------------------------------------------------------
// Helpers: fds, the byte pattern, the proxy, the upstream server.
// ---------------------------------------------------------------------

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Makes the process-wide, never-closed resources exist (the poller's
/// epoll and eventfd), so fd counts taken afterwards compare equal.
pub fn warm_up() {
    let rt = common::runtime(1);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    });
}

/// Open fds now, after closing the pooled pipes.
pub fn settled_fds() -> usize {
    greenrt::io::clear_pipe_pool();
    open_fds()
}

/// A deterministic byte stream: word k is splitmix64(seed + k), so both
/// ends generate it independently and nothing is held in memory.
pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
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
pub fn send_pattern(w: &mut impl Write, seed: u64, total: u64) -> io::Result<()> {
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
pub fn verify_pattern(r: &mut impl Read, seed: u64) -> io::Result<u64> {
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
pub struct Proxy {
    pub addr: SocketAddr,
    results: mpsc::Receiver<io::Result<(u64, u64)>>,
    accept_loop: greenrt::JoinHandle<io::Result<()>>,
    conns: usize,
    rt: greenrt::Runtime,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, conns: usize, opts: CopyOptions) -> Proxy {
        Proxy::start_with(upstream, conns, opts, false)
    }

    /// With `small_buffers`, the proxy's sockets get 16 KiB send buffers,
    /// so a slow reader makes its copy park with bytes in its pipe.
    pub fn start_with(
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
    pub fn finish(self) -> Vec<io::Result<(u64, u64)>> {
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

pub fn relay(
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
pub fn set_buffer(s: &impl std::os::fd::AsRawFd, opt: libc::c_int, bytes: libc::c_int) {
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
pub fn upstream<T: Send + 'static>(
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
pub fn assert_mostly_spliced(d: &CopyStats, total: u64) {
    println!(
        "{:.1}% of {total} bytes spliced: {d:?}",
        d.spliced_bytes as f64 * 100.0 / total as f64
    );
    assert_eq!(d.spliced_bytes + d.copied_bytes, total, "{d:?}");
    assert!(d.spliced_bytes >= total / 2, "{d:?}");
    assert_eq!(d.fallbacks, 0, "{d:?}");
}
