//! The clients of the relayed scenarios: one batch on scoped OS threads
//! over kept connections.

use std::io::{Read, Write};

use super::backend::find;
use super::{Scenario, BODY_REQS, BULK, REQ_BODY, REQ_EMPTY, SHORT_REQS};

/// Sends `reqs` requests in turn and reads each response.
fn http_client(mut s: &std::net::TcpStream, req: &[u8], reqs: usize, buf: &mut [u8]) {
    for _ in 0..reqs {
        s.write_all(req).unwrap();
        // Read the header block, then Content-Length bytes of body.
        let mut have = 0;
        let header_end = loop {
            if let Some(i) = find(&buf[..have], b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "the proxy closed the connection");
            have += n;
        };
        assert!(buf.starts_with(b"HTTP/1.1 200 "));
        let header = std::str::from_utf8(&buf[..header_end]).unwrap();
        let len: usize = header
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut left = (header_end + len).saturating_sub(have);
        assert!(have <= header_end + len, "no pipelining here");
        while left > 0 {
            let want = left.min(buf.len());
            let n = s.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "the proxy closed the connection");
            left -= n;
        }
    }
}

/// Sends BULK bytes and reads them back, at the same time.
fn bulk_client(s: &std::net::TcpStream) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let data = vec![7u8; 1 << 20];
            let mut w = s;
            for _ in 0..BULK / data.len() {
                w.write_all(&data).unwrap();
            }
        });
        let mut buf = vec![0u8; 1 << 20];
        let mut r = s;
        let mut left = BULK;
        while left > 0 {
            let n = r.read(&mut buf[..left.min(1 << 20)]).unwrap();
            assert!(n > 0, "the proxy closed the connection");
            left -= n;
        }
    });
}

pub fn batch(scenario: Scenario, conns: &[std::net::TcpStream]) {
    std::thread::scope(|scope| {
        for s in conns {
            scope.spawn(move || match scenario {
                Scenario::Short => http_client(s, REQ_EMPTY, SHORT_REQS, &mut vec![0u8; 4096]),
                Scenario::Body => http_client(s, REQ_BODY, BODY_REQS, &mut vec![0u8; 256 * 1024]),
                Scenario::Bulk => bulk_client(s),
            });
        }
    });
}
