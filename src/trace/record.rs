//! The compact binary record every traced event is written as, and the
//! clock that dates it.
//!
//! A record is four words: the timestamp (TSC ticks), the green thread,
//! an argument, and a packed word holding the kind, the P and the P's
//! sequence number (see [`Word3`]). Writers store them with plain
//! (relaxed) atomic stores: no allocation, no lock, a few instructions.

/// One record, as written into a ring slot.
pub(crate) type Record = [u64; 4];

/// What a record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A green thread started (or resumed) running on a P.
    Start = 1,
    /// It stopped running; the argument is a [`stop_code`].
    Stop,
    /// A green thread was created; argument: the parent's id + 1, or 0.
    Created,
    /// A green thread was made runnable; argument: the waker's id + 1, or 0.
    Runnable,
    /// The writing M took a P; argument: the M that held it before (its
    /// handle's address), or 0.
    Handoff,
    /// The writing M took a P retaken from a blocked M (argument: that
    /// M's handle).
    Retake,
    /// sysmon signalled an M (argument: its handle) running green thread `g`.
    SigUrg,
    /// A poll made `argument` green threads runnable.
    Netpoll,
    /// The writing M started spinning.
    Spinning,
    /// The writing M found no work and went idle.
    Idle,
    /// A direct switch on a P: green thread `g` started where the one
    /// in the argument (a [`SwitchArg`]) stopped; the P's sequence
    /// number is the stop's, the start's is the next one.
    Switch,
}

impl Kind {
    pub(crate) fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Start,
            2 => Kind::Stop,
            3 => Kind::Created,
            4 => Kind::Runnable,
            5 => Kind::Handoff,
            6 => Kind::Retake,
            7 => Kind::SigUrg,
            8 => Kind::Netpoll,
            9 => Kind::Spinning,
            10 => Kind::Idle,
            11 => Kind::Switch,
            _ => return None,
        })
    }
}

/// "No P" in a record's P field.
pub(crate) const NO_P: u16 = u16::MAX;

/// The packed fourth word: kind (bits 0–7), P (8–23), the P's sequence
/// number (24–55; a wrap's carry lands in the unused top bits). The
/// sequence number orders a P's starts and stops even when they were
/// written by different Ms whose clocks disagree by a few ticks (only
/// the P's owner writes them, and ownership passes with
/// release/acquire). Stepping it is an add of a 32-bit immediate on the
/// switch path.
pub(crate) struct Word3;

impl Word3 {
    #[inline(always)]
    pub(crate) fn pack(kind: Kind, p: u16, seq: u32) -> u64 {
        Word3::pack_mark(p, seq) | kind as u64
    }

    /// A P's mark before its first record: its P field, sequence 0
    /// (see `P::trace_mark`). Starts and stops pack their word by
    /// adding one to the mark's sequence and the kind, fewer
    /// instructions than packing three fields on every switch.
    pub(crate) fn first_mark(p: u16) -> u64 {
        Word3::pack_mark(p, 0)
    }

    /// `mark` with its sequence number one on (wrapping as a `u32`
    /// would, once read back by `unpack`).
    #[inline(always)]
    pub(crate) fn next_mark(mark: u64) -> u64 {
        mark.wrapping_add(1 << 24)
    }

    /// The word for a record of `kind` at `mark`. An add, not an or (a
    /// mark's kind bits are zero): the compiler folds it with the
    /// sequence step into one `lea`.
    #[inline(always)]
    pub(crate) fn with_mark(kind: Kind, mark: u64) -> u64 {
        debug_assert_eq!(mark & 0xff, 0, "a mark with kind bits");
        mark.wrapping_add(kind as u64)
    }

    fn pack_mark(p: u16, seq: u32) -> u64 {
        (u64::from(p) << 8) | (u64::from(seq) << 24)
    }

    pub(crate) fn unpack(w: u64) -> (Option<Kind>, u16, u32) {
        (Kind::from_u8(w as u8), (w >> 8) as u16, (w >> 24) as u32)
    }
}

/// A Switch record's argument: the stopping green thread's id (bits
/// 8–63) and its stop code (bits 0–7).
pub(crate) struct SwitchArg;

impl SwitchArg {
    #[inline(always)]
    pub(crate) fn pack(stopped: u64, code: u64) -> u64 {
        debug_assert!(code < 256 && stopped < 1 << 56);
        (stopped << 8) | code
    }

    pub(crate) fn unpack(arg: u64) -> (u64, u64) {
        (arg >> 8, arg & 0xff)
    }
}

/// Stop codes (a Stop record's argument).
pub(crate) mod stop_code {
    pub(crate) const PREEMPTED: u64 = 0;
    pub(crate) const YIELD: u64 = 1;
    pub(crate) const EXIT: u64 = 2;
    pub(crate) const CANCELLED: u64 = 3;
    pub(crate) const SYSCALL: u64 = 4;
    /// Blocked: this plus the block reason's code.
    pub(crate) const BLOCKED: u64 = 16;
}

/// The timestamp counter: a few cycles to read, against about 20 ns for
/// `clock_gettime`, which on `yield_many` would cost more than the switch
/// it dates. Calibrated against CLOCK_MONOTONIC at the recording's start
/// and stop (Go's `cputicks`); the kernel's own clock relies on the same
/// constant, synchronised TSC.
#[inline(always)]
pub(crate) fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64 (user mode may
        // read it unless the kernel disabled it, which Linux does not).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::sys::clock::now()
    }
}
