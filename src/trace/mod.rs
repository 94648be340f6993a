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
//!
//! # Scope
//!
//! [`start`] called on a green thread records that green thread's
//! runtime; called off any green thread it records every runtime of the
//! process, those built later included, until [`stop`] is called off any
//! green thread. Starting while that session already records keeps it
//! recording, unchanged (one [`stop`] ends it). [`stop`] without a
//! recording returns an empty [`Trace`]. [`start_flight_recorder`] records
//! the same way but keeps only about the last stretch of time, for
//! programs that run long before something worth looking at happens.
//!
//! # Cost
//!
//! Off, each scheduling point checks one flag. On, each event is a
//! timestamp counter read and a 32-byte record in a buffer of the thread
//! that saw it (see docs/DESIGN.md, "Tracing").

mod decode;
mod json;
mod model;
mod record;
mod ring;
mod session;
mod svg;

use std::time::Duration;

pub use model::{BlockReason, Event, EventKind, Lane, Slice, StopReason, Trace};
pub(crate) use record::{stop_code, ticks, Kind, SwitchArg, Word3, NO_P};
pub(crate) use ring::Writer;
pub(crate) use session::{on_build, on_drop, RtTrace, MODE_FLIGHT, MODE_OFF};

/// The code of a block reason in a stop record.
pub(crate) fn block_code(r: BlockReason) -> u64 {
    stop_code::BLOCKED + decode::block_code(r)
}

/// Starts recording (see the module documentation for what is recorded).
/// Records stay in memory until [`stop`], however long that is.
pub fn start() {
    session::start(crate::scheduler::current_runtime(), None);
}

/// Starts recording as a flight recorder: the same scope as [`start`],
/// but [`stop`] returns only about the last `window` (less if the
/// per-thread rings, 65536 records each, hold less than that), and memory
/// stays bounded however long it runs.
pub fn start_flight_recorder(window: Duration) {
    session::start(crate::scheduler::current_runtime(), Some(window));
}

/// Stops recording and returns what was recorded: on a green thread, its
/// runtime's recording; off any, the process-wide one.
pub fn stop() -> Trace {
    session::stop(crate::scheduler::current_runtime())
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
