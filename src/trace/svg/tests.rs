//! The picture, drawn from made-up traces: well-formed, one lane per P,
//! runs inside the axis, names escaped, size bounded however many slices.
//!
//! `GREENRT_SVG_DEMO=<dir>` also writes each picture there, to look at.

use std::collections::HashMap;
use std::time::Duration;

use super::runs::{self, Fill, Item, MIN_PX};
use super::{PLOT_X0, PLOT_X1};
use crate::trace::{BlockReason, Lane, Slice, StopReason, Trace};

fn trace(lanes: usize, duration: Duration, slices: Vec<Slice>) -> Trace {
    Trace {
        pid: 1,
        duration,
        lanes: (0..lanes)
            .map(|p| Lane {
                name: format!("P{p}"),
                runtime: 0,
                p,
            })
            .collect(),
        slices,
        events: Vec::new(),
        names: HashMap::new(),
        dropped: 0,
    }
}

fn slice(lane: usize, m: usize, g: u64, start_us: u64, end_us: u64, reason: StopReason) -> Slice {
    Slice {
        lane,
        m,
        g,
        start: Duration::from_micros(start_us),
        end: Duration::from_micros(end_us),
        reason,
    }
}

/// `threads` green threads taking turns of `turn_us` on one P until each
/// has run `each_us` (cpu_bound with preemption), the P passing between
/// two Ms at every turn.
fn round_robin(threads: u64, turn_us: u64, each_us: u64) -> Trace {
    let mut left = vec![each_us; threads as usize];
    let mut slices = Vec::new();
    let mut t = 0;
    while left.iter().any(|&l| l > 0) {
        for g in 0..threads {
            let run = left[g as usize].min(turn_us);
            if run == 0 {
                continue;
            }
            left[g as usize] -= run;
            let reason = if left[g as usize] == 0 {
                StopReason::Exit
            } else {
                StopReason::Preempted
            };
            slices.push(slice(0, slices.len() % 2, g + 1, t, t + run, reason));
            t += run;
        }
    }
    trace(1, Duration::from_micros(t), slices)
}

fn svg(trace: &Trace, demo_name: &str) -> String {
    let mut out = Vec::new();
    trace.write_svg(&mut out).unwrap();
    if let Some(dir) = std::env::var_os("GREENRT_SVG_DEMO") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{demo_name}.svg")),
            &out,
        )
        .unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn lanes<'a>(doc: &'a roxmltree::Document) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .collect()
}

fn num(node: roxmltree::Node, attr: &str) -> f64 {
    node.attribute(attr).unwrap().parse().unwrap()
}

/// The rects drawn for runs in a lane's bar.
fn run_rects<'a>(lane: roxmltree::Node<'a, 'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    let slices = lane
        .children()
        .find(|n| n.attribute("class") == Some("slices"))
        .unwrap();
    slices
        .children()
        .filter(|n| n.has_tag_name("rect"))
        .collect()
}

#[test]
fn well_formed_with_one_lane_per_p_and_runs_inside_the_axis() {
    let slices = vec![
        slice(0, 0, 1, 0, 4_000, StopReason::Preempted),
        slice(
            0,
            1,
            2,
            4_000,
            9_000,
            StopReason::Blocked(BlockReason::Channel),
        ),
        slice(1, 2, 3, 1_000, 2_000, StopReason::Yield),
        // Past the recording's end: the axis reaches it.
        slice(2, 3, 1, 5_000, 12_000, StopReason::Running),
    ];
    let text = svg(&trace(3, Duration::from_millis(10), slices), "three_lanes");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let stray: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(stray.is_empty(), "text outside any element: {stray:?}");
    let lanes = lanes(&doc);
    assert_eq!(lanes.len(), 3);
    for (i, lane) in lanes.iter().enumerate() {
        assert_eq!(lane.attribute("data-lane"), Some(i.to_string().as_str()));
        for rect in run_rects(*lane) {
            let (x, w) = (num(rect, "x"), num(rect, "width"));
            assert!(
                x >= PLOT_X0 - 0.01 && x + w <= PLOT_X1 + 0.01,
                "{x} + {w} outside the axis"
            );
        }
    }
    assert_eq!(run_rects(lanes[0]).len(), 2);
    assert_eq!(run_rects(lanes[2]).len(), 1);
    for class in ["mark preempted", "mark blocked", "mark yield"] {
        assert!(
            doc.descendants()
                .any(|n| n.attribute("class") == Some(class)),
            "no {class}"
        );
    }
    assert!(
        text.contains("12.0 ms"),
        "the axis reaches the last slice's end"
    );
}

#[test]
fn three_threads_over_50_ms_each_run_drawn_and_labelled() {
    let t = round_robin(3, 10_000, 16_000);
    assert!(t.duration <= Duration::from_millis(50));
    let text = svg(&t, "three_threads_50ms");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let lane = lanes(&doc)[0];
    assert_eq!(run_rects(lane).len(), t.slices.len());
    let labels: Vec<_> = lane
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for g in ["g1", "g2", "g3"] {
        assert!(labels.contains(&g), "{g} not labelled in {labels:?}");
    }
    let ms_band = lane
        .children()
        .find(|n| n.attribute("class") == Some("ms"))
        .unwrap();
    assert!(
        ms_band.descendants().any(|n| n.text() == Some("M1")),
        "the M band names the Ms"
    );
}

#[test]
fn names_are_escaped() {
    let mut t = trace(
        1,
        Duration::from_millis(10),
        vec![slice(0, 0, 7, 0, 9_000, StopReason::Exit)],
    );
    let name = "<b>&\"quoted\" 'x' \u{1}";
    t.names.insert(7, name.to_owned());
    t.lanes[0].name = "P<0>&".to_owned();
    let text = svg(&t, "escaped");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let texts: Vec<_> = doc.descendants().filter_map(|n| n.text()).collect();
    let shown = "<b>&\"quoted\" 'x' \u{fffd}";
    assert!(texts.contains(&shown), "label missing from {texts:?}");
    assert!(texts.contains(&"P<0>&"));
    assert_eq!(lanes(&doc)[0].attribute("data-name"), Some("P<0>&"));
}

#[test]
fn thirty_threads_over_8_s_draws_every_run_of_a_10_ms_quantum() {
    let t = round_robin(30, 10_000, 270_000);
    let text = svg(&t, "thirty_threads_8s");
    assert!(text.len() < 3_000_000, "{} bytes", text.len());
    let doc = roxmltree::Document::parse(&text).unwrap();
    let rects = run_rects(lanes(&doc)[0]);
    assert_eq!(
        rects.len(),
        t.slices.len(),
        "a 10 ms run is about 2 px wide: each drawn"
    );
    assert!(rects.iter().all(|r| r.attribute("class") != Some("merged")));
    let entries = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("entry"))
        .count();
    assert_eq!(entries, 30);
}

#[test]
fn thirty_threads_over_8_s_at_a_1_ms_quantum_merge_into_grey() {
    // 8100 runs of 0.18 px: one grey stretch, a small file.
    let t = round_robin(30, 1_000, 270_000);
    let text = svg(&t, "thirty_threads_8s_1ms");
    assert!(text.len() < 200_000, "{} bytes", text.len());
    let doc = roxmltree::Document::parse(&text).unwrap();
    let rects = run_rects(lanes(&doc)[0]);
    assert!(rects.len() < 10, "{} rects", rects.len());
    assert_eq!(rects[0].attribute("class"), Some("merged"));
}

#[test]
fn threads_one_after_another_are_each_labelled_with_name_and_length() {
    // cpu_bound without preemption: 30 runs of 270 ms, one per thread.
    let mut t = round_robin(30, 270_000, 270_000);
    t.names = (1..=30).map(|g| (g, format!("t{}", g - 1))).collect();
    let text = svg(&t, "thirty_threads_one_after_another");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let lane = lanes(&doc)[0];
    assert_eq!(run_rects(lane).len(), 30);
    let texts: Vec<_> = lane
        .descendants()
        .filter(|n| n.is_element())
        .filter_map(|n| n.text())
        .collect();
    for i in 0..30 {
        assert!(
            texts.contains(&format!("t{i}").as_str()),
            "t{i} not labelled"
        );
    }
    assert_eq!(texts.iter().filter(|t| **t == "270 ms").count(), 30);
}

#[test]
fn a_million_slices_stay_a_small_file() {
    // 1 µs turns of 40 threads on 2 Ps for half a second each.
    let mut slices = Vec::new();
    for lane in 0..2 {
        for i in 0..500_000u64 {
            let g = (i % 40) + lane as u64 * 40;
            slices.push(slice(lane, lane, g, i, i + 1, StopReason::Preempted));
        }
    }
    let t = trace(2, Duration::from_millis(500), slices);
    let text = svg(&t, "million_slices");
    assert!(text.len() < 2_000_000, "{} bytes", text.len());
    let doc = roxmltree::Document::parse(&text).unwrap();
    for lane in lanes(&doc) {
        let rects = run_rects(lane);
        assert!(
            rects.len() <= 2 * (PLOT_X1 - PLOT_X0) as usize,
            "{} rects",
            rects.len()
        );
        assert!(rects.iter().all(|r| r.attribute("class") == Some("merged")));
    }
    let others = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("others"))
        .unwrap();
    assert!(
        others.text().unwrap().starts_with("+ 50 others"),
        "legend capped at 30"
    );
}

#[test]
fn an_empty_trace_is_still_a_picture() {
    let text = svg(&Trace::default(), "empty");
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert!(lanes(&doc).is_empty());
    assert!(text.contains("no runs recorded"));
}

fn items(spans: &[(f64, f64, u32)]) -> Vec<Item<u32>> {
    spans
        .iter()
        .enumerate()
        .map(|(idx, &(x0, x1, key))| Item { x0, x1, key, idx })
        .collect()
}

#[test]
fn coalescing_merges_only_what_a_pixel_cannot_show() {
    // Narrow runs of two keys, then a wide one: the narrow ones go grey
    // in runs of a pixel, the wide one keeps its colour.
    let runs = runs::coalesce(items(&[
        (0.0, 0.4, 1),
        (0.4, 0.8, 2),
        (0.8, 1.2, 1),
        (1.2, 1.5, 2),
        (1.5, 9.0, 3),
    ]));
    let fills: Vec<_> = runs.iter().map(|r| r.fill).collect();
    assert_eq!(
        fills[0],
        Fill::Mixed {
            distinct: 2,
            most: 1
        }
    );
    assert_eq!(fills.last(), Some(&Fill::One(3)));
    assert!(runs
        .iter()
        .all(|r| r.x1 - r.x0 >= MIN_PX || r.fill == Fill::One(3) || r.last == 3));
    // The same key back to back is one run, however wide.
    let runs = runs::coalesce(items(&[(0.0, 5.0, 1), (5.2, 9.0, 1), (20.0, 20.1, 1)]));
    assert_eq!(runs.len(), 2, "a gap of a pixel or more keeps runs apart");
    assert_eq!((runs[0].count, runs[0].first, runs[0].last), (2, 0, 1));
    // A wide run between narrow ones is never greyed.
    let runs = runs::coalesce(items(&[(0.0, 0.2, 1), (0.2, 5.0, 2), (5.0, 5.2, 3)]));
    assert_eq!(
        runs.iter().map(|r| r.fill).collect::<Vec<_>>(),
        [Fill::One(1), Fill::One(2), Fill::One(3)]
    );
}
