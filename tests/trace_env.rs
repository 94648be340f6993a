//! `GREENRT_TRACE=<path>`: a runtime built with it set records from build
//! to drop and writes the file on drop. The variable is process-wide, so
//! this binary holds this one test alone.

mod trace_util;

use std::time::Duration;

#[test]
fn greenrt_trace_writes_the_file_on_drop() {
    let dir = std::env::temp_dir().join(format!("greenrt-trace-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.json");
    let _ = std::fs::remove_file(&path);
    std::env::set_var("GREENRT_TRACE", &path);
    let rt = greenrt::Builder::new().workers(2).build().unwrap();
    std::env::remove_var("GREENRT_TRACE");
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
    assert!(!path.exists(), "written before the drop");
    drop(rt);
    let bytes = std::fs::read(&path).expect("the trace was written on drop");
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
    std::fs::remove_dir_all(&dir).unwrap();
}
