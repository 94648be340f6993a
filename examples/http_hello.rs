//! Sync code written for std sockets runs unchanged on greenrt sockets.
//!
//! `handle_connection` is an ordinary HTTP/1.1 keep-alive handler generic
//! over `Read + Write`, built on std's `BufReader` — nothing in it knows
//! about greenrt. Here each connection gets a green thread, so thousands of
//! idle keep-alive connections cost a parked green thread each, not an OS
//! thread.
//!
//! cargo run --release --example http_hello                  # self-test, then exit
//! cargo run --release --example http_hello -- 127.0.0.1:8080  # serve until killed
//! curl -v http://127.0.0.1:8080/hello

use std::io::{self, BufRead, BufReader, Read, Write};

use greenrt::net::{TcpListener, TcpStream};

/// Serves HTTP/1.1 requests on one connection until the client closes it
/// or sends `Connection: close`. Any `Read + Write` works: a std socket, a
/// greenrt socket, a TLS stream...
fn handle_connection<S: Read + Write>(stream: S) -> io::Result<()> {
    let mut conn = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Ok(()); // client closed
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut keep_alive = line.trim_end().ends_with("HTTP/1.1");
        let mut body_len = 0usize;
        // Headers, up to the empty line.
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                    "content-length" => body_len = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        io::copy(&mut (&mut conn).take(body_len as u64), &mut io::sink())?;
        let body = format!("hello from a green thread: you asked for {path}\n");
        write!(
            conn.get_mut(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        )?;
        conn.get_mut().flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                greenrt::spawn(move || {
                    if let Err(e) = handle_connection(stream) {
                        eprintln!("connection error: {e}");
                    }
                });
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

/// Three keep-alive requests on one connection, then one with `close`.
fn self_test(addr: std::net::SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    for (i, path) in ["/a", "/b", "/c", "/bye"].iter().enumerate() {
        let close = if i == 3 { "Connection: close\r\n" } else { "" };
        write!(writer, "GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n")?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut len = 0;
        let mut line = String::new();
        while reader.read_line(&mut line)? > 2 {
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap_or(0);
            }
            line.clear();
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        print!(
            "{} -> {}",
            status.trim_end(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

fn main() {
    let addr = std::env::args().nth(1);
    greenrt::run(move || {
        let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:0"))
            .expect("bind the listening socket");
        let local = listener.local_addr().expect("listener address");
        if addr.is_some() {
            println!("serving on http://{local}/");
            serve(listener);
        } else {
            greenrt::spawn(move || serve(listener));
            self_test(local).expect("self-test");
            println!("self-test passed");
        }
    });
}
