//! `greenrt::io::copy` waits on a greenrt socket put in non-blocking mode
//! whatever the other side is (the `io` module docs' promise): it went
//! through the socket's own `read`/`write`, which say `WouldBlock`, when
//! the other side was not a greenrt socket or a buffered file.

mod common;
mod net_util;

use std::io::{Cursor, Read, Write};
use std::time::Duration;

use net_util::{on_runtime, tcp_pair};

/// The tests run one at a time: two of them count the process's fds,
/// and the direct-file one opens the (lasting) io_uring rings.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A green thread that starts reading `server` to its end after 100 ms
/// (so the copy into its peer meets a full socket), returning the bytes.
fn read_all_later(mut server: greenrt::net::TcpStream) -> greenrt::JoinHandle<Vec<u8>> {
    greenrt::spawn(move || {
        greenrt::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        got
    })
}

/// 20 MiB from a `Cursor` into a non-blocking socket whose peer starts
/// reading only after 100 ms: the copy waits while the socket is full.
#[test]
fn a_copy_into_a_non_blocking_socket_waits_for_room() {
    const LEN: usize = 20 << 20;
    let _serial = serial();
    on_runtime(2, || {
        let (mut client, server) = tcp_pair();
        client.set_nonblocking(true).unwrap();
        let reader = read_all_later(server);
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let n = greenrt::io::copy(&mut Cursor::new(data.clone()), &mut client).unwrap();
        assert_eq!(n, LEN as u64);
        drop(client);
        assert!(reader.join().unwrap() == data, "the peer got other bytes");
    });
}

/// From a non-blocking socket into a `Vec`: the copy waits for data that
/// comes 50 ms later, and runs to the end of the stream.
#[test]
fn a_copy_out_of_a_non_blocking_socket_waits_for_data() {
    let _serial = serial();
    on_runtime(2, || {
        let (mut client, mut server) = tcp_pair();
        server.set_nonblocking(true).unwrap();
        let writer = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(50));
            client.write_all(b"hello").unwrap();
            greenrt::sleep(Duration::from_millis(50));
            client.write_all(b", world").unwrap();
        });
        let mut got = Vec::new();
        let n = greenrt::io::copy(&mut server, &mut got).unwrap();
        assert_eq!((n, &got[..]), (12, &b"hello, world"[..]));
        writer.join().unwrap();
    });
}

/// The same from a file opened with O_DIRECT, which is read with a
/// buffer (not sendfile) and written to the socket.
#[test]
fn a_copy_from_a_direct_file_into_a_non_blocking_socket_waits_for_room() {
    const LEN: usize = 8 << 20;
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("greenrt-copy-nb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("direct.dat");
    let data: Vec<u8> = (0..LEN).map(|i| (i % 241) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let path2 = path.clone();
    // Not fd-checked: the first direct read opens the process-wide
    // io_uring rings, which stay open.
    common::runtime(2).block_on(move || {
        let (mut client, server) = tcp_pair();
        client.set_nonblocking(true).unwrap();
        let reader = read_all_later(server);
        let mut f = greenrt::fs::OpenOptions::new()
            .read(true)
            .direct(true)
            .open(&path2)
            .unwrap();
        let n = greenrt::io::copy(&mut f, &mut client).unwrap();
        assert_eq!(n, LEN as u64);
        drop(client);
        assert!(reader.join().unwrap() == data, "the peer got other bytes");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `Take` of a non-blocking socket into a `Vec`: the copy waits for
/// data, stops at the limit (the rest stays in the socket) and the limit
/// shrinks by what it took.
#[test]
fn a_copy_of_a_take_of_a_non_blocking_socket_waits_and_keeps_to_the_limit() {
    let _serial = serial();
    on_runtime(2, || {
        let (mut client, server) = tcp_pair();
        server.set_nonblocking(true).unwrap();
        let writer = greenrt::spawn(move || {
            greenrt::sleep(Duration::from_millis(50));
            client.write_all(b"hello").unwrap();
            greenrt::sleep(Duration::from_millis(50));
            client.write_all(b", world and the rest").unwrap();
            client
        });
        let mut got = Vec::new();
        let mut take = (&server).take(12);
        let n = greenrt::io::copy(&mut take, &mut got).unwrap();
        assert_eq!((n, &got[..], take.limit()), (12, &b"hello, world"[..], 0));
        let client = writer.join().unwrap();
        drop(client);
        let mut rest = Vec::new();
        server.set_nonblocking(false).unwrap();
        (&server).read_to_end(&mut rest).unwrap();
        assert_eq!(&rest[..], b" and the rest");
    });
}
