//! `greenrt::io::copy_bidirectional`: the client or the upstream server
//! resetting its connection mid-transfer, on the splice and buffered paths.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use greenrt::io::CopyOptions;

use common::{close_with_reset, serial, with_timeout};
use splice_util::{
    buffered_opts, settled_fds, splice_opts, upstream, warm_up, Pattern, Proxy, CHUNK,
};

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
