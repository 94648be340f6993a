//! `GREENRT_TRACE=<path>` (`.json`, `.svg`, or both as `a.json,b.svg`):
//! a runtime built with it set records from build to drop and writes the
//! files on drop. The variable is process-wide and read at
//! `Builder::build`, so every test of this binary holds `ENV` while it
//! sets the variable and builds (tests run on parallel threads under
//! `cargo test`), and no other test binary shares the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

static ENV: Mutex<()> = Mutex::new(());

/// A fresh directory for one test's files.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("greenrt-trace-env-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds a 2-worker runtime with `GREENRT_TRACE=value`, runs four named
/// green threads on it, checks that nothing was written before the drop
/// (`paths`), and drops it.
fn run_with_trace_env(value: &str, paths: &[&Path]) {
    let rt = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("GREENRT_TRACE", value);
        let rt = greenrt::Builder::new().workers(2).build();
        std::env::remove_var("GREENRT_TRACE");
        rt.unwrap()
    };
    rt.block_on(|| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                greenrt::task::Builder::new()
                    .name(format!("env-{i}"))
                    .spawn(|| {
                        greenrt::sleep(Duration::from_millis(1));
                        greenrt::yield_now();
                    })
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    for p in paths {
        assert!(!p.exists(), "{} written before the drop", p.display());
    }
    drop(rt);
}

/// The JSON file parses, names one lane per P (`P0`, `P1`), and holds a
/// run of every green thread.
fn check_json(path: &Path) {
    let bytes = std::fs::read(path).expect("the JSON trace was written on drop");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("it parses");
    let events = v["traceEvents"].as_array().unwrap();
    let lanes: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(lanes, ["P0", "P1"]);
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for n in ["main", "env-0", "env-1", "env-2", "env-3"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

/// The SVG file is well-formed XML with one lane per P (`P0`, `P1`),
/// a run drawn, and every green thread in the legend.
fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).expect("the SVG trace was written on drop");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert!(doc.root_element().has_tag_name("svg"));
    let lanes: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .map(|n| n.attribute("data-name").expect("a lane's name"))
        .collect();
    assert_eq!(lanes, ["P0", "P1"]);
    let runs = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("slices"))
        .flat_map(|n| n.children().filter(|c| c.has_tag_name("rect")))
        .count();
    // Runs shorter than a pixel are merged: at least one is drawn.
    assert!(runs >= 1, "{runs} runs drawn");
    let legend: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("entry"))
        .filter_map(|n| n.descendants().find(|d| d.has_tag_name("text")))
        .filter_map(|n| n.text())
        .collect();
    for n in ["main", "env-0", "env-1", "env-2", "env-3"] {
        assert!(
            legend.iter().any(|e| e.starts_with(&format!("{n} "))),
            "{n} not in {legend:?}"
        );
    }
}

#[test]
fn greenrt_trace_writes_the_file_on_drop() {
    let dir = dir("json");
    let path = dir.join("run.json");
    run_with_trace_env(path.to_str().unwrap(), &[&path]);
    check_json(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn greenrt_trace_svg_path_writes_the_picture_on_drop() {
    let dir = dir("svg");
    let path = dir.join("run.svg");
    run_with_trace_env(path.to_str().unwrap(), &[&path]);
    check_svg(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn greenrt_trace_two_paths_write_both_files_on_drop() {
    let dir = dir("both");
    let (json, svg) = (dir.join("a.json"), dir.join("b.svg"));
    let value = format!("{},{}", json.display(), svg.display());
    run_with_trace_env(&value, &[&json, &svg]);
    check_json(&json);
    check_svg(&svg);
    std::fs::remove_dir_all(&dir).unwrap();
}
