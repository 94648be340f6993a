//! The panic hook that names green threads (scheduler/panic_hook.rs).
//! Hooks are process-wide and installed once, so each case runs in a
//! child process of its own (a re-run of this binary) and the parent
//! checks the child's stderr.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{child_tag, describe, run_child};

const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Panics with `msg` on a green thread named `name` (if any) and returns
/// the green thread's id; the join reports the panic.
fn panic_in_green_thread(rt: &greenrt::Runtime, name: Option<&str>, msg: &'static str) -> u64 {
    let name = name.map(str::to_owned);
    rt.block_on(move || {
        let b = greenrt::task::Builder::new();
        let b = match name {
            Some(n) => b.name(n),
            None => b,
        };
        let h = b
            .spawn(move || {
                let id = greenrt::task::current_id().unwrap();
                println!("CHILD_GID {id}");
                std::panic::panic_any(msg)
            })
            .unwrap();
        assert!(h.join().is_err());
        0
    })
}

fn stderr_of(tag: &str, backtrace: Option<&str>) -> (String, String) {
    let out = run_child(
        "panic_hook_children",
        tag,
        &[("RUST_BACKTRACE", backtrace), ("RUST_LIB_BACKTRACE", None)],
        CHILD_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD_OK {tag}")),
        "child {tag} failed:\n{}",
        describe(&out)
    );
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The ids the child's green threads printed, in order.
fn gids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.split_once("CHILD_GID ")
                .map(|(_, id)| id.trim().to_owned())
        })
        .collect()
}

static SEEN_BY_USER_HOOK: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn user_hook(info: &std::panic::PanicHookInfo<'_>) {
    let who = match greenrt::task::current_id() {
        Some(id) => format!("g{id}"),
        None => "os".to_string(),
    };
    let msg = common::panic_text(info.payload());
    SEEN_BY_USER_HOOK
        .lock()
        .unwrap()
        .push(format!("{who}: {msg}"));
}

fn children() {
    match child_tag().as_deref() {
        Some("green") => {
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            panic_in_green_thread(&rt, Some("named-one"), "boom named");
            panic_in_green_thread(&rt, None, "boom unnamed");
            // An OS thread's panic keeps std's message.
            let t = std::thread::Builder::new().name("plain-os".into());
            assert!(t.spawn(|| panic!("boom os")).unwrap().join().is_err());
            // A cancelled green thread unwinds silently.
            let rt2 = greenrt::Builder::new().workers(1).build().unwrap();
            rt2.spawn(|| greenrt::sleep(Duration::from_secs(3600)));
            rt2.block_on(|| greenrt::sleep(Duration::from_millis(20)));
            rt2.shutdown_timeout(Duration::from_secs(5));
            println!("CHILD_OK green");
        }
        Some("user_hook_before") => {
            std::panic::set_hook(Box::new(user_hook));
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert!(std::thread::spawn(|| panic!("os after")).join().is_err());
            panic_in_green_thread(&rt, None, "green after");
            let seen = SEEN_BY_USER_HOOK.lock().unwrap().clone();
            // Chained for OS threads; greenrt's message for green ones.
            assert_eq!(seen, ["os: os after"], "{seen:?}");
            println!("CHILD_OK user_hook_before");
        }
        Some("user_hook_after") => {
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            std::panic::set_hook(Box::new(user_hook));
            panic_in_green_thread(&rt, None, "green mine");
            let seen = SEEN_BY_USER_HOOK.lock().unwrap().clone();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(
                seen[0].starts_with('g') && seen[0].ends_with(": green mine"),
                "{seen:?}"
            );
            println!("CHILD_OK user_hook_after");
        }
        Some("backtrace") => {
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            panic_in_green_thread(&rt, Some("bt"), "boom bt");
            println!("CHILD_OK backtrace");
        }
        Some(other) => panic!("unknown child tag {other}"),
        None => unreachable!(),
    }
}

#[test]
fn panic_hook_children() {
    if child_tag().is_some() {
        return children();
    }
    // Green threads named (or '<unnamed>') with their id, std's layout;
    // the RUST_BACKTRACE note once; OS threads as std prints them; no
    // worker names; cancellation silent.
    let (stdout, stderr) = stderr_of("green", None);
    let ids = gids(&stdout);
    assert_eq!(ids.len(), 2, "{stdout}");
    let named = format!(
        "green thread 'named-one' (g{}) panicked at tests/panic_hook.rs:",
        ids[0]
    );
    let unnamed = format!(
        "green thread '<unnamed>' (g{}) panicked at tests/panic_hook.rs:",
        ids[1]
    );
    for (head, msg) in [(&named, "boom named"), (&unnamed, "boom unnamed")] {
        let at = stderr
            .find(head.as_str())
            .unwrap_or_else(|| panic!("no {head:?} in\n{stderr}"));
        let rest = &stderr[at + head.len()..];
        let (line_col, after) = rest.split_once(":\n").expect("location ends with `:\\n`");
        assert!(
            line_col.split(':').all(|n| n.parse::<u32>().is_ok()),
            "location {line_col:?}\n{stderr}"
        );
        assert!(after.starts_with(&format!("{msg}\n")), "{stderr}");
    }
    let note = "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
    let first = stderr.find(&named).unwrap();
    assert!(stderr[first..].contains(note), "{stderr}");
    // (Newer std adds the OS thread id after the name.)
    assert!(stderr.contains("\nthread 'plain-os' "), "{stderr}");
    assert!(
        stderr.contains("panicked at tests/panic_hook.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("boom os\n"), "{stderr}");
    assert!(
        !stderr.contains("greenrt-worker"),
        "a worker was named:\n{stderr}"
    );
    assert_eq!(stderr.matches("panicked at").count(), 3, "{stderr}");

    let (_, stderr) = stderr_of("user_hook_before", None);
    assert!(stderr.contains("green thread '<unnamed>' ("), "{stderr}");
    assert!(stderr.contains(":\ngreen after\n"), "{stderr}");
    assert!(
        !stderr.contains("os after"),
        "the user's hook was not used:\n{stderr}"
    );

    let (_, stderr) = stderr_of("user_hook_after", None);
    assert!(
        !stderr.contains("green mine"),
        "greenrt's hook ran:\n{stderr}"
    );

    let (_, stderr) = stderr_of("backtrace", Some("1"));
    assert!(stderr.contains("green thread 'bt' ("), "{stderr}");
    assert!(stderr.contains("boom bt\nstack backtrace:\n"), "{stderr}");
    assert!(stderr.contains("RUST_BACKTRACE=full"), "{stderr}");
}
