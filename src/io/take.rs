//! Copies from a [`Take`](std::io::Take) of a greenrt stream socket — owned
//! or borrowed — to another: at most the limit is spliced, the rest of
//! the stream stays in the socket for the next read, and the limit
//! shrinks by what was taken, also on error. The case of a proxy that
//! parsed a head and passes a `Content-Length` body on (Go's splice path
//! handles an `io.LimitedReader` for the same reason). Into anything
//! else (a `Vec`, a file) the socket is read through its endpoint, so a
//! socket in non-blocking mode is still waited on.

use std::io::{self, Take, Write};

use super::recognise::{downcast_mut, take_of_ref, StreamSocket, TakeOf};
use super::{relay, zero_copy, CopyOptions};
use crate::net::TcpStream;
use crate::os::unix::net::UnixStream;
use crate::splice::Endpoint;

/// Copies from `reader` to `dst` if `reader` is a `Take` of a greenrt
/// stream socket, `&` one or `&mut` one; None (nothing done) otherwise.
pub(super) fn copy_from_take<R>(
    reader: &mut R,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> Option<io::Result<u64>> {
    macro_rules! socket {
        ($t:ty) => {
            if let Some(t) = downcast_mut::<Take<$t>, R>(reader) {
                return Some(copy_limited::<$t>(t, dst, opts));
            }
            if let Some(r) = take_of_ref::<$t, R, _>(reader, |t| copy_limited(t, dst, opts)) {
                return Some(r);
            }
        };
    }
    socket!(TcpStream);
    socket!(UnixStream);
    None
}

/// Copies at most `t`'s limit from its socket to `dst` and takes the
/// bytes read off the limit.
fn copy_limited<S: StreamSocket>(
    t: &mut dyn TakeOf<S>,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<u64> {
    let limit = t.limit();
    if limit == 0 {
        return Ok(0);
    }
    let mut consumed = 0;
    let result = match t.inner().endpoint() {
        Ok(src) => relay::relay_limited(
            &src,
            dst,
            opts.buffer_size,
            limit,
            zero_copy(opts),
            &mut consumed,
        ),
        Err(e) => Err(e),
    };
    t.set_limit(limit - consumed);
    result
}

/// Copies from `reader` to `writer` (not a greenrt socket) if `reader` is
/// a `Take` of a greenrt stream socket, `&` one or `&mut` one, reading
/// through the socket's endpoint, which waits for data in non-blocking
/// mode too (the `io` module docs' promise); None (nothing done)
/// otherwise. The limit shrinks by the bytes read, also on error.
pub(super) fn copy_take_to<R>(
    reader: &mut R,
    writer: &mut dyn Write,
    buf_size: usize,
) -> Option<io::Result<u64>> {
    macro_rules! socket {
        ($t:ty) => {
            if let Some(t) = downcast_mut::<Take<$t>, R>(reader) {
                return Some(copy_limited_to::<$t>(t, writer, buf_size));
            }
            if let Some(r) =
                take_of_ref::<$t, R, _>(reader, |t| copy_limited_to(t, writer, buf_size))
            {
                return Some(r);
            }
        };
    }
    socket!(TcpStream);
    socket!(UnixStream);
    None
}

fn copy_limited_to<S: StreamSocket>(
    t: &mut dyn TakeOf<S>,
    writer: &mut dyn Write,
    buf_size: usize,
) -> io::Result<u64> {
    let mut left = t.limit();
    let start = left;
    let result = (|| {
        if left == 0 {
            return Ok(());
        }
        let src = t.inner().endpoint()?;
        let mut buf = vec![
            0u8;
            buf_size
                .max(1)
                .min(usize::try_from(left).unwrap_or(usize::MAX))
        ];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = src.read(&mut buf[..want], false)?;
            if n == 0 {
                return Ok(());
            }
            left -= n as u64;
            writer.write_all(&buf[..n])?;
        }
        Ok(())
    })();
    t.set_limit(left);
    result.map(|()| start - left)
}
