//! Recording sessions: which runtimes record, since when, and collecting
//! their buffers into a [`Trace`] at the end.
//!
//! Three kinds of session can cover a runtime, each independently:
//! `trace::start` called on one of its green threads (local), the
//! process-wide one (`trace::start` off any green thread: every runtime,
//! those built later too), and `GREENRT_TRACE` (from build to drop).
//! A runtime records while any covers it. Collection does not consume
//! the current buffers, only reads them, and keeps records by time, so
//! overlapping sessions each get their own span. Lock order: `GLOBAL`,
//! then a runtime's `state`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::decode::{self, Raw, RawRt, Span};
use super::record::{ticks, Kind, Record, Word3};
use super::ring::{Buf, Retired, Writer};
use super::Trace;
use crate::scheduler::Shared;

/// Not recording.
pub(crate) const MODE_OFF: u8 = 0;
/// Recording.
pub(crate) const MODE_ON: u8 = 1;
/// Recording as a flight recorder.
pub(crate) const MODE_FLIGHT: u8 = 2;

/// A runtime's recording state (in `Shared`).
#[derive(Default)]
pub(crate) struct RtTrace {
    /// [`MODE_OFF`], [`MODE_ON`] or [`MODE_FLIGHT`] (rings overwrite
    /// rather than hand off: every session covering the runtime is a
    /// flight recorder). One byte, so the hot path's check and the
    /// record's ring mode are one load.
    pub(crate) mode: AtomicU8,
    pub(crate) retired: Retired,
    /// sysmon's own writer (sysmon may neither lock nor allocate).
    pub(crate) sysmon: Writer,
    /// For every other thread (the errand thread, other runtimes' Ms,
    /// plain threads waking green threads), under a lock.
    other: Mutex<Writer>,
    /// Names of green threads created while recording.
    names: Mutex<HashMap<u64, String>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    local: Option<Span>,
    /// The `GREENRT_TRACE` session and its paths.
    env: Option<(Span, String)>,
    /// Enrolled in the process-wide session (its span, with this
    /// runtime's dropped count at enrolment).
    global: Option<Span>,
    /// Retired buffers, owned until no session needs them (boxed: see
    /// `Retired::take_all`).
    #[allow(clippy::vec_box)]
    kept: Vec<Box<Buf>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RtTrace {
    /// Appends a record from a thread that is none of this runtime's Ms
    /// nor its sysmon.
    pub(crate) fn push_other(&self, rec: Record) {
        let w = lock(&self.other);
        // SAFETY: the lock makes us its only writer.
        unsafe { w.push(rec, self.flight(), &self.retired) };
    }

    /// Appends a record from sysmon.
    pub(crate) fn push_sysmon(&self, rec: Record) {
        // SAFETY: sysmon is this writer's only thread; it is never
        // interrupted by a push of its own (no handler pushes).
        unsafe { self.sysmon.push(rec, self.flight(), &self.retired) };
    }

    /// Remembers a green thread's name (called at spawn while recording).
    pub(crate) fn name(&self, g: u64, name: &str) {
        lock(&self.names).insert(g, name.to_owned());
    }

    fn update(&self, st: &State) {
        let spans = [
            st.local.map(|s| s.flight),
            st.env.as_ref().map(|e| e.0.flight),
            st.global.map(|s| s.flight),
        ];
        let on = spans.iter().any(Option::is_some);
        let flight = on && spans.iter().flatten().all(Option::is_some);
        let mode = match (on, flight) {
            (false, _) => MODE_OFF,
            (true, false) => MODE_ON,
            (true, true) => MODE_FLIGHT,
        };
        self.mode.store(mode, Ordering::Release);
    }

    /// Whether recording.
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.mode.load(Ordering::Relaxed) != MODE_OFF
    }

    /// Whether the rings are a flight recorder's.
    #[inline(always)]
    pub(crate) fn flight(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == MODE_FLIGHT
    }
}

/// Gives every writer of `rt` buffers (called as a session starts; the
/// Ms refill their own as they go).
fn refill_all(rt: &Shared) {
    rt.for_each_m(|m| m.trace.refill());
    rt.trace.sysmon.refill();
    lock(&rt.trace.other).refill();
}

/// Gives every writer buffers, then publishes the session state `st`
/// (recording on), then gives buffers to Ms listed meanwhile.
///
/// The second walk is ordered against a new M's start (`m_main`), which
/// is listed, then fences and reads the mode: either the walk finds the
/// M, or the M sees recording on and fills its own writer. Without it
/// both could miss, and a spare started as recording began took a P with
/// no buffer and dropped its first records.
fn turn_on(rt: &Shared, st: &State) {
    refill_all(rt);
    rt.trace.update(st);
    std::sync::atomic::fence(Ordering::SeqCst);
    rt.for_each_m(|m| m.trace.refill());
}

fn dropped_total(rt: &Shared) -> u64 {
    let mut n = rt.trace.sysmon.dropped() + lock(&rt.trace.other).dropped();
    rt.for_each_m(|m| n += m.trace.dropped());
    n
}

fn new_span(rt: Option<&Shared>, flight: Option<Duration>) -> Span {
    Span {
        tsc0: ticks(),
        mono0: crate::sys::clock::now(),
        flight,
        dropped0: rt.map_or(0, dropped_total),
    }
}

/// Copies out what `rt` recorded (all of it: the decoder keeps what lies
/// in the session's span) with the Ms numbered in creation order and the
/// handle addresses in arguments turned into those numbers.
fn harvest(rt: &Shared, st: &mut State, span: &Span) -> RawRt {
    let wraps = span.flight.is_some() || rt.trace.flight();
    // One walk of the M list: an M started during the harvest (a hand-off
    // may start one) is then in both maps or in neither, and its records
    // go without an M number.
    let mut ms = Vec::new();
    rt.for_each_m(|m| ms.push((m as *const _ as usize, &m.trace as *const Writer as usize)));
    ms.reverse();
    let m_of_handle: HashMap<usize, usize> =
        ms.iter().enumerate().map(|(i, &(h, _))| (h, i)).collect();
    let m_of_writer: HashMap<usize, usize> =
        ms.iter().enumerate().map(|(i, &(_, w))| (w, i)).collect();
    let mut records: Vec<(Option<usize>, Record)> = Vec::new();
    let mut copied = Vec::new();
    let mut buf = Vec::new();
    let mut take = |w: &Writer, records: &mut Vec<(Option<usize>, Record)>| {
        copied.push(w.current() as usize);
        buf.clear();
        w.copy_into(&mut buf, wraps);
        let m = m_of_writer.get(&(w as *const Writer as usize)).copied();
        records.extend(buf.iter().map(|r| (m, *r)));
    };
    rt.for_each_m(|m| take(&m.trace, &mut records));
    take(&rt.trace.sysmon, &mut records);
    take(&lock(&rt.trace.other), &mut records);
    st.kept.extend(rt.trace.retired.take_all());
    for b in &st.kept {
        if copied.contains(&(&**b as *const Buf as usize)) {
            continue;
        }
        buf.clear();
        b.copy_into(&mut buf, false);
        let m = m_of_writer.get(&b.owner).copied();
        records.extend(buf.iter().map(|r| (m, *r)));
    }
    for (_, r) in &mut records {
        let (kind, _, _) = Word3::unpack(r[3]);
        match kind {
            Some(Kind::Handoff) => {
                r[2] = m_of_handle
                    .get(&(r[2] as usize))
                    .map_or(0, |&i| i as u64 + 1)
            }
            Some(Kind::SigUrg | Kind::Retake) => {
                r[2] = m_of_handle
                    .get(&(r[2] as usize))
                    .map_or(u64::MAX, |&i| i as u64)
            }
            _ => {}
        }
    }
    let mut names = lock(&rt.trace.names).clone();
    for g in rt.registry.snapshot() {
        if let Some(n) = &g.name {
            names.entry(g.id).or_insert_with(|| n.to_string());
        }
    }
    RawRt {
        workers: rt.cfg.workers,
        records,
        names,
        dropped: dropped_total(rt).saturating_sub(span.dropped0),
    }
}

/// After a session left `rt`: with none left, free what it kept.
fn release(rt: &Shared, st: &mut State) {
    rt.trace.update(st);
    if !rt.trace.on() {
        st.kept.clear();
        drop(rt.trace.retired.take_all());
        lock(&rt.trace.names).clear();
    }
}

/// The process-wide session.
struct Global {
    span: Span,
    /// Enrolled runtimes, numbered in the order seen.
    rts: Vec<(usize, Weak<Shared>)>,
    /// What runtimes dropped during the session recorded.
    done: Vec<(usize, RawRt)>,
    next: usize,
}

static GLOBAL: Mutex<Option<Global>> = Mutex::new(None);
/// Every live runtime, for a process-wide session to enroll.
static RUNTIMES: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn enroll(g: &mut Global, rt: &Arc<Shared>) {
    let mut st = lock(&rt.trace.state);
    st.global = Some(Span {
        dropped0: dropped_total(rt),
        ..g.span
    });
    turn_on(rt, &st);
    g.rts.push((g.next, Arc::downgrade(rt)));
    g.next += 1;
}

/// Starts a session: `rt`'s own (from one of its green threads), else the
/// process-wide one. Already recording: nothing changes.
pub(crate) fn start(rt: Option<Arc<Shared>>, flight: Option<Duration>) {
    // A green thread preempted holding these locks would block the OS
    // threads of any other that wants them until it runs again.
    let _np = crate::preempt::no_preempt();
    match rt {
        Some(rt) => {
            let mut st = lock(&rt.trace.state);
            if st.local.is_none() {
                st.local = Some(new_span(Some(&rt), flight));
                turn_on(&rt, &st);
            }
        }
        None => {
            let mut global = lock(&GLOBAL);
            if global.is_some() {
                return;
            }
            let g = global.insert(Global {
                span: new_span(None, flight),
                rts: Vec::new(),
                done: Vec::new(),
                next: 0,
            });
            let live: Vec<_> = lock(&RUNTIMES).iter().filter_map(Weak::upgrade).collect();
            for rt in &live {
                enroll(g, rt);
            }
        }
    }
}

/// Stops the session `start` would have started and decodes it (empty
/// without one).
pub(crate) fn stop(rt: Option<Arc<Shared>>) -> Trace {
    match rt {
        Some(rt) => {
            let np = crate::preempt::no_preempt();
            let mut st = lock(&rt.trace.state);
            let Some(span) = st.local.take() else {
                return Trace::default();
            };
            let end = decode::End::now();
            rt.trace.update(&st);
            let raw = harvest(&rt, &mut st, &span);
            release(&rt, &mut st);
            drop(st);
            drop(np);
            decode::decode(Raw {
                span,
                end,
                rts: vec![raw],
            })
        }
        None => {
            let np = crate::preempt::no_preempt();
            let Some(g) = lock(&GLOBAL).take() else {
                return Trace::default();
            };
            let end = decode::End::now();
            let mut rts = g.done;
            for (k, w) in g.rts {
                let Some(rt) = w.upgrade() else { continue };
                let mut st = lock(&rt.trace.state);
                let span = st.global.take().unwrap_or(g.span);
                rt.trace.update(&st);
                rts.push((k, harvest(&rt, &mut st, &span)));
                release(&rt, &mut st);
            }
            drop(np);
            rts.sort_by_key(|(k, _)| *k);
            decode::decode(Raw {
                span: g.span,
                end,
                rts: rts.into_iter().map(|(_, r)| r).collect(),
            })
        }
    }
}

/// A runtime was built: list it, enroll it in the process-wide session,
/// and start its `GREENRT_TRACE` session if the variable is set.
pub(crate) fn on_build(rt: &Arc<Shared>) {
    {
        let mut all = lock(&RUNTIMES);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(rt));
    }
    if let Some(g) = lock(&GLOBAL).as_mut() {
        enroll(g, rt);
    }
    if let Some(paths) = std::env::var_os("GREENRT_TRACE") {
        let paths = paths.to_string_lossy().into_owned();
        if !paths.trim().is_empty() {
            let mut st = lock(&rt.trace.state);
            st.env = Some((new_span(Some(rt), None), paths));
            turn_on(rt, &st);
        }
    }
}

/// A runtime is being dropped (its Ms are gone): hand what it recorded to
/// the process-wide session, and write its `GREENRT_TRACE` files.
pub(crate) fn on_drop(rt: &Arc<Shared>) {
    if let Some(g) = lock(&GLOBAL).as_mut() {
        if let Some(i) = g
            .rts
            .iter()
            .position(|(_, w)| w.as_ptr() == Arc::as_ptr(rt))
        {
            let (k, _) = g.rts.remove(i);
            let mut st = lock(&rt.trace.state);
            let span = st.global.take().unwrap_or(g.span);
            rt.trace.update(&st);
            let raw = harvest(rt, &mut st, &span);
            release(rt, &mut st);
            g.done.push((k, raw));
        }
    }
    let env = {
        let mut st = lock(&rt.trace.state);
        st.env.take().map(|(span, paths)| {
            let end = decode::End::now();
            let raw = harvest(rt, &mut st, &span);
            release(rt, &mut st);
            (span, end, raw, paths)
        })
    };
    if let Some((span, end, raw, paths)) = env {
        let trace = decode::decode(Raw {
            span,
            end,
            rts: vec![raw],
        });
        for path in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Err(e) = write_file(&trace, path) {
                eprintln!("greenrt: GREENRT_TRACE: cannot write {path}: {e}");
            }
        }
    }
    lock(&RUNTIMES).retain(|w| w.strong_count() > 0 && w.as_ptr() != Arc::as_ptr(rt));
}

fn write_file(trace: &Trace, path: &str) -> std::io::Result<()> {
    use std::io::Write;
    let written = if path.ends_with(".svg") {
        Trace::write_svg
    } else if path.ends_with(".json") {
        Trace::write_json
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path must end in .json or .svg",
        ));
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    written(trace, &mut file)?;
    file.flush()
}
