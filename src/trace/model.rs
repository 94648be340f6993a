//! What a finished recording holds: runs of green threads on Ps
//! ([`Slice`]) and the scheduler's other events ([`Event`]), decoded from
//! the per-thread buffers and put in order. [`Trace::write_json`] and
//! [`Trace::write_svg`] draw from this, and so can a user's own tools.

use std::collections::HashMap;
use std::time::Duration;

/// Why a run of a green thread on a P ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// sysmon preempted it (SIGURG) at the end of its quantum.
    Preempted,
    /// It called `yield_now`.
    Yield,
    /// It parked, waiting for what the [`BlockReason`] says.
    Blocked(BlockReason),
    /// Its closure returned (or panicked).
    Exit,
    /// It unwound with [`crate::Cancelled`] at shutdown.
    Cancelled,
    /// It was still running when the recording stopped.
    Running,
    /// Its M blocked in a system call and the P went on without it
    /// (a blocking section handed it on, or sysmon retook it).
    Syscall,
}

/// What a blocked green thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockReason {
    /// A channel send or receive (`sync::mpsc`).
    Channel,
    /// `sync::Mutex`, `Condvar` or `WaitGroup`.
    Lock,
    /// A socket or other pollable fd (the netpoller).
    Socket,
    /// A file operation (io_uring).
    File,
    /// `sleep` or a timeout.
    Timer,
    /// `JoinHandle::join`.
    Join,
    /// Anything else that parks.
    Other,
}

impl StopReason {
    /// The reason as the JSON's `"end"` argument: `"preempted"`,
    /// `"yield"`, `"blocked"`, `"exit"`, `"cancelled"`, `"running"` or
    /// `"syscall"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Preempted => "preempted",
            StopReason::Yield => "yield",
            StopReason::Blocked(_) => "blocked",
            StopReason::Exit => "exit",
            StopReason::Cancelled => "cancelled",
            StopReason::Running => "running",
            StopReason::Syscall => "syscall",
        }
    }
}

impl BlockReason {
    /// `"channel"`, `"lock"`, `"socket"`, `"file"`, `"timer"`, `"join"`
    /// or `"other"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BlockReason::Channel => "channel",
            BlockReason::Lock => "lock",
            BlockReason::Socket => "socket",
            BlockReason::File => "file",
            BlockReason::Timer => "timer",
            BlockReason::Join => "join",
            BlockReason::Other => "other",
        }
    }
}

/// One run of a green thread on a P: from when an M switched into it to
/// when it switched out (or the recording ended). Slices of one lane
/// never overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The lane: the P's index in the trace (see [`Trace::lanes`]).
    pub lane: usize,
    /// The M (OS thread, numbered from 0 per runtime) that held the P.
    pub m: usize,
    /// The green thread's id (see [`Trace::name`] for several runtimes).
    pub g: u64,
    /// Start, from the start of the recording.
    pub start: Duration,
    /// End, from the start of the recording (`>= start`).
    pub end: Duration,
    /// Why it ended.
    pub reason: StopReason,
}

/// A scheduler event other than a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// Green thread `g` was spawned (by `parent`, if a green thread).
    Created {
        /// The new green thread.
        g: u64,
        /// The spawning green thread.
        parent: Option<u64>,
    },
    /// Green thread `g` was made runnable (by green thread `by`, or by
    /// the scheduler: a timer, the netpoller, a preemption hand-back).
    Runnable {
        /// The woken green thread.
        g: u64,
        /// The green thread that woke it.
        by: Option<u64>,
    },
    /// M `to` took the P (handed over, or from the idle list).
    Handoff {
        /// The M that held the P before (None: none had, while recording).
        from: Option<usize>,
        /// The M that took it.
        to: usize,
    },
    /// The P was retaken from M `m`, blocked in a system call or where it
    /// may not be preempted (sysmon asked, the M's signal handler handed
    /// the P on); recorded by the M that took the P.
    Retake {
        /// The blocked M.
        m: usize,
    },
    /// sysmon sent SIGURG to M `m` to preempt green thread `g`.
    SigUrg {
        /// The signalled M.
        m: usize,
        /// The green thread it was running.
        g: u64,
    },
    /// A netpoll made `count` green threads runnable.
    NetpollWake {
        /// How many.
        count: u32,
    },
    /// M `m` started spinning (looking for work to steal).
    Spinning {
        /// The M.
        m: usize,
    },
    /// M `m` found no work and went idle.
    Idle {
        /// The M.
        m: usize,
    },
}

/// A scheduler event at one time, on one lane if it belongs to a P.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, from the start of the recording.
    pub at: Duration,
    /// The P's lane, if the event happened on one.
    pub lane: Option<usize>,
    /// What happened.
    pub kind: EventKind,
}

/// A P's lane in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    /// `"P0"`, `"P1"`, …; `"rt1 P0"`, … when the recording spans several
    /// runtimes.
    pub name: String,
    /// Which runtime recorded it (0, 1, … in the order they were seen).
    pub runtime: usize,
    /// The P's index in its runtime.
    pub p: usize,
}

/// A finished recording (from [`crate::trace::stop`], or written on a
/// runtime's drop when `GREENRT_TRACE` is set).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub(crate) pid: u32,
    pub(crate) duration: Duration,
    pub(crate) lanes: Vec<Lane>,
    /// Sorted by lane, then start.
    pub(crate) slices: Vec<Slice>,
    /// Sorted by time.
    pub(crate) events: Vec<Event>,
    pub(crate) names: HashMap<u64, String>,
    pub(crate) dropped: u64,
}

impl Trace {
    /// The recording's length.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// One lane per P, in order (a slice's `lane` indexes this).
    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    /// Every run of a green thread, by lane, then by start.
    pub fn slices(&self) -> &[Slice] {
        &self.slices
    }

    /// The other events, by time.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The name given to green thread `g` (`task::Builder::name`), if any.
    ///
    /// Ids are those of [`crate::JoinHandle::id`]. They are numbered per
    /// runtime, so in a trace of several runtimes those of the runtime
    /// that [`Lane::runtime`] numbers `k` are offset by `k << 48`.
    pub fn name(&self, g: u64) -> Option<&str> {
        self.names.get(&g).map(String::as_str)
    }

    /// The label of green thread `g`: its name, or `g<id>`.
    pub fn label(&self, g: u64) -> String {
        self.name(g).map_or_else(|| format!("g{g}"), str::to_owned)
    }

    /// Records lost because a ring was full (0 unless the recording
    /// outran the rings; a flight recorder drops old records on purpose
    /// and does not count them).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
