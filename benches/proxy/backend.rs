//! The backend of the relayed scenarios: OS threads, one per connection.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::BODY;

/// Accepts `conns` connections and serves each on its own thread: an
/// HTTP-like responder or an echo. Joined by [`Backend::join`] once the
/// proxy has closed every connection.
pub struct Backend {
    pub addr: SocketAddr,
    acceptor: JoinHandle<Vec<JoinHandle<()>>>,
}

impl Backend {
    pub fn start(conns: usize, echo: bool) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body: Arc<[u8]> = (0..BODY).map(|i| i as u8).collect();
        let acceptor = std::thread::spawn(move || {
            (0..conns)
                .map(|_| {
                    let (s, _) = listener.accept().unwrap();
                    s.set_nodelay(true).unwrap();
                    let body = body.clone();
                    std::thread::spawn(move || {
                        if echo {
                            serve_echo(s)
                        } else {
                            serve_http(s, &body)
                        }
                    })
                })
                .collect()
        });
        Backend { addr, acceptor }
    }

    pub fn join(self) {
        for t in self.acceptor.join().unwrap() {
            t.join().unwrap();
        }
    }
}

fn serve_echo(mut s: std::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
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
}

/// Answers each request (a header block ending in an empty line) with an
/// empty response, or a 1 MiB body for `GET /1m`.
fn serve_http(mut s: std::net::TcpStream, body: &[u8]) {
    let empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let full = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let ok = if buf.starts_with(b"GET /1m ") {
            s.write_all(full.as_bytes()).and_then(|_| s.write_all(body))
        } else {
            s.write_all(empty)
        };
        if ok.is_err() {
            return;
        }
        buf.drain(..end);
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
