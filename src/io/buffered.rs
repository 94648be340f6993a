//! The read/write copy loop for any `Read`/`Write` pair (types that are
//! not greenrt stream sockets).

use std::io::{self, ErrorKind, Read, Write};

use crate::splice::counters::Tally;

/// std's `io::copy` with a buffer of `buf_size` bytes (at least 1), and
/// counted.
pub(crate) fn copy_generic<R, W>(reader: &mut R, writer: &mut W, buf_size: usize) -> io::Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    copy_through(reader, writer, &mut vec![0u8; buf_size.max(1)], false)
}

/// The copy loop through `buf` (not empty). With `short_is_eof`, a read
/// shorter than `buf` ends the copy: for O_DIRECT files, where only end
/// of file (or a `Take`'s limit) makes a read short, and where one more
/// read would start at an unaligned end of file and fail.
pub(crate) fn copy_through<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut [u8],
    short_is_eof: bool,
) -> io::Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let mut tally = Tally::default();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(tally.copied),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        tally.copied += n as u64;
        if short_is_eof && n < buf.len() {
            return Ok(tally.copied);
        }
    }
}
