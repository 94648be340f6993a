//! What the picture's pieces look like: colours, XML escaping, numbers.

use std::borrow::Cow;
use std::time::Duration;

use super::super::{StopReason, Trace};

/// The colour of the `rank`-th green thread to appear: hues a golden
/// angle apart, so threads that appear one after another (and so sit next
/// to each other in the picture) never look alike, in three lightnesses
/// light enough for dark text (blues and violets, darker to the eye at
/// the same lightness, a little lighter).
pub(super) fn thread_colour(rank: usize) -> String {
    let hue = (rank as f64 * 137.508) % 360.0;
    let blue = if (210.0..300.0).contains(&hue) {
        0.10
    } else {
        0.0
    };
    let light = [0.66, 0.58, 0.76][rank % 3] + blue;
    hsl(hue, 0.68, light)
}

/// The colour of M `m` in the band under a lane: muted, so Ms do not
/// compete with (or look like) the green threads above them.
pub(super) fn m_colour(m: u64) -> String {
    let hue = (m as f64 * 97.0 + 200.0) % 360.0;
    let light = [0.82, 0.64][(m % 2) as usize];
    hsl(hue, 0.16, light)
}

/// Fill of a run too fine to tell its green threads apart.
pub(super) const MIXED: &str = "#9a9a9a";

/// How stop reasons are marked: (CSS class, colour, key text), in the
/// order the key lists them.
pub(super) const MARKS: [(&str, &str, &str); 6] = [
    ("preempted", "#d62728", "preempted (SIGURG)"),
    ("blocked", "#1f5fd6", "blocked"),
    ("syscall", "#11967a", "in a system call (P handed on)"),
    ("yield", "#e08a00", "yield_now"),
    ("exit", "#111111", "exited"),
    ("cancelled", "#8e3bb5", "cancelled"),
];

/// The index in [`MARKS`] of how `reason` is marked; `None` for a run
/// still going when the recording stopped.
pub(super) fn mark(reason: StopReason) -> Option<usize> {
    match reason {
        StopReason::Preempted => Some(0),
        StopReason::Blocked(_) => Some(1),
        StopReason::Syscall => Some(2),
        StopReason::Yield => Some(3),
        StopReason::Exit => Some(4),
        StopReason::Cancelled => Some(5),
        StopReason::Running => None,
    }
}

/// A stop reason in words, with what a blocked thread waited for.
pub(super) fn reason_text(reason: StopReason) -> String {
    match reason {
        StopReason::Blocked(b) => format!("blocked ({})", b.as_str()),
        StopReason::Running => "still running when the recording stopped".to_owned(),
        r => r.as_str().to_owned(),
    }
}

fn hsl(h: f64, s: f64, l: f64) -> String {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

/// `s` as XML character data or attribute value: markup characters
/// escaped, and characters XML 1.0 forbids even escaped (most C0
/// controls) replaced by U+FFFD, so any thread name gives a well-formed
/// file.
pub(super) fn esc(s: &str) -> Cow<'_, str> {
    let bad = |c: char| matches!(c, '<' | '>' | '&' | '"' | '\'') || forbidden(c);
    if !s.contains(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if forbidden(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn forbidden(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// A green thread's label, cut to `max` characters (with "…").
pub(super) fn short_label(trace: &Trace, g: u64, max: usize) -> String {
    let label = trace.label(g);
    if label.chars().count() <= max {
        return label;
    }
    let mut cut: String = label.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Roughly how wide `text` is at `font_px` in a sans-serif font
/// (generous, so a label that "fits" does fit).
pub(super) fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().count() as f64 * font_px * 0.62
}

/// A time in milliseconds, as precise as it needs to be.
pub(super) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if d.is_zero() {
        "0 ms".to_owned()
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// A length of time for the title: seconds from 1 s, else milliseconds.
pub(super) fn span(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        ms(d)
    }
}

/// Tick spacing for an axis of `total_ms`: 1, 2 or 5 times a power of
/// ten, about ten ticks; and the decimals its labels need.
pub(super) fn tick_step(total_ms: f64) -> (f64, usize) {
    let raw = (total_ms / 10.0).max(1e-6);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * mag)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * mag);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (step, decimals)
}

/// "1,234,567".
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
