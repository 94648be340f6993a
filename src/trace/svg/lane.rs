//! Drawing a lane's contents (runs, stop marks, the M band) and the
//! legend of green threads.

use std::io::{self, Write};
use std::time::Duration;

use super::runs::{Fill, Run};
use super::style::{self, esc, ms, text_width, MARKS};
use super::{
    LaneView, Picture, BAND_H, BAR_H, FONT, LEGEND_COLS, LEGEND_MAX, LEGEND_ROW_H, MARK_H,
    MIN_DRAWN_PX, PLOT_X1, WIDTH,
};

impl Picture<'_> {
    /// A run's extent, at least [`MIN_DRAWN_PX`] wide and inside the plot.
    fn extent<K>(&self, run: &Run<K>) -> (f64, f64) {
        let width = (run.x1 - run.x0).max(MIN_DRAWN_PX);
        let x = run.x0.min(PLOT_X1 - width);
        (x, width)
    }

    /// A run's time span from its first slice's start to its last's end.
    fn span_of<K>(&self, run: &Run<K>) -> (Duration, Duration) {
        let slices = self.trace.slices();
        (slices[run.first].start, slices[run.last].end)
    }

    pub(super) fn draw_slices(
        &self,
        out: &mut impl Write,
        lane: &LaneView,
        y: f64,
    ) -> io::Result<()> {
        write!(out, r##"<g class="slices">"##)?;
        for run in &lane.threads {
            let (x, width) = self.extent(run);
            let (start, end) = self.span_of(run);
            let when = format!(
                "{}–{} ({})",
                ms(start),
                ms(end),
                ms(end.saturating_sub(start))
            );
            match run.fill {
                Fill::One(g) => {
                    let label = self.trace.label(g);
                    let s = &self.trace.slices()[run.last];
                    let what = if run.count == 1 {
                        format!("on M{}, {when}, then {}", s.m, style::reason_text(s.reason))
                    } else {
                        format!(
                            "{} runs back to back, {when}, last then {}",
                            run.count,
                            style::reason_text(s.reason)
                        )
                    };
                    write!(
                        out,
                        r##"<rect x="{x:.2}" y="{y}" width="{width:.2}" height="{BAR_H}" fill="{}"><title>{} {}</title></rect>"##,
                        self.thread_colour(g),
                        esc(&label),
                        esc(&what)
                    )?;
                    self.draw_label(out, &label, end.saturating_sub(start), x, width, y)?;
                }
                Fill::Mixed { distinct, most } => write!(
                    out,
                    r##"<rect class="merged" x="{x:.2}" y="{y}" width="{width:.2}" height="{BAR_H}" fill="{}"><title>{} runs of {distinct} green threads, {when}, most of it {}: too short to draw apart at this width</title></rect>"##,
                    style::MIXED,
                    run.count,
                    esc(&self.trace.label(most))
                )?,
            }
        }
        writeln!(out, "</g>")
    }

    /// The thread's label in its run, and the run's length under it,
    /// each only if it fits.
    fn draw_label(
        &self,
        out: &mut impl Write,
        label: &str,
        len: Duration,
        x: f64,
        width: f64,
        y: f64,
    ) -> io::Result<()> {
        if text_width(label, FONT) + 6.0 > width {
            return Ok(());
        }
        write!(
            out,
            r##"<text x="{:.1}" y="{}">{}</text>"##,
            x + 3.0,
            y + 13.0,
            esc(label)
        )?;
        let len = ms(len);
        if text_width(&len, 9.0) + 6.0 <= width {
            write!(
                out,
                r##"<text x="{:.1}" y="{}" font-size="9" fill="#333">{len}</text>"##,
                x + 3.0,
                y + 25.0
            )?;
        }
        Ok(())
    }

    /// A tick above the bar where a run ended, coloured by why; one per
    /// pixel and reason, so a dense lane draws a comb, not a million
    /// ticks.
    pub(super) fn draw_marks(
        &self,
        out: &mut impl Write,
        lane: &LaneView,
        y: f64,
    ) -> io::Result<()> {
        let mut paths = [const { String::new() }; MARKS.len()];
        let mut last_px = [i64::MIN; MARKS.len()];
        for &i in &lane.slices {
            let s = &self.trace.slices()[i];
            let Some(m) = style::mark(s.reason) else {
                continue;
            };
            let x = self.x(s.end).min(PLOT_X1 - 0.5);
            if x.floor() as i64 == last_px[m] {
                continue;
            }
            last_px[m] = x.floor() as i64;
            paths[m].push_str(&format!("M{x:.1} {y}v{MARK_H}"));
        }
        write!(out, r##"<g class="marks">"##)?;
        for ((class, colour, _), d) in MARKS.iter().zip(&paths) {
            if !d.is_empty() {
                write!(
                    out,
                    r##"<path class="mark {class}" d="{d}" stroke="{colour}" stroke-width="1.5"/>"##
                )?;
            }
        }
        writeln!(out, "</g>")
    }

    /// The band under the bar: which M held the P, labelled where wide
    /// enough.
    pub(super) fn draw_ms(&self, out: &mut impl Write, lane: &LaneView, y: f64) -> io::Result<()> {
        write!(out, r##"<g class="ms">"##)?;
        for run in &lane.ms {
            let (x, width) = self.extent(run);
            let (start, end) = self.span_of(run);
            let when = format!("{}–{}", ms(start), ms(end));
            match run.fill {
                Fill::One(m) => {
                    write!(
                        out,
                        r##"<rect x="{x:.2}" y="{y}" width="{width:.2}" height="{BAND_H}" fill="{}"><title>M{m} held {}: {when}</title></rect>"##,
                        style::m_colour(m),
                        esc(&lane.name)
                    )?;
                    let label = format!("M{m}");
                    if text_width(&label, 9.0) + 4.0 <= width {
                        write!(
                            out,
                            r##"<text x="{:.1}" y="{}" font-size="9">{label}</text>"##,
                            x + 2.0,
                            y + 9.0
                        )?;
                    }
                }
                Fill::Mixed { distinct, .. } => write!(
                    out,
                    r##"<rect class="merged" x="{x:.2}" y="{y}" width="{width:.2}" height="{BAND_H}" fill="{}"><title>{distinct} Ms in turn: {when}</title></rect>"##,
                    style::MIXED
                )?,
            }
        }
        writeln!(out, "</g>")
    }

    /// The green threads by run time, [`LEGEND_MAX`] at most, the rest
    /// summed.
    pub(super) fn draw_legend(&self, out: &mut impl Write, y: f64) -> io::Result<()> {
        let total: Duration = self.totals.iter().map(|t| t.1).sum();
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
        write!(
            out,
            r##"<g class="legend"><text x="12" y="{y}" fill="#444">green threads by run time (of {} run in all):</text>"##,
            ms(total)
        )?;
        let col_w = (WIDTH - 24.0) / LEGEND_COLS as f64;
        let at = |i: usize| {
            (
                12.0 + (i % LEGEND_COLS) as f64 * col_w,
                y + 10.0 + (i / LEGEND_COLS) as f64 * LEGEND_ROW_H,
            )
        };
        for (i, &(g, time)) in self.totals.iter().take(LEGEND_MAX).enumerate() {
            let (x, row) = at(i);
            write!(
                out,
                r##"<g class="entry" data-g="{g}"><rect x="{x:.1}" y="{}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{}">{} · {} ({:.1}%)</text></g>"##,
                row + 2.0,
                self.thread_colour(g),
                x + 17.0,
                row + 12.0,
                esc(&style::short_label(self.trace, g, 22)),
                ms(time),
                pct(time)
            )?;
        }
        if self.totals.len() > LEGEND_MAX {
            let rest = &self.totals[LEGEND_MAX..];
            let time: Duration = rest.iter().map(|t| t.1).sum();
            let (x, row) = at(LEGEND_MAX);
            write!(
                out,
                r##"<text class="others" x="{x:.1}" y="{}">+ {} other{} · {} ({:.1}%)</text>"##,
                row + 12.0,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" },
                ms(time),
                pct(time)
            )?;
        }
        writeln!(out, "</g>")
    }
}
