//! Chrome Trace Event JSON (`{"traceEvents": [...]}`), for Perfetto and
//! `chrome://tracing`: per P lane (`tid` = lane index) a `thread_name`
//! metadata event, one complete (`"X"`) event per run of a green thread,
//! and the scheduler's other events as instants (`"i"`). Times are in µs
//! with nanosecond fractions, so short runs do not come out 0 long.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use super::model::{EventKind, StopReason};
use super::Trace;

/// `d` in µs, with three decimals.
fn micros(d: Duration) -> String {
    let ns = d.as_nanos();
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// `s` as a JSON string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

pub(super) fn write(trace: &Trace, w: impl Write) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(w);
    let pid = trace.pid;
    let mut lines: Vec<String> = Vec::new();
    // Only the lanes' names as metadata: one `thread_name` per P, nothing
    // else a reader counting metadata events would trip over (Perfetto
    // orders the lanes by tid anyway).
    for (tid, lane) in trace.lanes.iter().enumerate() {
        lines.push(format!(
            r#"{{"ph":"M","name":"thread_name","pid":{pid},"tid":{tid},"args":{{"name":{}}}}}"#,
            quoted(&lane.name)
        ));
    }
    for s in &trace.slices {
        let block = match s.reason {
            StopReason::Blocked(b) => format!(r#","block":{}"#, quoted(b.as_str())),
            _ => String::new(),
        };
        lines.push(format!(
            r#"{{"ph":"X","name":{},"cat":"run","pid":{pid},"tid":{},"ts":{},"dur":{},"args":{{"g":{},"m":{},"end":{}{block}}}}}"#,
            quoted(&trace.label(s.g)),
            s.lane,
            micros(s.start),
            micros(s.end.saturating_sub(s.start)),
            s.g,
            s.m,
            quoted(s.reason.as_str()),
        ));
    }
    for e in &trace.events {
        let (name, args) = match e.kind {
            EventKind::Created { g, parent } => {
                ("created", format!(r#""g":{g},"parent":{}"#, opt(parent)))
            }
            EventKind::Runnable { g, by } => ("runnable", format!(r#""g":{g},"by":{}"#, opt(by))),
            EventKind::Handoff { from, to } => {
                ("handoff", format!(r#""from":{},"to":{to}"#, opt(from)))
            }
            EventKind::Retake { m } => ("retake", format!(r#""m":{m}"#)),
            EventKind::SigUrg { m, g } => ("sigurg", format!(r#""m":{m},"g":{g}"#)),
            EventKind::NetpollWake { count } => ("netpoll", format!(r#""count":{count}"#)),
            EventKind::Spinning { m } => ("spinning", format!(r#""m":{m}"#)),
            EventKind::Idle { m } => ("idle", format!(r#""m":{m}"#)),
        };
        let (scope, tid) = match e.lane {
            Some(l) => ("t", l),
            None => ("p", 0),
        };
        lines.push(format!(
            r#"{{"ph":"i","name":"{name}","cat":"sched","s":"{scope}","pid":{pid},"tid":{tid},"ts":{},"args":{{{args}}}}}"#,
            micros(e.at)
        ));
    }
    w.write_all(b"{\"traceEvents\": [\n")?;
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            w.write_all(b",\n")?;
        }
        w.write_all(l.as_bytes())?;
    }
    w.write_all(b"\n],\n\"displayTimeUnit\": \"ns\",\n")?;
    write!(
        w,
        "\"otherData\": {{\"dropped\": {}, \"duration_us\": {}}}\n}}\n",
        trace.dropped,
        micros(trace.duration)
    )?;
    w.flush()
}
