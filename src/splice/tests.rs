//! The splice loop on raw registered fds (socketpairs, eventfds): the
//! paths the public API cannot reach on purpose.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnix;

use super::*;
use crate::netpoll::NetFd;

fn netfd(s: StdUnix) -> NetFd {
    NetFd::new(OwnedFd::from(s)).unwrap()
}

fn eventfd() -> NetFd {
    // SAFETY: eventfd(2) takes only integers and touches no memory of ours.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: `fd` was just returned by eventfd (checked), so nobody else
    // owns it.
    NetFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap()
}

fn runtime() -> crate::Runtime {
    crate::Builder::new().workers(2).build().unwrap()
}

/// Splices bursts until the source ends or splicing is refused, waiting
/// for the source in between (what `greenrt::io` does, minus the reads).
fn splice_all(src: &Endpoint<'_>, dst: &Endpoint<'_>) -> std::io::Result<Burst> {
    let mut total = 0;
    loop {
        match splice_burst(src, dst, u64::MAX, &mut 0)? {
            Burst::Idle(n) | Burst::Limit(n) => {
                total += n;
                src.wait(Interest::Read, &mut None)?;
            }
            Burst::Eof(n) => return Ok(Burst::Eof(total + n)),
            Burst::Unsupported(n) => return Ok(Burst::Unsupported(total + n)),
        }
    }
}

#[test]
fn socket_to_socket_is_spliced() {
    const LEN: usize = 8 << 20;
    let (mut feed, src) = StdUnix::pair().unwrap();
    let (dst, mut sink) = StdUnix::pair().unwrap();
    let (src, dst) = (netfd(src), netfd(dst));
    let writer = std::thread::spawn(move || {
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
        feed.write_all(&data).unwrap();
    });
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        sink.read_to_end(&mut got).unwrap();
        got
    });
    let before = crate::io::stats();
    let out = runtime().block_on(move || {
        let r = splice_all(
            &Endpoint::new(&src, None, None),
            &Endpoint::new(&dst, None, None),
        );
        drop(dst); // the sink sees end of stream
        r
    });
    assert_eq!(out.unwrap(), Burst::Eof(LEN as u64));
    writer.join().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i * 7 % 251) as u8));
    let after = crate::io::stats();
    assert!(after.spliced_bytes - before.spliced_bytes >= LEN as u64);
    assert!(after.splice_calls > before.splice_calls);
}

#[test]
fn unspliceable_source_falls_back_before_moving_anything() {
    let src = eventfd();
    let (dst, _sink) = StdUnix::pair().unwrap();
    let dst = netfd(dst);
    let out = splice_all(
        &Endpoint::new(&src, None, None),
        &Endpoint::new(&dst, None, None),
    );
    assert_eq!(out.unwrap(), Burst::Unsupported(0));
}

#[test]
fn unspliceable_destination_gets_the_piped_bytes_first() {
    // Eight bytes (an eventfd counter increment) reach the pipe, then the
    // pump finds the eventfd cannot be spliced into: they must be written
    // by hand before the fallback.
    let (mut feed, src) = StdUnix::pair().unwrap();
    feed.write_all(&5u64.to_ne_bytes()).unwrap();
    drop(feed);
    let src = netfd(src);
    let dst = eventfd();
    let out = splice_all(
        &Endpoint::new(&src, None, None),
        &Endpoint::new(&dst, None, None),
    );
    assert_eq!(out.unwrap(), Burst::Unsupported(8));
    let mut counter = 0u64;
    // SAFETY: reading 8 bytes into a u64 from our eventfd.
    let n = unsafe { libc::read(dst.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };
    assert_eq!((n, counter), (8, 5));
}

#[test]
fn pipes_are_pooled_and_bounded() {
    let made: Vec<_> = (0..pipe::MAX_POOLED + 5)
        .map(|_| pipe::get().unwrap())
        .collect();
    for p in made {
        pipe::put(p);
    }
    assert!(pipe::pooled() <= pipe::MAX_POOLED);
    let mut full = pipe::get().unwrap();
    full.data = 1;
    let closed = crate::io::stats().pipes_closed;
    pipe::put(full); // holds data: closed, not pooled
    assert!(crate::io::stats().pipes_closed > closed);
}
