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

// ---------------------------------------------------------------------
// A failed copy resets both peers.
// ---------------------------------------------------------------------

/// Whether `s` closes with a reset (`SO_LINGER` on, zero timeout).
fn resets_on_close(s: &impl std::os::fd::AsFd) -> bool {
    let l = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::Linger).unwrap();
    l.l_onoff != 0 && l.l_linger == 0
}

/// The upstream trickles data, the client reads it and sends nothing,
/// and the proxy's read of the client times out: the copy fails, and
/// must leave both sockets set to close with a reset, so that the
/// upstream, still sending, learns at once that the connection is gone.
///
/// Without the reset, a rare interleaving left the upstream blocked for
/// 60 s (`client_reset_buffered` hung about once in 500 runs under load):
/// the copy's `shutdown(Both)` raced a read that emptied the proxy's
/// receive queue, and once shut down for reading Linux no longer opens
/// the receive window (`tcp_cleanup_rbuf`); the close, with nothing
/// unread, was then a graceful one, and the upstream's data waited in
/// zero-window probes until the orphaned socket timed out
/// (`tcp_fin_timeout`). That race cannot be forced from here, so this
/// checks the socket option, and that the upstream's writes fail soon.
fn failed_copy_resets_the_upstream(opts: CopyOptions) {
    use std::time::{Duration, Instant};
    let (up_addr, up) = upstream(move |s| {
        let mut w = s.try_clone().unwrap();
        // A write blocked for this long counts as failed (and ends the
        // test rather than hang it).
        w.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let reader = std::thread::spawn(move || drain_until_closed(&s));
        let chunk = vec![7u8; 16 * 1024];
        while w.write_all(&chunk).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let failed = Instant::now();
        let _ = reader.join();
        failed
    });
    let rt = common::runtime(2);
    let listener = greenrt::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let proxy = rt.spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut up = greenrt::net::TcpStream::connect(up_addr).unwrap();
        // The client never sends: its direction fails on this timeout.
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let r = greenrt::io::copy_bidirectional_with(&mut client, &mut up, opts);
        let resets = (resets_on_close(&client), resets_on_close(&up));
        drop((client, up));
        (r, resets, Instant::now())
    });
    let client = std::net::TcpStream::connect(proxy_addr).unwrap();
    let reader = std::thread::spawn(move || drain_until_closed(&client));
    let (r, resets, closed) = proxy.join().unwrap();
    let err = r.expect_err("the client's direction times out");
    let _ = reader.join();
    let failed = up.join().unwrap();
    let after = failed.saturating_duration_since(closed);
    println!(
        "{:?}: the copy failed ({err}); the upstream's writes failed {after:?} after the proxy closed",
        opts.get_mode()
    );
    assert_eq!(
        resets,
        (true, true),
        "(client, upstream) set to close with a reset after the failed copy"
    );
    assert!(
        after < Duration::from_secs(10),
        "the upstream kept sending into the closed proxy socket for {after:?}"
    );
    drop(rt);
}

#[test]
fn a_failed_copy_leaves_both_sockets_to_close_with_a_reset_buffered() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        failed_copy_resets_the_upstream(buffered_opts())
    });
}

#[test]
fn a_failed_copy_leaves_both_sockets_to_close_with_a_reset_spliced() {
    let _serial = serial();
    with_timeout(common::TIMEOUT, || {
        failed_copy_resets_the_upstream(splice_opts())
    });
}
