//! The process's CPU quota and affinity, for the default worker count
//! (docs/DESIGN.md, "Container-aware workers").
//!
//! The quota comes from the cgroup the process is in: its path from
//! `/proc/self/cgroup`, the controller's mount point from
//! `/proc/self/mountinfo`, then `cpu.max` (cgroup v2: `"<quota> <period>"`
//! or `"max <period>"`) or `cpu.cfs_quota_us` and `cpu.cfs_period_us`
//! (v1: a quota of -1 is no limit) in that cgroup and in every ancestor
//! up to the mount point: a child cannot use more than its parent allows,
//! so the smallest quota counts. A v1 hierarchy with the `cpu` controller
//! takes precedence over the v2 one (a hybrid system, as Go decides).
//!
//! Everything is read below a root directory, `/` normally: tests point
//! it at a fake tree (`proc/self/cgroup`, `proc/self/mountinfo` and the
//! cgroup files under the mount points it names). A missing file means
//! "no limit there"; a malformed one is an `InvalidData` error naming the
//! file, and the runtime then runs without a quota (never a panic).

use std::io;
use std::path::{Path, PathBuf};

/// Which cgroup hierarchy holds the process's CPU controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The CPU bandwidth the process may use on average, in CPUs (quota over
/// period), or None when no cgroup limits it. `root` is the file-system
/// root to read below (`/`, or a test's fake tree).
pub(crate) fn read_cpu_quota(root: &Path) -> io::Result<Option<f64>> {
    let cgroups = match read(&under(root, "/proc/self/cgroup")) {
        Ok(text) => text,
        // No cgroups here at all (not Linux's procfs, or not mounted).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((version, path)) = parse_proc_cgroup(&cgroups)? else {
        return Ok(None);
    };
    let mounts = read(&under(root, "/proc/self/mountinfo"))?;
    let Some((mount_root, mount_point)) = find_mount(&mounts, version)? else {
        return Ok(None);
    };
    let top = under(root, &mount_point);
    // The cgroup's path is relative to its hierarchy's root; the mount may
    // show only a subtree of it (a container without a cgroup namespace
    // sees its own cgroup mounted at the mount point).
    let relative = match path.strip_prefix(mount_root.trim_end_matches('/')) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ if mount_root == "/" => path.as_str(),
        // Not below the mounted subtree: all we can read is the mount.
        _ => "",
    };
    let leaf = under(&top, relative);
    let mut lowest: Option<f64> = None;
    let mut dir = leaf.as_path();
    loop {
        if let Some(cpus) = quota_at(dir, version)? {
            lowest = Some(lowest.map_or(cpus, |l| l.min(cpus)));
        }
        if dir == top {
            break;
        }
        match dir.parent() {
            Some(parent) if parent.starts_with(&top) => dir = parent,
            _ => break,
        }
    }
    Ok(lowest)
}

/// The default worker count for a quota of `quota` CPUs and `affinity`
/// CPUs to run on, by Go 1.25's rule (`defaultGOMAXPROCS`): the quota
/// rounded up, and at least 2 — a process limited to half a CPU still
/// gets two workers, so that one green thread blocked where it cannot be
/// preempted does not stop the rest, and the kernel's bandwidth control,
/// not the runtime, enforces the quota — but never more than `affinity`.
/// At least 1.
pub(crate) fn workers_for(quota: Option<f64>, affinity: usize) -> usize {
    let affinity = affinity.max(1);
    match quota {
        Some(cpus) if cpus.is_finite() && cpus > 0.0 => {
            let wanted = cpus.ceil().max(2.0);
            if wanted >= affinity as f64 {
                affinity
            } else {
                wanted as usize
            }
        }
        _ => affinity,
    }
}

/// How many CPUs the calling thread may run on (`sched_getaffinity`), or
/// None when the call fails (a set larger than 1024 CPUs, say).
pub(crate) fn affinity_count() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size is the set's own and
    // the kernel writes at most that many bytes into it.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `set` was filled in by the kernel above.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// `abs` (an absolute path as procfs prints it) below `root`.
fn under(root: &Path, abs: &str) -> PathBuf {
    let rel = abs.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("greenrt: reading {}: {e}", path.display()),
        )
    })
}

fn malformed(what: &str, detail: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("greenrt: malformed {what}: {detail:?}"),
    )
}

/// The hierarchy holding the CPU controller and the process's cgroup in
/// it, from `/proc/self/cgroup` (`hierarchy-id:controllers:path` lines;
/// v2's is `0::path`). A v1 `cpu` controller wins over v2.
fn parse_proc_cgroup(text: &str) -> io::Result<Option<(Version, String)>> {
    let mut v2 = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed("/proc/self/cgroup line", line));
        };
        if !path.starts_with('/') {
            return Err(malformed("/proc/self/cgroup line", line));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            return Ok(Some((Version::V1, path.to_string())));
        }
    }
    Ok(v2.map(|p| (Version::V2, p)))
}

/// The root within the hierarchy and the mount point of the `version`
/// hierarchy's mount (a `cgroup` mount with `cpu` among its super
/// options, or the `cgroup2` mount), from `/proc/self/mountinfo`:
///
/// `36 35 98:0 /root /mount/point rw,noatime master:1 - cgroup cgroup rw,cpu`
fn find_mount(text: &str, version: Version) -> io::Result<Option<(String, String)>> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((before, after)) = line.split_once(" - ") else {
            return Err(malformed("/proc/self/mountinfo line", line));
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (Some(fstype), Some(_source)) = (tail.next(), tail.next()) else {
            return Err(malformed("/proc/self/mountinfo line", line));
        };
        if fields.len() < 6 {
            return Err(malformed("/proc/self/mountinfo line", line));
        }
        let super_options = tail.next().unwrap_or("");
        let wanted = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && super_options.split(',').any(|o| o == "cpu"),
        };
        if wanted {
            return Ok(Some((unescape(fields[3])?, unescape(fields[4])?)));
        }
    }
    Ok(None)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and tab,
/// newline and backslash likewise).
fn unescape(field: &str) -> io::Result<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .ok_or_else(|| malformed("escape in /proc/self/mountinfo", field))?;
        let value = code.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
        out.push(
            u8::try_from(value).map_err(|_| malformed("escape in /proc/self/mountinfo", field))?,
        );
        i += 4;
    }
    String::from_utf8(out).map_err(|_| malformed("path in /proc/self/mountinfo", field))
}

/// The quota set on the cgroup directory `dir` itself, in CPUs; None when
/// it sets none (or has no such file: v2's root cgroup has no `cpu.max`).
fn quota_at(dir: &Path, version: Version) -> io::Result<Option<f64>> {
    match version {
        Version::V2 => {
            let path = dir.join("cpu.max");
            let Some(text) = read_if_present(&path)? else {
                return Ok(None);
            };
            parse_cpu_max(&text).map_err(|_| malformed(&path.display().to_string(), &text))
        }
        Version::V1 => {
            let quota_path = dir.join("cpu.cfs_quota_us");
            let Some(quota) = read_if_present(&quota_path)? else {
                return Ok(None);
            };
            let quota: i64 = quota
                .trim()
                .parse()
                .map_err(|_| malformed(&quota_path.display().to_string(), &quota))?;
            if quota < 0 {
                return Ok(None);
            }
            let period_path = dir.join("cpu.cfs_period_us");
            let Some(period) = read_if_present(&period_path)? else {
                return Ok(None);
            };
            match period.trim().parse::<i64>() {
                Ok(p) if p > 0 && quota > 0 => Ok(Some(quota as f64 / p as f64)),
                _ => Err(malformed(&period_path.display().to_string(), &period)),
            }
        }
    }
}

/// `cpu.max`: `"max <period>"` (no limit) or `"<quota> <period>"`.
fn parse_cpu_max(text: &str) -> Result<Option<f64>, ()> {
    let mut words = text.split_whitespace();
    let (Some(quota), Some(period), None) = (words.next(), words.next(), words.next()) else {
        return Err(());
    };
    let period: u64 = period.parse().map_err(|_| ())?;
    if period == 0 {
        return Err(());
    }
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| ())?;
    if quota == 0 {
        return Err(());
    }
    Ok(Some(quota as f64 / period as f64))
}

fn read_if_present(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("greenrt: reading {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
