//! Copies from a [`Take`](std::io::Take) of a greenrt stream socket — owned
//! or borrowed — to another: at most the limit is spliced, the rest of
//! the stream stays in the socket for the next read, and the limit
//! shrinks by what was taken, also on error. The case of a proxy that
//! parsed a head and passes a `Content-Length` body on (Go's splice path
//! handles an `io.LimitedReader` for the same reason).

use std::io::{self, Take};

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
