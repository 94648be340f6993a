//! Copying between streams: [`copy`] and [`copy_bidirectional`], which
//! splice(2) between greenrt stream sockets and sendfile(2) from files to
//! them (bulk data never crosses user space), and use a buffered
//! read/write copy for everything else.
//!
//! ```no_run
//! use greenrt::net::{TcpListener, TcpStream};
//!
//! // A TCP proxy: every connection to :8080 is relayed to :80.
//! fn main() -> std::io::Result<()> {
//!     greenrt::run(|| -> std::io::Result<()> {
//!         let listener = TcpListener::bind("127.0.0.1:8080")?;
//!         loop {
//!             let (mut client, _) = listener.accept()?;
//!             greenrt::spawn(move || -> std::io::Result<(u64, u64)> {
//!                 let mut upstream = TcpStream::connect("127.0.0.1:80")?;
//!                 greenrt::io::copy_bidirectional(&mut client, &mut upstream)
//!             });
//!         }
//!     })
//! }
//! ```
//!
//! **Which path runs.** Rust has no specialisation, so the functions
//! look at the concrete type behind their type parameters (by `TypeId`
//! with lifetimes erased, so borrowed sockets count too; see
//! `recognise.rs`): when both sides are
//! [`net::TcpStream`](crate::net::TcpStream) or
//! [`os::unix::net::UnixStream`](crate::os::unix::net::UnixStream), or
//! `&`/`&mut` references to them, each burst of data is read into the
//! copy buffer first; a burst that fills the buffer goes on by splice
//! through a pooled pipe until the source runs dry, parking on the
//! netpoller while a socket is not ready. So small messages (requests,
//! responses) are copied, which is cheapest for them, and bulk data is
//! spliced but for its first buffer. When the source is a
//! [`Take`](std::io::Take) of such a socket (owned or borrowed), at most
//! its limit is moved, and nothing past it is read: the rest stays in
//! the socket for the next read (a proxy that parsed a head passes the
//! body on so); a limit larger than the copy buffer is spliced all the
//! way, a smaller one copied, and the limit shrinks by the bytes taken,
//! also when the copy fails. When the source is a file —
//! [`fs::File`](crate::fs::File) or [`std::fs::File`], or a `Take` of
//! either — and the destination such a socket, the file goes by
//! sendfile(2) from its file position, which ends after the bytes sent
//! as after a read loop (a `Take`'s limit shrinks by them); the worker
//! parks while the socket is full, and hands its P on while a chunk
//! whose pages are not cached is read from disk. Files opened with
//! O_DIRECT are read directly instead, with a buffer, so they stay out
//! of the page cache. Anything else — `Vec`s, `Cursor`s, std's
//! (blocking) sockets, wrappers such as `BufReader` — gets a plain
//! buffered copy ([`DEFAULT_BUF_SIZE`] unless told otherwise). If the
//! kernel refuses to splice or sendfile (EINVAL/ENOSYS) the copy
//! switches to read/write without losing a byte. [`CopyMode::Buffered`]
//! never splices (to compare, or to work around a kernel). [`stats`]
//! tells which path ran.
//!
//! Socket timeouts set with `set_read_timeout`/`set_write_timeout` bound
//! each wait as they bound each read and write (an expired one is a
//! `WouldBlock` error). A handle put in non-blocking mode is still waited
//! on: a copy always runs to the end of the stream or an error.

mod bidi;
mod buffered;
mod file;
mod recognise;
mod relay;
pub(crate) mod stats;
mod take;

use std::any::Any;
use std::io::{self, Read, Write};

pub use stats::CopyStats;

use crate::splice::{pipe, Endpoint};

/// The buffer size of buffered copies unless [`CopyOptions::buffer_size`]
/// says otherwise (as std's `io::copy`).
pub const DEFAULT_BUF_SIZE: usize = 8 * 1024;

/// The most idle pipes the splice pipe pool keeps (two fds each); a pipe
/// given back to a full pool is closed. Pipes in use by copies are not
/// limited: each direction of a copy holds one while it has bytes in
/// flight, and none while its source is idle.
pub const MAX_POOLED_PIPES: usize = pipe::MAX_POOLED;

/// How [`copy_with`] and [`copy_bidirectional_with`] move bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CopyMode {
    /// Between greenrt stream sockets, splice(2) what is left of a burst
    /// after the first buffer; from a file to one, sendfile(2); a
    /// buffered copy for other types or when the kernel cannot splice
    /// (the default).
    #[default]
    Splice,
    /// Always a buffered read/write copy (no splice, no sendfile).
    Buffered,
}

/// Options for [`copy_with`] and [`copy_bidirectional_with`].
///
/// ```
/// use greenrt::io::{CopyMode, CopyOptions};
/// let opts = CopyOptions::new().mode(CopyMode::Buffered).buffer_size(1024);
/// assert_eq!(opts.get_buffer_size(), 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    mode: CopyMode,
    buffer_size: usize,
}

impl CopyOptions {
    /// Splice where possible; buffered copies use [`DEFAULT_BUF_SIZE`].
    pub const fn new() -> CopyOptions {
        CopyOptions {
            mode: CopyMode::Splice,
            buffer_size: DEFAULT_BUF_SIZE,
        }
    }

    /// Sets the mode.
    pub const fn mode(mut self, mode: CopyMode) -> CopyOptions {
        self.mode = mode;
        self
    }

    /// Sets the copy buffer's size (one buffer per direction; 0 counts as
    /// 1). In splice mode it is also the threshold: a burst that fills it
    /// is spliced onwards, up to a pipe's capacity (1 MiB where the kernel
    /// allows) per call. A copy from an O_DIRECT file reads into a
    /// buffer of at least 1 MiB (each of its reads goes to the device),
    /// aligned as the file requires.
    pub const fn buffer_size(mut self, bytes: usize) -> CopyOptions {
        self.buffer_size = bytes;
        self
    }

    /// The mode.
    pub const fn get_mode(&self) -> CopyMode {
        self.mode
    }

    /// The buffer size.
    pub const fn get_buffer_size(&self) -> usize {
        self.buffer_size
    }
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions::new()
    }
}

/// Copies everything `reader` yields into `writer`, until end of stream;
/// returns the byte count. Like `std::io::copy`, but between two greenrt
/// stream sockets it splices, and from a file to one it uses sendfile
/// (see the [module docs](self)); works on green threads (parking only
/// the caller) and on OS threads.
///
/// The sockets are recognised owned or borrowed (`TcpStream`,
/// `&TcpStream`, `&mut TcpStream`, the same for `UnixStream`), and as
/// the source also in a [`Take`](std::io::Take) of any of those, which
/// splices at most its limit (see the [module docs](self)). Any other
/// type is copied with a buffer.
///
/// On error, bytes already written stay written, as with std.
pub fn copy<R, W>(reader: &mut R, writer: &mut W) -> io::Result<u64>
where
    R: Read,
    W: Write,
{
    copy_with(reader, writer, CopyOptions::new())
}

/// [`copy`] with options (e.g. [`CopyMode::Buffered`] or a buffer size).
pub fn copy_with<R, W>(reader: &mut R, writer: &mut W, opts: CopyOptions) -> io::Result<u64>
where
    R: Read,
    W: Write,
{
    let mut sent = 0;
    let dst = recognise::endpoint(&*writer)?;
    if let Some(dst) = &dst {
        if let Some(src) = recognise::endpoint(&*reader)? {
            return copy_sockets(&src, dst, opts);
        }
        if let Some(r) = take::copy_from_take(reader, dst, opts) {
            return r;
        }
        if let Some(file) = file_source(reader) {
            match file::send(file, dst, opts)? {
                file::Outcome::NotAFile => {}
                file::Outcome::Done(n) => return Ok(n),
                file::Outcome::Refused(n) => sent = n,
            }
        }
    }
    // The rest reads and writes through std's traits, except that a
    // greenrt socket on either side goes through its endpoint, which
    // waits for readiness in non-blocking mode too (the module docs'
    // promise; the socket's own `read` and `write` would say WouldBlock).
    let mut dst_io;
    let writer: &mut dyn Write = match dst {
        Some(d) => {
            dst_io = EndpointIo(d);
            &mut dst_io
        }
        None => writer,
    };
    if let Some(file) = file_source(reader) {
        if let Some(r) = file::copy_direct(file, writer, opts.buffer_size) {
            return r;
        }
    }
    if let Some(r) = take::copy_take_to(reader, writer, opts.buffer_size) {
        return r.map(|n| sent + n);
    }
    let src = recognise::endpoint(&*reader)?;
    let mut src_io;
    let reader: &mut dyn Read = match src {
        Some(s) => {
            src_io = EndpointIo(s);
            &mut src_io
        }
        None => reader,
    };
    Ok(sent + buffered::copy_generic(reader, writer, opts.buffer_size)?)
}

/// A greenrt stream socket read or written through its [`Endpoint`].
struct EndpointIo<'a>(Endpoint<'a>);

impl Read for EndpointIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf, false)
    }
}

impl Write for EndpointIo<'_> {
    /// All of `buf` (the copy loop writes all of each read anyway).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `reader` as `Any` if it is one of the file types `file` knows (a
/// greenrt or std file, or a `Take` of one).
fn file_source<R>(reader: &mut R) -> Option<&mut dyn Any> {
    use recognise::downcast_mut;
    use std::io::Take;
    macro_rules! files {
        ($($t:ty),*) => {$(
            if downcast_mut::<$t, R>(reader).is_some() {
                return downcast_mut::<$t, R>(reader).map(|f| f as &mut dyn Any);
            }
        )*};
    }
    files!(
        crate::fs::File,
        std::fs::File,
        Take<crate::fs::File>,
        Take<std::fs::File>
    );
    None
}

/// Relays between two greenrt stream sockets in both directions at once
/// until both directions have ended; returns (bytes a → b, bytes b → a).
///
/// When one direction reaches end of stream, the write half of its
/// destination is shut down, so that peer sees end of stream too (TCP
/// half-close), and the other direction goes on. If either direction
/// fails (e.g. a connection reset), both sockets are shut down entirely,
/// so the other direction ends as well, and the first error is returned.
/// The sockets stay open; dropping them closes them, then with a reset
/// (`SO_LINGER` 0): after a failure each peer learns at once that the
/// connection is gone, rather than wait on a half-closed socket (a peer
/// blocked sending into it would otherwise wait up to the kernel's
/// `tcp_fin_timeout`, 60 s).
///
/// From a green thread, one direction runs on a helper green thread; from
/// an OS thread, on a scoped helper OS thread.
///
/// `A` and `B` must be [`net::TcpStream`](crate::net::TcpStream) or
/// [`os::unix::net::UnixStream`](crate::os::unix::net::UnixStream), or
/// `&` or `&mut` references to them (in any combination). For any other type this returns an
/// [`Unsupported`](io::ErrorKind::Unsupported) error: one `&mut` object
/// cannot be read and written concurrently without knowing that it is a
/// full-duplex socket.
pub fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: Read + Write,
    B: Read + Write,
{
    copy_bidirectional_with(a, b, CopyOptions::new())
}

/// [`copy_bidirectional`] with options.
pub fn copy_bidirectional_with<A, B>(
    a: &mut A,
    b: &mut B,
    opts: CopyOptions,
) -> io::Result<(u64, u64)>
where
    A: Read + Write,
    B: Read + Write,
{
    match (recognise::endpoint(&*a)?, recognise::endpoint(&*b)?) {
        (Some(a), Some(b)) => bidi::bidirectional(a, b, opts),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "greenrt::io::copy_bidirectional needs greenrt::net::TcpStream or \
             greenrt::os::unix::net::UnixStream on both sides (one object of another type \
             cannot be read and written at the same time)",
        )),
    }
}

/// The copy counters (process-wide, cumulative): bytes spliced and copied,
/// splice and sendfile calls, fallbacks, pipes created and closed, idle
/// pipes pooled.
pub fn stats() -> CopyStats {
    stats::snapshot()
}

/// Closes every idle pipe in the splice pipe pool and returns how many.
/// The pool keeps at most a few dozen pipes (two fds each) for reuse; call
/// this to give them back, e.g. after a burst of connections or before
/// counting open fds.
pub fn clear_pipe_pool() -> usize {
    pipe::clear()
}

/// Copies between two endpoints as `opts` say.
pub(crate) fn copy_sockets(
    src: &Endpoint<'_>,
    dst: &Endpoint<'_>,
    opts: CopyOptions,
) -> io::Result<u64> {
    relay::relay(src, dst, opts.buffer_size, zero_copy(opts))
}

/// May a copy with `opts` splice or sendfile? Not in buffered mode, nor
/// where SIGPIPE is at its default action (counted as a fallback).
fn zero_copy(opts: CopyOptions) -> bool {
    if opts.mode != CopyMode::Splice {
        return false;
    }
    if sigpipe_default() {
        crate::splice::counters::FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return false;
    }
    true
}

/// Is SIGPIPE at its default action (terminate)? splice(2) or sendfile(2)
/// into a socket whose peer has gone raises SIGPIPE (neither has
/// MSG_NOSIGNAL).
/// Rust programs ignore SIGPIPE unless told otherwise, so this is rare;
/// where it is the default, copies use send(MSG_NOSIGNAL) instead.
fn sigpipe_default() -> bool {
    // SAFETY: sigaction is integers, a sigset and a handler address;
    // all-zero is a valid value for each (SIG_DFL, no flags, empty mask).
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // libc, not nix: nix's sigaction always installs, it cannot only query.
    // SAFETY: a null new action makes this a pure query that changes no
    // disposition; `old` is a valid, writable sigaction.
    let queried = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } == 0;
    queried && old.sa_sigaction == libc::SIG_DFL
}
