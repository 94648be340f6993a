//! The SVG picture ([`Trace::write_svg`]): one lane per P on a time axis
//! in milliseconds. In each lane a bar holds the runs of green threads,
//! coloured by thread and labelled where wide enough; ticks above it mark
//! why each run stopped; a thin band under it shows which M (OS thread)
//! held the P. A title line, a key and a legend of the green threads (the
//! [`LEGEND_MAX`] that ran longest) frame it. Slices too narrow to draw
//! are coalesced (see `runs`), so the file's size follows the picture's
//! width, not the recording's length.

mod lane;
mod runs;
mod style;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use super::{Slice, Trace};
use runs::{Fill, Item, Run};
use style::{esc, text_width, MARKS};

const WIDTH: f64 = 1600.0;
/// The time axis runs from `PLOT_X0` to `PLOT_X1`; lane names sit left of it.
const PLOT_X0: f64 = 90.0;
const PLOT_X1: f64 = WIDTH - 24.0;
const LANES_TOP: f64 = 66.0;
/// A lane, top to bottom: stop marks, the bar, a gap, the M band, a gap.
const MARK_H: f64 = 8.0;
const BAR_H: f64 = 30.0;
const BAND_GAP: f64 = 2.0;
const BAND_H: f64 = 11.0;
const LANE_GAP: f64 = 16.0;
const LANE_H: f64 = MARK_H + BAR_H + BAND_GAP + BAND_H + LANE_GAP;
const AXIS_H: f64 = 40.0;
/// Green threads listed in the legend; the rest are summed as "others".
const LEGEND_MAX: usize = 30;
const LEGEND_COLS: usize = 6;
const LEGEND_ROW_H: f64 = 18.0;
const FONT: f64 = 11.0;
/// The narrowest a run is drawn, so a lone short one stays visible.
const MIN_DRAWN_PX: f64 = 0.5;

pub(super) fn write(trace: &Trace, w: impl Write) -> io::Result<()> {
    let mut out = BufWriter::new(w);
    Picture::new(trace).draw(&mut out)?;
    out.flush()
}

/// A lane's slices (indices into `Trace::slices`, by start), coalesced.
struct LaneView {
    name: String,
    busy: Duration,
    threads: Vec<Run<u64>>,
    ms: Vec<Run<u64>>,
    slices: Vec<usize>,
}

struct Picture<'a> {
    trace: &'a Trace,
    /// The axis's right end: the recording's length, or the last slice's
    /// end if later.
    end: Duration,
    lanes: Vec<LaneView>,
    /// Colour rank of each green thread: its order of first appearance.
    rank: HashMap<u64, usize>,
    /// Run time of each green thread, longest first.
    totals: Vec<(u64, Duration)>,
}

impl<'a> Picture<'a> {
    fn new(trace: &'a Trace) -> Picture<'a> {
        let slices = trace.slices();
        let last_end = slices.iter().map(|s| s.end).max().unwrap_or_default();
        let end = trace.duration().max(last_end).max(Duration::from_micros(1));
        let lane_count = slices
            .iter()
            .map(|s| s.lane + 1)
            .max()
            .unwrap_or(0)
            .max(trace.lanes().len());
        let mut by_lane: Vec<Vec<usize>> = vec![Vec::new(); lane_count];
        let mut first_seen: HashMap<u64, Duration> = HashMap::new();
        let mut run_time: HashMap<u64, Duration> = HashMap::new();
        for (i, s) in slices.iter().enumerate() {
            by_lane[s.lane].push(i);
            let seen = first_seen.entry(s.g).or_insert(s.start);
            *seen = (*seen).min(s.start);
            *run_time.entry(s.g).or_default() += s.end.saturating_sub(s.start);
        }
        let mut order: Vec<(Duration, u64)> = first_seen.into_iter().map(|(g, t)| (t, g)).collect();
        order.sort_unstable();
        let rank = order
            .iter()
            .enumerate()
            .map(|(r, &(_, g))| (g, r))
            .collect();
        let mut totals: Vec<(u64, Duration)> = run_time.into_iter().collect();
        totals.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut picture = Picture {
            trace,
            end,
            lanes: Vec::new(),
            rank,
            totals,
        };
        picture.lanes = by_lane
            .into_iter()
            .enumerate()
            .map(|(lane, mut idx)| picture.lane_view(lane, &mut idx))
            .collect();
        picture
    }

    fn lane_view(&self, lane: usize, idx: &mut Vec<usize>) -> LaneView {
        let slices = self.trace.slices();
        idx.sort_by_key(|&i| (slices[i].start, slices[i].end));
        let items = |key: fn(&Slice) -> u64| {
            idx.iter().map(move |&i| Item {
                x0: self.x(slices[i].start),
                x1: self.x(slices[i].end),
                key: key(&slices[i]),
                idx: i,
            })
        };
        LaneView {
            name: self
                .trace
                .lanes()
                .get(lane)
                .map_or_else(|| format!("P{lane}"), |l| l.name.clone()),
            busy: idx
                .iter()
                .map(|&i| slices[i].end.saturating_sub(slices[i].start))
                .sum(),
            threads: runs::coalesce(items(|s| s.g)),
            ms: runs::coalesce(items(|s| s.m as u64)),
            slices: std::mem::take(idx),
        }
    }

    /// Where time `t` falls on the axis.
    fn x(&self, t: Duration) -> f64 {
        PLOT_X0 + t.as_secs_f64() / self.end.as_secs_f64() * (PLOT_X1 - PLOT_X0)
    }

    fn thread_colour(&self, g: u64) -> String {
        style::thread_colour(self.rank.get(&g).copied().unwrap_or(0))
    }

    fn axis_y(&self) -> f64 {
        LANES_TOP + self.lanes.len() as f64 * LANE_H - LANE_GAP + 4.0
    }

    fn legend_rows(&self) -> usize {
        let entries =
            self.totals.len().min(LEGEND_MAX) + usize::from(self.totals.len() > LEGEND_MAX);
        entries.div_ceil(LEGEND_COLS)
    }

    fn draw(&self, out: &mut impl Write) -> io::Result<()> {
        let legend_y = self.axis_y() + AXIS_H;
        let height = (legend_y + 10.0 + self.legend_rows() as f64 * LEGEND_ROW_H + 8.0).ceil();
        writeln!(out, r##"<?xml version="1.0" encoding="UTF-8"?>"##)?;
        writeln!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{FONT}">"##
        )?;
        writeln!(
            out,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
        )?;
        self.draw_title(out)?;
        self.draw_key(out)?;
        self.draw_grid(out)?;
        for (i, lane) in self.lanes.iter().enumerate() {
            self.draw_lane(out, i, lane)?;
        }
        if self.lanes.is_empty() {
            writeln!(
                out,
                r##"<text x="{PLOT_X0}" y="{}" fill="#555">no runs recorded</text>"##,
                LANES_TOP + 14.0
            )?;
        }
        self.draw_axis(out)?;
        self.draw_legend(out, legend_y)?;
        writeln!(out, "</svg>")
    }

    fn draw_title(&self, out: &mut impl Write) -> io::Result<()> {
        let t = self.trace;
        let lanes = self.lanes.len();
        let drawn: usize = self.lanes.iter().map(|l| l.threads.len()).sum();
        let merged: usize = self
            .lanes
            .iter()
            .flat_map(|l| &l.threads)
            .filter(|r| matches!(r.fill, Fill::Mixed { .. }))
            .map(|r| r.count)
            .sum();
        let mut title = format!(
            "greenrt trace (pid {}): {}, {} lane{} (one per P), {} slice{} of {} green thread{}",
            t.pid,
            style::span(self.end),
            lanes,
            if lanes == 1 { "" } else { "s" },
            style::thousands(t.slices().len()),
            if t.slices().len() == 1 { "" } else { "s" },
            style::thousands(self.totals.len()),
            if self.totals.len() == 1 { "" } else { "s" },
        );
        if merged > 0 {
            title += &format!(
                "; {} slices too short for a pixel drawn grey ({} run{} drawn)",
                style::thousands(merged),
                style::thousands(drawn),
                if drawn == 1 { "" } else { "s" }
            );
        }
        if t.dropped() > 0 {
            title += &format!(
                "; {} records dropped",
                style::thousands(t.dropped() as usize)
            );
        }
        writeln!(
            out,
            r##"<text x="12" y="22" font-size="15" font-weight="bold">{}</text>"##,
            esc(&title)
        )
    }

    /// The key: what the marks, the grey and the M band mean.
    fn draw_key(&self, out: &mut impl Write) -> io::Result<()> {
        let y = 46.0;
        let mut x = 12.0;
        write!(
            out,
            r##"<g class="key"><text x="{x}" y="{y}" fill="#444">run ended:</text>"##
        )?;
        x += text_width("run ended:", FONT) + 8.0;
        for (class, colour, text) in MARKS {
            write!(
                out,
                r##"<path class="mark {class}" d="M{x:.1} {}v10" stroke="{colour}" stroke-width="2.5"/><text x="{:.1}" y="{y}">{text}</text>"##,
                y - 10.0,
                x + 5.0
            )?;
            x += text_width(text, FONT) + 22.0;
        }
        x += 20.0;
        let grey = "several threads within a pixel (merged)";
        write!(
            out,
            r##"<rect x="{x:.1}" y="{}" width="14" height="11" fill="{}"/><text x="{:.1}" y="{y}">{grey}</text>"##,
            y - 10.0,
            style::MIXED,
            x + 19.0
        )?;
        x += text_width(grey, FONT) + 40.0;
        writeln!(
            out,
            r##"<rect x="{x:.1}" y="{}" width="14" height="6" fill="{}"/><text x="{:.1}" y="{y}">band under a lane: the M (OS thread) holding the P</text></g>"##,
            y - 7.0,
            style::m_colour(1),
            x + 19.0
        )
    }

    fn ticks(&self) -> impl Iterator<Item = (f64, String)> + '_ {
        let total_ms = self.end.as_secs_f64() * 1e3;
        let (step, decimals) = style::tick_step(total_ms);
        (0..)
            .map(move |k| k as f64 * step)
            .take_while(move |t| *t <= total_ms * (1.0 + 1e-9))
            .map(move |t| {
                (
                    self.x(Duration::from_secs_f64(t / 1e3)),
                    format!("{t:.decimals$} ms"),
                )
            })
    }

    fn draw_grid(&self, out: &mut impl Write) -> io::Result<()> {
        write!(
            out,
            r##"<g class="grid" stroke="#e2e2e2" stroke-width="1">"##
        )?;
        for (x, _) in self.ticks() {
            write!(
                out,
                r##"<path d="M{x:.1} {LANES_TOP}V{:.1}"/>"##,
                self.axis_y()
            )?;
        }
        writeln!(out, "</g>")
    }

    fn draw_axis(&self, out: &mut impl Write) -> io::Result<()> {
        let y = self.axis_y();
        write!(
            out,
            r##"<g class="axis"><path d="M{PLOT_X0} {y}H{PLOT_X1}" stroke="#333"/>"##
        )?;
        for (x, label) in self.ticks() {
            write!(
                out,
                r##"<path d="M{x:.1} {y}v5" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
                y + 17.0
            )?;
        }
        writeln!(out, "</g>")
    }

    fn draw_lane(&self, out: &mut impl Write, i: usize, lane: &LaneView) -> io::Result<()> {
        let top = LANES_TOP + i as f64 * LANE_H;
        let bar = top + MARK_H;
        let band = bar + BAR_H + BAND_GAP;
        let busy = 100.0 * lane.busy.as_secs_f64() / self.end.as_secs_f64();
        writeln!(
            out,
            r##"<g class="lane" data-lane="{i}" data-name="{name}"><text x="12" y="{}" font-size="13" font-weight="bold">{name}</text><text x="12" y="{}" font-size="10" fill="#555">busy {busy:.0}%</text><text x="{}" y="{}" font-size="9" fill="#555" text-anchor="end">M</text><rect class="track" x="{PLOT_X0}" y="{bar}" width="{}" height="{BAR_H}" fill="#f3f3f3"/>"##,
            bar + 14.0,
            bar + 27.0,
            PLOT_X0 - 4.0,
            band + 9.0,
            PLOT_X1 - PLOT_X0,
            name = esc(&lane.name),
        )?;
        self.draw_slices(out, lane, bar)?;
        self.draw_marks(out, lane, top)?;
        self.draw_ms(out, lane, band)?;
        writeln!(out, "</g>")
    }
}
