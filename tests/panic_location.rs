//! greenrt's misuse panics (`spawn`, `sleep`, `sleep_until`, `yield_now` outside a green
//! thread; `run`, `block_on` inside one) point at the caller's line, not
//! at greenrt's (`#[track_caller]`). A panic hook records each panic's
//! location; hooks are process-wide, hence this binary of its own with a
//! single test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

static LOCATIONS: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// The location of the panic `f` raises (it must panic).
fn location_of<R>(what: &str, f: impl FnOnce() -> R) -> (String, u32) {
    LOCATIONS.lock().unwrap().clear();
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "{what} did not panic"
    );
    let seen = LOCATIONS.lock().unwrap().clone();
    // A misuse inside a green thread is resumed by `block_on`
    // (resume_unwind calls no hook): the first location is the panic's.
    seen.into_iter()
        .next()
        .unwrap_or_else(|| panic!("{what}: the hook saw no panic"))
}

#[test]
fn misuse_panics_point_at_the_callers_line() {
    // Built first: greenrt installs its hook with the first runtime, and a
    // hook set afterwards wins.
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    std::panic::set_hook(Box::new(|info| {
        let l = info.location().expect("a location");
        LOCATIONS
            .lock()
            .unwrap()
            .push((l.file().to_owned(), l.line()));
    }));
    let here = file!();
    let outside = [
        ("spawn", location_of("spawn", || greenrt::spawn(|| ()))),
        (
            "task::Builder::spawn",
            location_of("Builder::spawn", || {
                greenrt::task::Builder::new().spawn(|| ())
            }),
        ),
        (
            "sleep",
            location_of("sleep", || greenrt::sleep(std::time::Duration::ZERO)),
        ),
        (
            "sleep_until",
            location_of("sleep_until", || {
                greenrt::sleep_until(std::time::Instant::now())
            }),
        ),
        (
            "yield_now",
            location_of("yield_now", || greenrt::yield_now()),
        ),
    ];
    let inside = rt.block_on(|| {
        let rt2 = greenrt::Builder::new().workers(1).build().unwrap();
        [
            ("run", location_of("run", || greenrt::run(|| ()))),
            ("block_on", location_of("block_on", || rt2.block_on(|| ()))),
        ]
    });
    let _ = std::panic::take_hook();
    // The file, not the line: rustfmt may move the calls across lines.
    for (what, (file, line)) in outside.into_iter().chain(inside) {
        assert_eq!(file, here, "{what} panicked at {file}:{line}");
    }
}
