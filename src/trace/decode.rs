//! From raw records to a [`Trace`]: dating them, pairing each P's starts
//! and stops into slices, and turning the rest into events.

use std::collections::HashMap;
use std::time::Duration;

use super::model::{BlockReason, Event, EventKind, Lane, Slice, StopReason};
use super::record::{stop_code, ticks, Kind, Record, SwitchArg, Word3, NO_P};
use super::Trace;

/// When and how a session began.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) tsc0: u64,
    /// CLOCK_MONOTONIC (ns) at `tsc0`.
    pub(crate) mono0: u64,
    /// A flight recorder keeping this much.
    pub(crate) flight: Option<Duration>,
    /// Records the runtime had dropped before (to count this session's).
    pub(crate) dropped0: u64,
}

/// When it ended: the second calibration point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct End {
    tsc1: u64,
    mono1: u64,
}

impl End {
    pub(crate) fn now() -> End {
        End {
            tsc1: ticks(),
            mono1: crate::sys::clock::now(),
        }
    }
}

/// What one runtime recorded: records tagged with the M that wrote them
/// (None: sysmon or another thread).
pub(crate) struct RawRt {
    pub(crate) workers: usize,
    pub(crate) records: Vec<(Option<usize>, Record)>,
    pub(crate) names: HashMap<u64, String>,
    pub(crate) dropped: u64,
}

pub(crate) struct Raw {
    pub(crate) span: Span,
    pub(crate) end: End,
    pub(crate) rts: Vec<RawRt>,
}

fn stop_reason(code: u64) -> StopReason {
    match code {
        stop_code::PREEMPTED => StopReason::Preempted,
        stop_code::YIELD => StopReason::Yield,
        stop_code::EXIT => StopReason::Exit,
        stop_code::CANCELLED => StopReason::Cancelled,
        stop_code::SYSCALL => StopReason::Syscall,
        c => StopReason::Blocked(block_reason_of(c.wrapping_sub(stop_code::BLOCKED))),
    }
}

/// A block reason's code in a Stop record (after `stop_code::BLOCKED`).
pub(crate) fn block_code(r: BlockReason) -> u64 {
    match r {
        BlockReason::Channel => 0,
        BlockReason::Lock => 1,
        BlockReason::Socket => 2,
        BlockReason::File => 3,
        BlockReason::Timer => 4,
        BlockReason::Join => 5,
        BlockReason::Other => 6,
    }
}

fn block_reason_of(c: u64) -> BlockReason {
    match c {
        0 => BlockReason::Channel,
        1 => BlockReason::Lock,
        2 => BlockReason::Socket,
        3 => BlockReason::File,
        4 => BlockReason::Timer,
        5 => BlockReason::Join,
        _ => BlockReason::Other,
    }
}

/// A start or stop on one lane, ordered by the P's sequence number.
struct Mark {
    seq: u32,
    at: Duration,
    start: bool,
    g: u64,
    m: usize,
    arg: u64,
}

/// Where a runtime's number goes in the ids of its green threads in a
/// trace of several runtimes.
pub(crate) const GID_RUNTIME_SHIFT: u32 = 48;

pub(crate) fn decode(raw: Raw) -> Trace {
    let Raw { span, end, rts } = raw;
    let ticks_total = end.tsc1.saturating_sub(span.tsc0).max(1);
    let ns_per_tick = end.mono1.saturating_sub(span.mono0) as f64 / ticks_total as f64;
    // A flight recorder keeps its window before the end.
    let first = match span.flight {
        Some(w) => {
            let window = (w.as_nanos() as f64 / ns_per_tick.max(f64::MIN_POSITIVE)) as u64;
            span.tsc0.max(end.tsc1.saturating_sub(window))
        }
        None => span.tsc0,
    };
    let duration =
        Duration::from_nanos(((end.tsc1 - first.min(end.tsc1)) as f64 * ns_per_tick) as u64);
    let at = |ts: u64| -> Duration {
        let d = Duration::from_nanos((ts.saturating_sub(first) as f64 * ns_per_tick) as u64);
        d.min(duration)
    };
    let several = rts.len() > 1;
    let mut trace = Trace {
        pid: std::process::id(),
        duration,
        ..Trace::default()
    };
    for (k, rt) in rts.into_iter().enumerate() {
        let base = trace.lanes.len();
        for p in 0..rt.workers {
            trace.lanes.push(Lane {
                name: if several {
                    format!("rt{k} P{p}")
                } else {
                    format!("P{p}")
                },
                runtime: k,
                p,
            });
        }
        trace.dropped += rt.dropped;
        // Green thread ids are per runtime: past the first, a runtime's
        // are offset so that they stay apart (see `Trace::name`).
        let off = (k as u64) << GID_RUNTIME_SHIFT;
        trace
            .names
            .extend(rt.names.into_iter().map(|(g, n)| (g + off, n)));
        let mut marks: Vec<Vec<Mark>> = (0..rt.workers).map(|_| Vec::new()).collect();
        for (m, r) in rt.records {
            let [ts, g, arg, w3] = r;
            let g = g + off;
            if ts < first || ts > end.tsc1 {
                continue;
            }
            let (Some(kind), p, seq) = Word3::unpack(w3) else {
                continue;
            };
            let lane = (p != NO_P && usize::from(p) < rt.workers).then(|| base + usize::from(p));
            let ev = |kind| Event {
                at: at(ts),
                lane,
                kind,
            };
            let some_g = |v: u64| v.checked_sub(1).map(|v| v + off);
            match kind {
                Kind::Start | Kind::Stop => {
                    if let Some(lane) = lane {
                        marks[lane - base].push(Mark {
                            seq,
                            at: at(ts),
                            start: kind == Kind::Start,
                            g,
                            m: m.unwrap_or(usize::MAX),
                            arg,
                        });
                    }
                }
                Kind::Switch => {
                    if let Some(lane) = lane {
                        let (stopped, code) = SwitchArg::unpack(arg);
                        let mark = |seq, start, g, arg| Mark {
                            seq,
                            at: at(ts),
                            start,
                            g,
                            m: m.unwrap_or(usize::MAX),
                            arg,
                        };
                        let marks = &mut marks[lane - base];
                        marks.push(mark(seq, false, stopped + off, code));
                        marks.push(mark(seq.wrapping_add(1), true, g, 0));
                    }
                }
                Kind::Created => trace.events.push(ev(EventKind::Created {
                    g,
                    parent: some_g(arg),
                })),
                Kind::Runnable => trace
                    .events
                    .push(ev(EventKind::Runnable { g, by: some_g(arg) })),
                Kind::Handoff => {
                    if let Some(to) = m {
                        trace.events.push(ev(EventKind::Handoff {
                            from: arg.checked_sub(1).map(|f| f as usize),
                            to,
                        }))
                    }
                }
                Kind::Retake => trace.events.push(ev(EventKind::Retake { m: arg as usize })),
                Kind::SigUrg => trace
                    .events
                    .push(ev(EventKind::SigUrg { m: arg as usize, g })),
                Kind::Netpoll => trace
                    .events
                    .push(ev(EventKind::NetpollWake { count: arg as u32 })),
                Kind::Spinning => {
                    if let Some(m) = m {
                        trace.events.push(ev(EventKind::Spinning { m }))
                    }
                }
                Kind::Idle => {
                    if let Some(m) = m {
                        trace.events.push(ev(EventKind::Idle { m }))
                    }
                }
            }
        }
        for (i, mut lane) in marks.into_iter().enumerate() {
            lane.sort_by_key(|mk| mk.seq);
            pair(base + i, lane, duration, &mut trace.slices);
        }
    }
    trace.events.sort_by_key(|e| e.at);
    trace
}

/// Pairs one lane's starts and stops (in the P's order) into slices that
/// never overlap: each begins no earlier than the last one ended.
fn pair(lane: usize, marks: Vec<Mark>, duration: Duration, out: &mut Vec<Slice>) {
    let mut open: Option<(u64, usize, Duration)> = None;
    let mut last_end = Duration::ZERO;
    let mut first = true;
    for mk in marks {
        if mk.start {
            if let Some((g, m, start)) = open.take() {
                // Started again without a stop: the P was taken from an M
                // blocked in a system call (sysmon's retake), which
                // records nothing.
                let end = mk.at.max(start);
                out.push(slice(lane, m, g, start, end, StopReason::Syscall));
                last_end = end;
            }
            open = Some((mk.g, mk.m, mk.at.max(last_end)));
        } else {
            match open.take() {
                Some((g, m, start)) if g == mk.g => {
                    let end = mk.at.max(start);
                    out.push(slice(lane, m, g, start, end, stop_reason(mk.arg)));
                    last_end = end;
                }
                Some(other) => open = Some(other),
                // Running since before the recording (or its window).
                None if first => {
                    out.push(slice(
                        lane,
                        mk.m,
                        mk.g,
                        Duration::ZERO,
                        mk.at,
                        stop_reason(mk.arg),
                    ));
                    last_end = mk.at;
                }
                None => {}
            }
        }
        first = false;
    }
    if let Some((g, m, start)) = open {
        out.push(slice(
            lane,
            m,
            g,
            start,
            duration.max(start),
            StopReason::Running,
        ));
    }
}

fn slice(
    lane: usize,
    m: usize,
    g: u64,
    start: Duration,
    end: Duration,
    reason: StopReason,
) -> Slice {
    Slice {
        lane,
        m,
        g,
        start,
        end,
        reason,
    }
}
