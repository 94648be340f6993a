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

use crate::netpoll::Interest;
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
        match splice::splice_burst(src, dst, u64::MAX, &mut 0)? {
            Burst::Idle(m) | Burst::Limit(m) => {
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

/// Copies at most `limit` bytes from `src` to `dst` (a `Take` of a
/// socket); returns the bytes written. `consumed` counts the bytes taken
/// from `src`, also when this fails (bytes taken but not written are
/// lost then, as with a read loop). Nothing past the limit is read.
///
/// A limit larger than the buffer is spliced all the way (the caller
/// knows the size up front, so no first read is needed to find out
/// whether the burst is large), waiting for readiness whenever the source
/// runs dry; a smaller one, or any in buffered mode, is read and written.
pub(crate) fn relay_limited(
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    buf_size: usize,
    limit: u64,
    splice: bool,
    consumed: &mut u64,
) -> io::Result<u64> {
    let buf_size = buf_size.max(1);
    let mut total = 0u64;
    if splice && limit > buf_size as u64 {
        // Wait before the first splice if the last read drained the
        // socket (an edge will come with new data).
        let mut idle = src.is_drained();
        loop {
            if idle {
                src.wait(Interest::Read, &mut None)?;
            }
            match splice::splice_burst(src, dst, limit, consumed)? {
                Burst::Idle(m) => {
                    total += m;
                    idle = true;
                }
                Burst::Eof(m) | Burst::Limit(m) => return Ok(total + m),
                Burst::Unsupported(m) => {
                    total += m;
                    break;
                }
            }
        }
    }
    let mut tally = Tally::default();
    let left = limit - *consumed;
    let mut buf = vec![0u8; usize::try_from(left).map_or(buf_size, |l| l.min(buf_size))];
    while *consumed < limit {
        let want = usize::try_from(limit - *consumed).map_or(buf.len(), |l| l.min(buf.len()));
        let n = src.read(&mut buf[..want], false)?;
        if n == 0 {
            break;
        }
        *consumed += n as u64;
        dst.write_all(&buf[..n])?;
        tally.copied += n as u64;
        total += n as u64;
    }
    Ok(total)
}
