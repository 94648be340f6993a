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
    let mut tally = Tally::default();
    let mut buf = vec![0u8; buf_size.max(1)];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(tally.copied),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        tally.copied += n as u64;
    }
}
