//! The proxies under test: a greenrt or a tokio runtime relaying each
//! connection to the backend.

use std::net::SocketAddr;

use greenrt::io::{CopyMode, CopyOptions};

use super::{Variant, WORKERS};

/// A proxy accepting exactly `conns` connections; [`Proxy::join`] waits
/// for them all to end (after the clients close) and stops its runtime.
pub enum Proxy {
    Greenrt {
        rt: greenrt::Runtime,
        done: greenrt::JoinHandle<()>,
    },
    Tokio {
        rt: tokio::runtime::Runtime,
        done: tokio::task::JoinHandle<()>,
    },
}

impl Proxy {
    pub fn start(
        variant: Variant,
        upstream: SocketAddr,
        conns: usize,
        buf: usize,
    ) -> (SocketAddr, Proxy) {
        match variant {
            Variant::GreenrtSplice | Variant::GreenrtCopy => {
                let mode = if variant == Variant::GreenrtSplice {
                    CopyMode::Splice
                } else {
                    CopyMode::Buffered
                };
                let opts = CopyOptions::new().mode(mode).buffer_size(buf);
                let rt = greenrt::Builder::new().workers(WORKERS).build().unwrap();
                let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let done = rt.spawn(move || {
                    let relays: Vec<_> = (0..conns)
                        .map(|_| {
                            let (mut c, _) = listener.accept().unwrap();
                            greenrt::spawn(move || {
                                let mut u = greenrt::net::TcpStream::connect(upstream).unwrap();
                                c.set_nodelay(true).unwrap();
                                u.set_nodelay(true).unwrap();
                                greenrt::io::copy_bidirectional_with(&mut c, &mut u, opts).unwrap();
                            })
                        })
                        .collect();
                    for r in relays {
                        r.join().unwrap();
                    }
                });
                (addr, Proxy::Greenrt { rt, done })
            }
            Variant::Tokio => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKERS)
                    .enable_all()
                    .build()
                    .unwrap();
                let listener = rt
                    .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                    .unwrap();
                let addr = listener.local_addr().unwrap();
                let done = rt.spawn(async move {
                    let mut relays = Vec::new();
                    for _ in 0..conns {
                        let (mut c, _) = listener.accept().await.unwrap();
                        relays.push(tokio::spawn(async move {
                            let mut u = tokio::net::TcpStream::connect(upstream).await.unwrap();
                            c.set_nodelay(true).unwrap();
                            u.set_nodelay(true).unwrap();
                            tokio::io::copy_bidirectional_with_sizes(&mut c, &mut u, buf, buf)
                                .await
                                .unwrap();
                        }));
                    }
                    for r in relays {
                        r.await.unwrap();
                    }
                });
                (addr, Proxy::Tokio { rt, done })
            }
        }
    }

    pub fn join(self) {
        match self {
            Proxy::Greenrt { rt, done } => {
                done.join().unwrap();
                drop(rt);
            }
            Proxy::Tokio { rt, done } => {
                rt.block_on(done).unwrap();
                drop(rt);
            }
        }
    }
}
