//! The SVG picture. TODO(trace-svg).

use super::Trace;

pub(super) fn write(_trace: &Trace, _w: impl std::io::Write) -> std::io::Result<()> {
    todo!("trace svg")
}
