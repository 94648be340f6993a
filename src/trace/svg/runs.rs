//! Coalescing a lane into what its pixels can show.
//!
//! The rule (DESIGN.md, "The trace picture"): consecutive intervals with
//! the same key (green thread, or M) that touch — less than [`MIN_PX`]
//! apart — are drawn as one. An interval narrower than [`MIN_PX`] takes
//! in the narrow intervals after it that touch it, of any key, until the
//! run is [`MIN_PX`] wide; once it holds several keys it is drawn grey
//! ([`Fill::Mixed`]) and takes in every narrow interval that touches it,
//! so a stretch too fine to draw is one grey run (not a grey run per
//! pixel, whose anti-aliased seams would stripe it). A wide interval is
//! never taken into a grey run. So every run drawn is at least
//! [`MIN_PX`] wide, or is followed by a gap or by a run at least
//! [`MIN_PX`] wide: a lane never draws more than about
//! `2 × width / MIN_PX` runs, however many slices it holds.

use std::collections::HashMap;
use std::hash::Hash;

/// Narrower than this (in pixels), an interval is not drawn on its own.
pub(super) const MIN_PX: f64 = 1.0;

/// One interval of a lane, in pixels: `idx` is its index in the caller's
/// list (a slice), for the caller's tooltips.
#[derive(Clone, Copy, Debug)]
pub(super) struct Item<K> {
    pub x0: f64,
    pub x1: f64,
    pub key: K,
    pub idx: usize,
}

/// What a run is filled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fill<K> {
    /// One key's intervals only.
    One(K),
    /// Several keys' intervals, too fine to tell apart.
    Mixed {
        /// How many different keys.
        distinct: usize,
        /// The key with the most width in the run.
        most: K,
    },
}

/// Intervals drawn as one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run<K> {
    pub x0: f64,
    pub x1: f64,
    pub fill: Fill<K>,
    /// How many intervals it holds.
    pub count: usize,
    /// The caller's indices of its first and last interval.
    pub first: usize,
    pub last: usize,
}

impl<K> Run<K> {
    fn width(&self) -> f64 {
        self.x1 - self.x0
    }
}

/// Coalesces `items`, in order of `x0` and not overlapping, by the rule
/// in the module comment.
pub(super) fn coalesce<K: Copy + Eq + Hash>(
    items: impl IntoIterator<Item = Item<K>>,
) -> Vec<Run<K>> {
    let mut out = Vec::new();
    let mut current: Option<Run<K>> = None;
    // Width per key of the current run while it is mixed.
    let mut widths: HashMap<K, f64> = HashMap::new();
    for item in items {
        let width = (item.x1 - item.x0).max(0.0);
        if let Some(run) = current.as_mut() {
            let touching = item.x0 - run.x1 < MIN_PX;
            let same = run.fill == Fill::One(item.key);
            let mixed = matches!(run.fill, Fill::Mixed { .. });
            let takes_narrow = (mixed || run.width() < MIN_PX) && width < MIN_PX;
            if touching && (same || takes_narrow) {
                if let Fill::One(key) = run.fill {
                    if key != item.key {
                        widths.clear();
                        widths.insert(key, run.width());
                    }
                }
                if !same {
                    *widths.entry(item.key).or_insert(0.0) += width;
                    // `most` is settled when the run is done.
                    run.fill = Fill::Mixed {
                        distinct: widths.len(),
                        most: item.key,
                    };
                }
                run.x1 = run.x1.max(item.x1);
                run.count += 1;
                run.last = item.idx;
                continue;
            }
            out.push(done(*run, &mut widths));
        }
        current = Some(Run {
            x0: item.x0,
            x1: item.x1.max(item.x0),
            fill: Fill::One(item.key),
            count: 1,
            first: item.idx,
            last: item.idx,
        });
    }
    out.extend(current.map(|run| done(run, &mut widths)));
    out
}

/// Settles a mixed run's `most` (once, not at every interval it takes in).
fn done<K: Copy + Eq + Hash>(mut run: Run<K>, widths: &mut HashMap<K, f64>) -> Run<K> {
    if let Fill::Mixed { most, .. } = &mut run.fill {
        if let Some((key, _)) = widths.iter().max_by(|a, b| a.1.total_cmp(b.1)) {
            *most = *key;
        }
        widths.clear();
    }
    run
}
