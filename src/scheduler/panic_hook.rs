//! Naming the green thread in panic messages.
//!
//! std's default hook names the OS thread, which for a green thread is
//! whichever worker ran it (`thread 'greenrt-worker-3' panicked`). When
//! the first runtime is built, greenrt installs a hook (once per process)
//! that prints, for a panic on a green thread, std's layout with the
//! green thread instead:
//!
//! ```text
//! green thread 'name' (g42) panicked at src/main.rs:10:5:
//! <message>
//! note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
//! ```
//!
//! (`'<unnamed>'` for a green thread without a name, as std says for OS
//! threads; `gN` is [`crate::task::current_id`]). `RUST_BACKTRACE` works
//! as for std: unset or `0` prints the note on the first panic only, `full`
//! the full backtrace, any other value the short one. Panics on OS threads
//! go to the hook that was set before (std's default, or the
//! application's) unchanged. A hook the application sets after the first
//! runtime replaces greenrt's, as `set_hook` does (it can name the green
//! thread with `task::current_name` and `task::current_id`). Cancellation
//! unwinds ([`crate::Cancelled`]) start with `resume_unwind`, which calls
//! no hook, and stay silent.
//!
//! The message is printed with `eprint!`, so that libtest's output
//! capture holds it as it holds std's; but `eprint!` panics when the write
//! fails, and a panic in a hook aborts the process. So when stderr is
//! already broken (closed, or a pipe without reader) the message goes to
//! fd 2 directly, errors ignored, as std's hook does.

use std::backtrace::Backtrace;
use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

static INSTALL: Once = Once::new();

/// Installs the hook, chaining the one set before; once per process.
pub(crate) fn install() {
    // set_hook panics on a panicking thread (a runtime built in a
    // destructor during an unwind): try again with the next runtime.
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous: Hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| on_panic(&previous, info)));
    });
}

fn on_panic(previous: &Hook, info: &PanicHookInfo<'_>) {
    // The leading newline as std's: the message starts a line.
    let head = super::with_current_g(|g| {
        g.map(|g| {
            let name = g.name.as_deref().unwrap_or("<unnamed>");
            format!("\ngreen thread '{name}' (g{}) panicked at ", g.id)
        })
    });
    let Some(mut out) = head else {
        return previous(info);
    };
    if info.payload().is::<crate::Cancelled>() {
        return;
    }
    match info.location() {
        Some(l) => out.push_str(&format!("{}:{}:{}:\n", l.file(), l.line(), l.column())),
        None => out.push_str("<unknown location>:\n"),
    }
    out.push_str(payload_text(info.payload()));
    out.push('\n');
    backtrace_part(&mut out);
    if stderr_is_broken() {
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    } else {
        eprint!("{out}");
    }
}

/// True if writing to fd 2 would fail now: the fd is closed, or it is a
/// pipe whose reader is gone (a race with a reader closing later remains).
fn stderr_is_broken() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call; a
    // zero timeout makes it a non-blocking query.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n < 0 || pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

/// The message as std prints it (`payload_as_str` is newer than the
/// crate's minimum Rust).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Off,
    Short,
    Full,
}

/// `RUST_BACKTRACE` as std reads it, read once (std caches it too).
fn style() -> Style {
    static STYLE: OnceLock<Style> = OnceLock::new();
    *STYLE.get_or_init(|| match std::env::var("RUST_BACKTRACE").as_deref() {
        Err(_) | Ok("0") => Style::Off,
        Ok("full") => Style::Full,
        Ok(_) => Style::Short,
    })
}

/// The backtrace, or std's note about `RUST_BACKTRACE` on the first panic.
fn backtrace_part(out: &mut String) {
    static NOTED: AtomicBool = AtomicBool::new(false);
    match style() {
        Style::Off => {
            if !NOTED.swap(true, Ordering::Relaxed) {
                out.push_str(
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a \
                     backtrace\n",
                );
            }
        }
        Style::Short => out.push_str(&format!(
            "stack backtrace:\n{}note: Some details are omitted, run with \
             `RUST_BACKTRACE=full` for a verbose backtrace.\n",
            Backtrace::force_capture()
        )),
        Style::Full => out.push_str(&format!(
            "stack backtrace:\n{:#}",
            Backtrace::force_capture()
        )),
    }
}
