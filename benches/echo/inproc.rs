//! The in-process mode: client and server of every connection in the same
//! runtime (see the bench's module docs).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::Percentiles;
use crate::{PAIRS, WORKERS};

/// One connection's client end with its message, receive buffer and the
/// times of the last batch's round trips.
pub struct Conn<S> {
    stream: S,
    msg: Vec<u8>,
    buf: Vec<u8>,
    latencies: Vec<Duration>,
}

impl<S> Conn<S> {
    fn new(stream: S, size: usize) -> Conn<S> {
        Conn {
            stream,
            msg: (0..size).map(|i| i as u8).collect(),
            buf: vec![0; size],
            latencies: Vec::new(),
        }
    }
}

impl Conn<greenrt::net::TcpStream> {
    fn round_trips(mut self, rounds: usize) -> Self {
        self.latencies.clear();
        for _ in 0..rounds {
            let t = Instant::now();
            self.stream.write_all(&self.msg).unwrap();
            self.stream.read_exact(&mut self.buf).unwrap();
            self.latencies.push(t.elapsed());
        }
        assert!(self.buf == self.msg, "the echo differs from the message");
        self
    }
}

impl Conn<tokio::net::TcpStream> {
    async fn round_trips(mut self, rounds: usize) -> Self {
        self.latencies.clear();
        for _ in 0..rounds {
            let t = Instant::now();
            self.stream.write_all(&self.msg).await.unwrap();
            self.stream.read_exact(&mut self.buf).await.unwrap();
            self.latencies.push(t.elapsed());
        }
        assert!(self.buf == self.msg, "the echo differs from the message");
        self
    }
}

/// greenrt's server end: writes back what arrives until EOF.
pub fn greenrt_echo(mut stream: greenrt::net::TcpStream, size: usize) {
    let mut buf = vec![0; size];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => stream.write_all(&buf[..n]).unwrap(),
            Err(e) => panic!("server read: {e}"),
        }
    }
}

/// tokio's server end: writes back what arrives until EOF.
pub async fn tokio_echo(mut stream: tokio::net::TcpStream, size: usize) {
    let mut buf = vec![0; size];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
            Err(e) => panic!("server read: {e}"),
        }
    }
}

/// A runtime with `connections` echo connections to itself.
pub trait Cell: Sized {
    fn setup(connections: usize, size: usize) -> Self;
    /// Runs `rounds` round trips on every connection, all at once.
    fn batch(&mut self, rounds: usize);
    /// The latency percentiles of the last batch's round trips.
    fn percentiles(&mut self) -> Percentiles;
    /// Closes the clients, joins the servers, drops the runtime.
    fn close(self);
}

fn percentiles_of<S>(conns: &[Conn<S>]) -> Percentiles {
    let mut all: Vec<Duration> = conns
        .iter()
        .flat_map(|c| c.latencies.iter().copied())
        .collect();
    Percentiles::of(&mut all).unwrap_or_default()
}

pub struct GreenrtCell {
    rt: greenrt::Runtime,
    conns: Vec<Conn<greenrt::net::TcpStream>>,
    servers: Vec<greenrt::JoinHandle<()>>,
}

impl Cell for GreenrtCell {
    fn setup(connections: usize, size: usize) -> Self {
        use greenrt::net::{TcpListener, TcpStream};
        let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
        let (conns, servers) = rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            (0..connections)
                .map(|_| {
                    let client = TcpStream::connect(addr).unwrap();
                    let (server, _) = listener.accept().unwrap();
                    client.set_nodelay(true).unwrap();
                    server.set_nodelay(true).unwrap();
                    let echo = greenrt::spawn(move || greenrt_echo(server, size));
                    (Conn::new(client, size), echo)
                })
                .unzip()
        });
        GreenrtCell { rt, conns, servers }
    }

    fn batch(&mut self, rounds: usize) {
        let conns = std::mem::take(&mut self.conns);
        self.conns = self.rt.block_on(move || {
            let clients: Vec<_> = conns
                .into_iter()
                .map(|c| greenrt::spawn(move || c.round_trips(rounds)))
                .collect();
            clients.into_iter().map(|h| h.join().unwrap()).collect()
        });
    }

    fn percentiles(&mut self) -> Percentiles {
        percentiles_of(&self.conns)
    }

    fn close(self) {
        drop(self.conns);
        for server in self.servers {
            server.join().unwrap();
        }
        drop(self.rt);
    }
}

pub struct TokioCell {
    rt: tokio::runtime::Runtime,
    conns: Vec<Conn<tokio::net::TcpStream>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Cell for TokioCell {
    fn setup(connections: usize, size: usize) -> Self {
        use tokio::net::{TcpListener, TcpStream};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_all()
            .build()
            .unwrap();
        let (conns, servers) = rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let (mut conns, mut servers) = (Vec::new(), Vec::new());
            for _ in 0..connections {
                let client = TcpStream::connect(addr).await.unwrap();
                let (server, _) = listener.accept().await.unwrap();
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                servers.push(tokio::spawn(tokio_echo(server, size)));
                conns.push(Conn::new(client, size));
            }
            (conns, servers)
        });
        TokioCell { rt, conns, servers }
    }

    fn batch(&mut self, rounds: usize) {
        let conns = std::mem::take(&mut self.conns);
        self.conns = self.rt.block_on(async move {
            let clients: Vec<_> = conns
                .into_iter()
                .map(|c| tokio::spawn(c.round_trips(rounds)))
                .collect();
            let mut conns = Vec::with_capacity(clients.len());
            for h in clients {
                conns.push(h.await.unwrap());
            }
            conns
        });
    }

    fn percentiles(&mut self) -> Percentiles {
        percentiles_of(&self.conns)
    }

    fn close(self) {
        drop(self.conns);
        self.rt.block_on(async {
            for server in self.servers {
                server.await.unwrap();
            }
        });
        drop(self.rt);
    }
}

/// [`PAIRS`] pairs of batches run back to back on both runtimes (in
/// alternating order), which cancels slow drifts in the load of the
/// machine that separate criterion's two functions.
pub struct Alternating {
    /// Greenrt / tokio requests/s, per pair.
    pub ratios: Vec<f64>,
    /// Latency percentiles per batch: greenrt, tokio.
    pub latencies: [Vec<Percentiles>; 2],
}

pub fn alternate(g: &mut GreenrtCell, t: &mut TokioCell, rounds: usize) -> Alternating {
    let mut out = Alternating {
        ratios: Vec::new(),
        latencies: [Vec::new(), Vec::new()],
    };
    for i in 0..PAIRS {
        let mut g_time = || {
            let start = Instant::now();
            g.batch(rounds);
            start.elapsed().as_secs_f64()
        };
        let mut t_time = || {
            let start = Instant::now();
            t.batch(rounds);
            start.elapsed().as_secs_f64()
        };
        let (g_secs, t_secs) = if i % 2 == 0 {
            (g_time(), t_time())
        } else {
            let t_secs = t_time();
            (g_time(), t_secs)
        };
        out.ratios.push(t_secs / g_secs);
        out.latencies[0].push(g.percentiles());
        out.latencies[1].push(t.percentiles());
    }
    out
}
