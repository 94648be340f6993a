//! The trace picture (`Trace::write_svg`) of a real recording: well-formed
//! XML, one lane per P named as the trace names it, every run inside its
//! lane's track, and every green thread in the legend.
//!
//! `GREENRT_SVG_DEMO=<dir>` also writes the picture there, to look at.

use std::time::{Duration, Instant};

use greenrt::trace;

/// Computes for `d` without yielding.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn num(node: roxmltree::Node, attr: &str) -> f64 {
    node.attribute(attr).unwrap().parse().unwrap()
}

#[test]
fn three_threads_over_about_50_ms_draw_a_lane_per_p_and_a_legend_entry_each() {
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    let trace = rt.block_on(|| {
        trace::start();
        let handles: Vec<_> = (0..3)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("t{i} <&>"))
                    .spawn(|| {
                        for _ in 0..4 {
                            spin(Duration::from_millis(8));
                            greenrt::sleep(Duration::from_millis(3));
                        }
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        trace::stop()
    });
    let mut svg = Vec::new();
    trace.write_svg(&mut svg).unwrap();
    if let Some(dir) = std::env::var_os("GREENRT_SVG_DEMO") {
        std::fs::write(
            std::path::Path::new(&dir).join("recorded_three_threads.svg"),
            &svg,
        )
        .unwrap();
    }
    let text = String::from_utf8(svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");

    let lanes: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .collect();
    assert_eq!(lanes.len(), trace.lanes().len());
    assert!(!lanes.is_empty());
    let mut drawn = 0;
    for (i, (lane, model)) in lanes.iter().zip(trace.lanes()).enumerate() {
        assert_eq!(lane.attribute("data-lane"), Some(i.to_string().as_str()));
        assert_eq!(lane.attribute("data-name"), Some(model.name.as_str()));
        let track = lane
            .children()
            .find(|n| n.attribute("class") == Some("track"))
            .unwrap();
        let (left, right) = (num(track, "x"), num(track, "x") + num(track, "width"));
        let runs = lane
            .descendants()
            .find(|n| n.attribute("class") == Some("slices"))
            .unwrap();
        for rect in runs.children().filter(|n| n.has_tag_name("rect")) {
            let (x, w) = (num(rect, "x"), num(rect, "width"));
            assert!(
                x >= left - 0.01 && x + w <= right + 0.01,
                "run at {x} + {w} outside {left}..{right}"
            );
            drawn += 1;
        }
    }
    let slices = trace.slices().len();
    assert!(
        drawn >= 12 && drawn <= slices,
        "{drawn} runs drawn for {slices} slices"
    );

    let legend: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("entry"))
        .filter_map(|n| n.descendants().find(|d| d.has_tag_name("text")))
        .filter_map(|n| n.text())
        .collect();
    for i in 0..3 {
        let name = format!("t{i} <&> · ");
        assert!(
            legend.iter().any(|e| e.starts_with(&name)),
            "{name:?} not in {legend:?}"
        );
    }
}
