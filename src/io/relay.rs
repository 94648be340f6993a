//! The copy loop between two greenrt stream sockets.
//!
//! Each *burst* of data (what arrives after the source was idle) starts
//! with a plain read into the copy buffer. If the read does not fill the
//! buffer, that was the whole burst (the socket is drained, and the next
//! read waits for readiness before its syscall): it is written. A small
//! message costs a read and a send, the cheapest way to move a few bytes
//! (splicing it would cost a page and two splices, plus one that fails).
//! If the read fills the buffer, more is probably queued: the rest of the burst
//! is spliced (`splice_burst`) until the source runs dry. So
//! request/response traffic is copied and bulk traffic is spliced, all
//! but the first buffer of each burst. In buffered mode, or once the
//! kernel refuses to splice, every burst is read and written in
//! buffer-sized pieces.
//!
//! When a splice burst ends on EAGAIN the next read waits for readiness
//! first, as after a short read (see `Endpoint::read`).

use std::io;

use crate::splice::counters::Tally;
use crate::splice::{self, Burst, Endpoint};

/// Copies from `src` to `dst` until `src` ends; splices the tail of
/// bursts larger than `buf_size` when `splice` is set.
pub(crate) fn relay(
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    buf_size: usize,
    mut splice: bool,
) -> io::Result<u64> {
    let mut tally = Tally::default();
    let mut buf = vec![0u8; buf_size.max(1)];
    let mut total = 0u64;
    // The last splice saw EAGAIN: wait before reading.
    let mut idle = false;
    loop {
        let n = src.read(&mut buf, idle)?;
        idle = false;
        if n == 0 {
            return Ok(total);
        }
        dst.write_all(&buf[..n])?;
        tally.copied += n as u64;
        total += n as u64;
        if n < buf.len() || !splice {
            continue;
        }
        // The buffer filled up: splice the rest of this burst.
        match splice::splice_burst(src, dst)? {
            Burst::Idle(m) => {
                total += m;
                idle = true;
            }
            Burst::Eof(m) => return Ok(total + m),
            Burst::Unsupported(m) => {
                total += m;
                splice = false;
            }
        }
    }
}
