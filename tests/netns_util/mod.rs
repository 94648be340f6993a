//! Two network namespaces joined by a veth pair, for the tests that send
//! traffic across a real (virtual) link: netns_veth.rs and
//! netns_faults.rs.
//!
//! [`Veth::create`] makes two uniquely named namespaces (`ip netns add`),
//! a veth pair with one end in each (`ip link add ... netns ... type veth
//! peer ... netns ...`), addresses [`SERVER_IP`]/24 and [`CLIENT_IP`]/24,
//! and brings the links up; dropping it deletes both namespaces, which
//! deletes the pair (also when the test panics: the drop runs while
//! unwinding). Namespaces left by a killed test process (their names carry
//! its pid) are deleted by the next `create`. Without root, without `ip`,
//! or where the kernel refuses namespaces or veth, `create` prints why and
//! returns `None`: the test skips.
//!
//! # Running code inside a namespace
//!
//! A network namespace belongs to a thread, and a socket belongs to the
//! namespace of the thread that created it, for good: it may be used from
//! any thread afterwards. New threads start in their creator's namespace.
//! So the tests:
//!
//! - build the server's greenrt runtime on a thread that has entered the
//!   server namespace ([`Netns::run`]), and call `block_on` there: every
//!   worker, spare and helper thread of that runtime is started by a
//!   thread of the runtime, so it starts in the server namespace, and every
//!   socket green code creates (a listener, the proxy's upstream connection)
//!   is in it. [`Netns::assert_threads_inside`] checks that afterwards.
//! - create each client socket on a short-lived OS thread that enters the
//!   client namespace ([`Netns::run`] again, called from a green thread:
//!   the helper thread starts in the server namespace and moves), then
//!   hand it to greenrt with `TryFrom<std::net::TcpStream>` and use it from
//!   green threads.
//!
//! Only one runtime may be running then: the netpoller is process-wide, so
//! a thread of runtime X can start an M of runtime Y, which would start in
//! X's namespace. Hence also nothing outside the server namespace may wake
//! green threads of the runtime (no `rt.spawn` from the test thread).
//! (The other way, re-executing the test binary under `ip netns exec`, would
//! put the server in a process of its own; it needs a second process and a
//! way to report back, and gains nothing that the check above does not.)
#![allow(dead_code)]

pub mod faults;
pub mod traffic;

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server end's address (in the server namespace).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client end's address (in the client namespace).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The veth end in the server namespace.
pub const SERVER_IF: &str = "veth-srv";
/// The veth end in the client namespace.
pub const CLIENT_IF: &str = "veth-cli";

/// Prefix of the namespaces' names: `greenrt-PID-N-srv` / `-cli`.
const PREFIX: &str = "greenrt-";

/// A named network namespace, open (so it can be entered) until dropped.
pub struct Netns {
    pub name: String,
    file: File,
}

impl Netns {
    fn add(name: String) -> Result<Netns, String> {
        ip(&["netns", "add", &name])?;
        match File::open(format!("/run/netns/{name}")) {
            Ok(file) => Ok(Netns { name, file }),
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                Err(format!("open /run/netns/{name}: {e}"))
            }
        }
    }

    /// Moves the calling thread into this namespace (for good).
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns on an fd this struct owns and keeps open; it changes
        // only the calling thread's network namespace.
        let r = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Runs `f` on a new OS thread inside this namespace and returns its
    /// result (a panic in `f` is resumed here). From a green thread this
    /// blocks its worker until `f` returns: keep `f` short (a connect).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let t = std::thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(s, || {
                    self.enter()
                        .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
                    f()
                })
                .expect("spawn a thread for the namespace");
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// The namespace's inode (what /proc/*/ns/net links name).
    fn link(&self) -> String {
        let ino = std::os::unix::fs::MetadataExt::ino(&self.file.metadata().unwrap());
        format!("net:[{ino}]")
    }

    /// Asserts that every thread of this process whose name starts with
    /// `prefix` (a runtime's `thread_name`) is inside this namespace, and
    /// that there is at least one.
    pub fn assert_threads_inside(&self, prefix: &str) {
        let want = self.link();
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            // A thread that exited since the listing has no link: skip it.
            let Ok(ns) = std::fs::read_link(path.join("ns/net")) else {
                continue;
            };
            let ns = ns.to_string_lossy().into_owned();
            assert_eq!(ns, want, "thread {} is outside {}", comm.trim(), self.name);
            seen += 1;
        }
        assert!(seen > 0, "no thread named {prefix}* to check");
    }

    /// The bytes received so far on interface `dev` of this namespace
    /// (/proc/thread-self/net/dev, read by a thread inside it).
    pub fn rx_bytes(&self, dev: &str) -> u64 {
        let table = self.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"));
        let table = table.expect("read /proc/thread-self/net/dev");
        let line = table
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{dev}:")))
            .unwrap_or_else(|| panic!("no {dev} in {}: {table}", self.name));
        line.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Runs `nft -f -` inside the namespace with `rules` on its stdin.
    pub fn nft(&self, rules: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec {} nft: {e}", self.name))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Waited for even if the write fails (nft exited early: its
        // stderr says why).
        let wrote = io::Write::write_all(&mut stdin, rules.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() && wrote.is_ok() {
            Ok(())
        } else {
            Err(format!(
                "nft -f in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// The two namespaces and the veth pair between them; deleted on drop.
pub struct Veth {
    pub server: Netns,
    pub client: Netns,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Veth {
    /// Sets the pair up, or prints why it cannot and returns `None`.
    pub fn create() -> Option<Veth> {
        match Veth::try_create() {
            Ok(v) => Some(v),
            Err(reason) => {
                eprintln!("skipped: no veth pair between network namespaces: {reason}");
                None
            }
        }
    }

    fn try_create() -> Result<Veth, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (ip netns add needs CAP_SYS_ADMIN)".into());
        }
        remove_stale();
        let tag = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = Netns::add(format!("{tag}-srv"))?;
        // Dropping `veth` deletes what exists so far if a step fails.
        let veth = Veth {
            client: match Netns::add(format!("{tag}-cli")) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ip(&["netns", "del", &server.name]);
                    return Err(e);
                }
            },
            server,
        };
        veth.link_up()?;
        Ok(veth)
    }

    fn link_up(&self) -> Result<(), String> {
        let (s, c) = (&self.server.name, &self.client.name);
        ip(&[
            "link", "add", SERVER_IF, "netns", s, "type", "veth", "peer", "name", CLIENT_IF,
            "netns", c,
        ])?;
        for (ns, dev, addr) in [(s, SERVER_IF, SERVER_IP), (c, CLIENT_IF, CLIENT_IP)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for ns in [&self.server.name, &self.client.name] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Runs `ip ARGS`; an error says what failed and ip's complaint.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespaces of test processes that no longer run (killed
/// before their `Veth` was dropped).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Open fds of this process, once the splice pipe pool is emptied.
pub fn settled_fds() -> usize {
    greenrt::io::clear_pipe_pool();
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}
