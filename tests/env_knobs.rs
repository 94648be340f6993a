//! The `GREENRT_*` knobs as `Builder::build` reads them: booleans in any
//! case, and a bad value an `InvalidInput` error naming the variable. The
//! environment is process-wide: this binary has a single test, which sets
//! each variable before building a runtime. (The parsing itself is unit
//! tested in src/env.rs.)

use std::io;

fn set(name: &str, value: Option<&str>) {
    // The only test of this binary, and no runtime is running while the
    // environment changes: no other thread reads it meanwhile.
    match value {
        Some(v) => std::env::set_var(name, v),
        None => std::env::remove_var(name),
    }
}

fn build_err(what: &str) -> String {
    let err = greenrt::Builder::new().workers(1).build().expect_err(what);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}: {err}");
    err.to_string()
}

#[test]
fn greenrt_env_knobs_are_strict_and_case_insensitive() {
    for name in [
        "GREENRT_PREEMPT",
        "GREENRT_IO_URING",
        "GREENRT_GUARD",
        "GREENRT_WORKERS",
    ] {
        set(name, None);
    }
    // GREENRT_PREEMPT: "OFF" and "0" turn preemption off (both used to
    // leave it on), "Yes" on.
    for (value, on) in [
        ("OFF", false),
        ("0", false),
        ("No", false),
        ("Yes", true),
        ("1", true),
    ] {
        set("GREENRT_PREEMPT", Some(value));
        let rt = greenrt::Builder::new().workers(1).build().unwrap();
        assert_eq!(
            rt.preempt_quantum().is_some(),
            on,
            "GREENRT_PREEMPT={value}"
        );
        assert_eq!(rt.block_on(|| 2 + 2), 4);
    }
    set("GREENRT_PREEMPT", Some("sometimes"));
    let msg = build_err("GREENRT_PREEMPT=sometimes");
    assert!(msg.contains("GREENRT_PREEMPT"), "{msg}");
    assert!(
        msg.contains("off, 0, false, no or on, 1, true, yes"),
        "{msg}"
    );
    // An explicit setting does not consult the variable.
    let rt = greenrt::Builder::new().workers(1).preemption(false).build();
    assert!(rt.unwrap().preempt_quantum().is_none());
    set("GREENRT_PREEMPT", None);

    set("GREENRT_WORKERS", Some("0"));
    let err = greenrt::Builder::new()
        .build()
        .expect_err("GREENRT_WORKERS=0");
    assert!(err.to_string().contains("GREENRT_WORKERS"), "{err}");
    // More workers than the runtime takes: an error, not a capacity
    // overflow panic or an allocation failure's abort.
    set("GREENRT_WORKERS", Some("18446744073709551615"));
    let err = greenrt::Builder::new()
        .build()
        .expect_err("GREENRT_WORKERS=usize::MAX");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("GREENRT_WORKERS"), "{err}");
    set("GREENRT_WORKERS", None);

    set("GREENRT_IO_URING", Some("disabled"));
    let msg = build_err("GREENRT_IO_URING=disabled");
    assert!(msg.contains("GREENRT_IO_URING"), "{msg}");
    set("GREENRT_IO_URING", Some("FALSE"));
    greenrt::Builder::new()
        .workers(1)
        .build()
        .expect("GREENRT_IO_URING=FALSE");
    // The backend is chosen once per process, at its first use: here.
    assert_eq!(
        greenrt::fs::backend(),
        greenrt::fs::Backend::BlockingHandoff
    );
    let reason = greenrt::fs::backend_reason().expect("a reason");
    assert!(reason.contains("GREENRT_IO_URING"), "{reason}");
    set("GREENRT_IO_URING", None);

    set("GREENRT_GUARD", Some("mprotec"));
    let msg = build_err("GREENRT_GUARD=mprotec");
    assert!(
        msg.contains("GREENRT_GUARD must be mprotect or auto"),
        "{msg}"
    );
    set("GREENRT_GUARD", Some("auto"));
    greenrt::Builder::new()
        .workers(1)
        .build()
        .expect("GREENRT_GUARD=auto");
    set("GREENRT_GUARD", None);
}
