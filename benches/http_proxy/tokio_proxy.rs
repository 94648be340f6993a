//! The tokio side of the bench: the same head work as the greenrt proxy
//! (`proxy::http::parse_request`/`parse_response`, so httparse and the
//! same rewriting, into a 1 KiB buffer that grows for long heads), and
//! `Content-Length` bodies moved with `tokio::io::copy` on a `take` of
//! the socket — what a tokio proxy written the same way would do.
//! Keep-alive with an idle timeout on client connections, as the greenrt
//! proxy has; no chunked bodies, no tunnels (the bench sends neither).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::http::{self, Body, Head};

/// Client connections idle this long between requests are closed (as
/// `proxy::Config`'s default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts connections forever, a task each.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) {
    while let Ok((client, peer)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = handle(client, peer, upstream).await;
        });
    }
}

/// Bytes read and not yet used (a head and what followed it).
struct Buf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    async fn fill(&mut self, s: &mut TcpStream) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else if self.buf.len() < 64 * 1024 {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            } else {
                return Err(http::invalid("head too long"));
            }
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

async fn handle(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let peer_ip = peer.ip().to_string();
    let new_buf = || Buf {
        buf: vec![0; 1024],
        start: 0,
        end: 0,
    };
    let (mut from_client, mut from_up) = (new_buf(), new_buf());
    loop {
        let request = loop {
            if let Some((head, len)) = http::parse_request(from_client.data(), &peer_ip)? {
                from_client.consume(len);
                break head;
            }
            // The idle timeout the greenrt proxy has too (its client
            // sockets' read timeout).
            match tokio::time::timeout(IDLE_TIMEOUT, from_client.fill(&mut client)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        };
        send(&request, &mut from_client, &mut client, &mut up).await?;
        let response = loop {
            if let Some((head, len)) = http::parse_response(from_up.data(), request.is_head)? {
                from_up.consume(len);
                break head;
            }
            if from_up.fill(&mut up).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        send(&response, &mut from_up, &mut up, &mut client).await?;
        if request.close || response.close {
            return Ok(());
        }
    }
}

/// Writes the head with the part of the body already read, then copies
/// the rest of a `Content-Length` body with `tokio::io::copy`.
async fn send(
    head: &Head,
    buf: &mut Buf,
    src: &mut TcpStream,
    dst: &mut TcpStream,
) -> io::Result<()> {
    let Body::Length(n) = head.body else {
        if head.body != Body::None {
            return Err(http::invalid(
                "the bench proxy relays Content-Length bodies only",
            ));
        }
        return dst.write_all(&head.lines).await;
    };
    let held = buf.data().len().min(n as usize);
    let mut out = head.lines.clone();
    out.extend_from_slice(&buf.data()[..held]);
    buf.consume(held);
    dst.write_all(&out).await?;
    copy_exact(src, dst, n - held as u64).await
}

async fn copy_exact<R, W>(src: &mut R, dst: &mut W, n: u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if n == 0 {
        return Ok(());
    }
    let copied = tokio::io::copy(&mut src.take(n), dst).await?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
