//! Scheduler tracing: which green thread ran on which P, when, and why it
//! stopped — Go's `runtime/trace`, drawn by greenrt itself.
//!
//! ```no_run
//! greenrt::run(|| {
//!     greenrt::trace::start();
//!     // ... the work to look at ...
//!     let trace = greenrt::trace::stop();
//!     trace.write_svg(std::fs::File::create("trace.svg").unwrap()).unwrap();
//!     trace.write_json(std::fs::File::create("trace.json").unwrap()).unwrap();
//! });
//! ```
//!
//! The JSON is Chrome's Trace Event format (open it in Perfetto or
//! `chrome://tracing`); the SVG needs no tool at all. Setting
//! `GREENRT_TRACE=<path>` (`.json`, `.svg`, or both as `a.json,b.svg`)
//! when a runtime is built records it from build to drop.

mod json;
mod model;
mod svg;

pub use model::{BlockReason, Event, EventKind, Lane, Slice, StopReason, Trace};

/// Starts recording. TODO(trace-record): scope and semantics.
pub fn start() {
    todo!("trace recording")
}

/// Stops recording and returns what was recorded.
pub fn stop() -> Trace {
    todo!("trace recording")
}

impl Trace {
    /// Writes the trace as Chrome Trace Event JSON (`{"traceEvents":
    /// [...]}`): one complete (`"X"`) event per run of a green thread, one
    /// lane (`tid`) per P.
    pub fn write_json(&self, w: impl std::io::Write) -> std::io::Result<()> {
        json::write(self, w)
    }

    /// Draws the trace as an SVG picture: one lane per P on a time axis.
    pub fn write_svg(&self, w: impl std::io::Write) -> std::io::Result<()> {
        svg::write(self, w)
    }
}
