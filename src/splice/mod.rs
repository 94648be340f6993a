//! Zero-copy socket-to-socket copying through a pipe (after Go's
//! internal/poll/splice_linux.go).
//!
//! splice(2) moves pages, not bytes, but one end of every splice must be a
//! pipe. So a copy loops: *drain* — splice from the source socket into an
//! empty pipe (up to the pipe's capacity) — then *pump* — splice from the
//! pipe into the destination until the pipe is empty again. Both use
//! SPLICE_F_NONBLOCK (the pipe never blocks) and the sockets are
//! non-blocking, so EAGAIN means "the socket is not ready": the drain can
//! only get it from the source (its pipe is empty), the pump only from the
//! destination (its pipe holds data). The pump then parks the green thread
//! for write readiness of the destination, through its poll descriptor;
//! the drain returns [`Burst::Idle`] and its caller (`greenrt::io`) parks
//! for read readiness of the source. EINTR is retried.
//!
//! EINVAL (or ENOSYS) means the kernel cannot splice these fds. On the
//! drain the pipe is empty, so nothing is lost by switching to read/write;
//! on the pump the bytes already in the pipe are read out and written to
//! the destination first. Either way the caller finishes with a buffered
//! copy ([`Burst::Unsupported`]).
//!
//! Pipes come from [`pipe`]'s pool for one burst and go back when it ends
//! (empty), so an idle connection holds none.

pub(crate) mod counters;
mod endpoint;
pub(crate) mod pipe;
mod sendfile;

use std::io;
use std::ptr;

pub(crate) use endpoint::Endpoint;
use pipe::Pipe;
pub(crate) use sendfile::{sendfile, Sent};

use crate::netpoll::Interest;
use crate::sys::last_os_error;
use counters::{Tally, FALLBACKS};

/// How a burst of splicing ended; each carries the bytes it moved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Burst {
    /// The source has nothing more for now (EAGAIN on an empty pipe).
    Idle(u64),
    /// The source reached end of stream.
    Eof(u64),
    /// The limit was reached: that many bytes were taken from the source.
    Limit(u64),
    /// Splicing is not possible for these fds (or no pipe could be made);
    /// no byte is left in a pipe: the caller goes on with read/write.
    Unsupported(u64),
}

/// Splices from `src` to `dst` as long as `src` has data at hand, until
/// `*consumed` (bytes taken from `src`, counted here also when this
/// fails) reaches `limit`. Never takes more than `limit` in all, so what
/// follows stays in the source socket.
pub(crate) fn splice_burst(
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    limit: u64,
    consumed: &mut u64,
) -> io::Result<Burst> {
    let mut tally = Tally::default();
    // Whatever happens, the pipe goes back to the pool (or is closed if
    // it still holds bytes) when `slot` drops.
    let mut slot = PipeSlot(None);
    let mut moved = 0u64;
    loop {
        let Ok(pipe) = slot.get() else {
            return Ok(fallback(moved));
        };
        debug_assert_eq!(pipe.data, 0);
        let left = limit.saturating_sub(*consumed);
        if left == 0 {
            return Ok(Burst::Limit(moved));
        }
        let want = usize::try_from(left).map_or(pipe.capacity, |l| l.min(pipe.capacity));
        let n = match splice(src.raw(), pipe.write_fd(), want, &mut tally) {
            Ok(0) => return Ok(Burst::Eof(moved)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Idle(moved)),
            Err(e) if unsupported(&e) => return Ok(fallback(moved)),
            Err(e) => return Err(e),
        };
        pipe.data = n;
        *consumed += n as u64;
        if let Err(e) = pump(pipe, dst, &mut moved, &mut tally) {
            if !unsupported(&e) {
                return Err(e);
            }
            // The destination cannot be spliced into: hand what the pipe
            // holds over by read/write before falling back.
            flush(pipe, dst, &mut moved, &mut tally)?;
            return Ok(fallback(moved));
        }
    }
}

/// Splices everything in `pipe` into the destination.
fn pump(pipe: &mut Pipe, dst: &Endpoint<'_>, total: &mut u64, tally: &mut Tally) -> io::Result<()> {
    let mut deadline = None;
    while pipe.data > 0 {
        match splice(pipe.read_fd(), dst.raw(), pipe.data, tally) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pipe.data -= n;
                *total += n as u64;
                tally.spliced += n as u64;
                // A new logical write: a fresh timeout budget.
                deadline = None;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                dst.wait(Interest::Write, &mut deadline)?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the bytes left in `pipe` and writes them to the destination.
fn flush(
    pipe: &mut Pipe,
    dst: &Endpoint<'_>,
    total: &mut u64,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut buf = vec![0u8; pipe.data.min(64 * 1024)];
    while pipe.data > 0 {
        let want = pipe.data.min(buf.len());
        // SAFETY: `buf` is valid for writes of `want` bytes; the pipe's
        // read end is open.
        let n = unsafe { libc::read(pipe.read_fd(), buf.as_mut_ptr().cast(), want) };
        if n < 0 {
            let e = last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            // Cannot happen: the pipe holds `data` bytes and we own both
            // ends.
            return Err(io::Error::other("greenrt: splice pipe lost data"));
        }
        let n = n as usize;
        dst.write_all(&buf[..n])?;
        pipe.data -= n;
        *total += n as u64;
        tally.copied += n as u64;
    }
    Ok(())
}

/// splice(2) of up to `len` bytes, non-blocking on the pipe side.
fn splice(from: libc::c_int, to: libc::c_int, len: usize, tally: &mut Tally) -> io::Result<usize> {
    tally.calls += 1;
    // SAFETY: both fds are open for the duration of the call; null offsets
    // (neither end is read at an explicit position).
    let n = unsafe {
        libc::splice(
            from,
            ptr::null_mut(),
            to,
            ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// "These fds cannot be spliced" (or splice does not exist here).
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

fn fallback(moved: u64) -> Burst {
    FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Burst::Unsupported(moved)
}

/// The pipe a copy holds, if any; back to the pool on drop.
struct PipeSlot(Option<Pipe>);

impl PipeSlot {
    /// The held pipe, taking one from the pool if none is held. No pipe
    /// (EMFILE, ENFILE, ENOMEM) means the copy falls back to read/write
    /// rather than failing.
    fn get(&mut self) -> io::Result<&mut Pipe> {
        if self.0.is_none() {
            self.0 = Some(pipe::get()?);
        }
        Ok(self.0.as_mut().expect("just filled"))
    }
}

impl Drop for PipeSlot {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            pipe::put(p);
        }
    }
}

#[cfg(test)]
mod tests;
