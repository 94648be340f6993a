//! A file operation as the ring's submission entry.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

/// Largest single transfer (Linux's MAX_RW_COUNT, page-aligned).
pub(crate) const MAX_LEN: usize = 0x7fff_f000;

/// A file operation for the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// Read `len` bytes at `ptr` from `offset` (-1: the file position).
    Read {
        fd: RawFd,
        ptr: *mut u8,
        len: usize,
        offset: i64,
        flags: i32,
    },
    /// Write `len` bytes at `ptr` to `offset` (-1: the file position).
    Write {
        fd: RawFd,
        ptr: *const u8,
        len: usize,
        offset: i64,
        flags: i32,
    },
    /// fsync, or fdatasync when `data_only`.
    Fsync { fd: RawFd, data_only: bool },
}

impl Op {
    pub(super) fn entry(self, user_data: u64) -> squeue::Entry {
        let e = match self {
            Op::Read {
                fd,
                ptr,
                len,
                offset,
                flags,
            } => opcode::Read::new(types::Fd(fd), ptr, len.min(MAX_LEN) as u32)
                .offset(offset as u64)
                .rw_flags(flags)
                .build(),
            Op::Write {
                fd,
                ptr,
                len,
                offset,
                flags,
            } => opcode::Write::new(types::Fd(fd), ptr, len.min(MAX_LEN) as u32)
                .offset(offset as u64)
                .rw_flags(flags)
                .build(),
            Op::Fsync { fd, data_only } => {
                let flags = if data_only {
                    types::FsyncFlags::DATASYNC
                } else {
                    types::FsyncFlags::empty()
                };
                opcode::Fsync::new(types::Fd(fd)).flags(flags).build()
            }
        };
        e.user_data(user_data)
    }
}
