//! The `GREENRT_*` environment knobs: one parser per kind of value, each
//! error naming the variable and what it accepts. `Builder::build` checks
//! every knob (so a typo fails there, as `InvalidInput`); the readers
//! deeper down (the io_uring set-up, the stack guard mode) use the same
//! functions. The variables are listed in the crate docs and the README.

use std::io;

/// Number of Ps when `Builder::workers` is not called.
pub(crate) const WORKERS: &str = "GREENRT_WORKERS";
/// Whether the runtime preempts, when `Builder::preemption` is not called.
pub(crate) const PREEMPT: &str = "GREENRT_PREEMPT";
/// Whether file operations may use io_uring.
pub(crate) const IO_URING: &str = "GREENRT_IO_URING";
/// How stack guard pages are made.
pub(crate) const GUARD: &str = "GREENRT_GUARD";
/// Whether freed spawn cells are cached for reuse (`scheduler::cell_cache`).
pub(crate) const CELL_CACHE: &str = "GREENRT_CELL_CACHE";

const FALSE: [&str; 4] = ["off", "0", "false", "no"];
const TRUE: [&str; 4] = ["on", "1", "true", "yes"];

/// A boolean knob's value: off/0/false/no or on/1/true/yes, in any case
/// and with surrounding blanks ignored.
pub(crate) fn parse_bool(name: &str, value: &str) -> io::Result<bool> {
    let v = value.trim();
    if FALSE.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(false)
    } else if TRUE.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(true)
    } else {
        Err(invalid(format!(
            "greenrt: {name} must be one of off, 0, false, no or on, 1, true, yes \
             (any case), got {value:?}"
        )))
    }
}

/// A worker count: an integer from 1 to `MAX_WORKERS`.
pub(crate) fn parse_workers(value: &str) -> io::Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=crate::MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(invalid(format!(
            "greenrt: {WORKERS} must be an integer from 1 to {}, got {value:?}",
            crate::MAX_WORKERS
        ))),
    }
}

/// The stack guard mode: `true` forces the portable `mprotect` guards,
/// `false` (`auto`) uses guard regions where the kernel has them.
pub(crate) fn parse_guard(value: &str) -> io::Result<bool> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("mprotect") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("auto") {
        Ok(false)
    } else {
        Err(invalid(format!(
            "greenrt: {GUARD} must be mprotect or auto, got {value:?}"
        )))
    }
}

/// The variable parsed with `parse`, or None when it is unset. A value
/// that is not Unicode is an error too.
pub(crate) fn read<T>(
    name: &str,
    parse: impl FnOnce(&str) -> io::Result<T>,
) -> io::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) => parse(&v).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(invalid(format!(
            "greenrt: {name} is not valid Unicode: {v:?}"
        ))),
    }
}

/// A boolean knob (see [`parse_bool`]), or None when unset.
pub(crate) fn flag(name: &str) -> io::Result<Option<bool>> {
    read(name, |v| parse_bool(name, v))
}

/// Checks the knobs read outside `Builder::build` (io_uring, UDP GSO,
/// guard mode),
/// so that a bad value fails the build rather than being ignored later.
pub(crate) fn check_lazy_knobs() -> io::Result<()> {
    flag(IO_URING)?;
    flag(crate::net::UDP_GSO_KNOB)?;
    read(GUARD, parse_guard)?;
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_any_case() {
        for v in [
            "off", "OFF", "Off", "0", "false", "FALSE", "no", "No", " off\n",
        ] {
            assert!(!parse_bool(PREEMPT, v).unwrap(), "{v:?}");
        }
        for v in ["on", "ON", "1", "true", "True", "yes", "YES"] {
            assert!(parse_bool(PREEMPT, v).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn a_bad_boolean_names_the_variable_and_the_accepted_values() {
        for v in ["", "2", "of", "disabled", "nope"] {
            let e = parse_bool(IO_URING, v).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            let msg = e.to_string();
            assert!(msg.contains("GREENRT_IO_URING"), "{msg}");
            assert!(
                msg.contains("off, 0, false, no or on, 1, true, yes"),
                "{msg}"
            );
            assert!(msg.contains(&format!("{v:?}")), "{msg}");
        }
    }

    #[test]
    fn workers_must_be_positive() {
        assert_eq!(parse_workers("3").unwrap(), 3);
        assert_eq!(parse_workers(" 12 ").unwrap(), 12);
        assert_eq!(parse_workers("4096").unwrap(), crate::MAX_WORKERS);
        for v in ["0", "-1", "two", "", "1.5", "4097", "18446744073709551616"] {
            let msg = parse_workers(v).unwrap_err().to_string();
            assert!(
                msg.contains("GREENRT_WORKERS must be an integer from 1 to 4096"),
                "{msg}"
            );
        }
    }

    #[test]
    fn guard_modes() {
        assert!(parse_guard("mprotect").unwrap());
        assert!(parse_guard("MPROTECT").unwrap());
        assert!(!parse_guard("auto").unwrap());
        let msg = parse_guard("madvise-ish").unwrap_err().to_string();
        assert!(
            msg.contains("GREENRT_GUARD must be mprotect or auto"),
            "{msg}"
        );
    }
}
