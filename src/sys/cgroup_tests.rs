//! The cgroup reader against fake trees in a temporary directory.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fake file-system root, removed on drop.
struct FakeRoot(PathBuf);

impl FakeRoot {
    fn new() -> FakeRoot {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "greenrt-cgroup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FakeRoot(dir)
    }

    fn write(&self, path: &str, text: &str) {
        let p = under(&self.0, path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn quota(&self) -> io::Result<Option<f64>> {
        read_cpu_quota(&self.0)
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const V2_MOUNTS: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
";

const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn v2_tree(path: &str) -> FakeRoot {
    let root = FakeRoot::new();
    root.write("/proc/self/cgroup", &format!("0::{path}\n"));
    root.write("/proc/self/mountinfo", V2_MOUNTS);
    root
}

#[test]
fn v2_nested_limits_take_the_lowest_ancestor() {
    let root = v2_tree("/outer/inner");
    root.write("/sys/fs/cgroup/outer/cpu.max", "100000 100000\n");
    root.write("/sys/fs/cgroup/outer/inner/cpu.max", "300000 100000\n");
    assert_eq!(root.quota().unwrap(), Some(1.0));
    // The leaf lower than its parent: the leaf counts.
    root.write("/sys/fs/cgroup/outer/inner/cpu.max", "50000 100000\n");
    assert_eq!(root.quota().unwrap(), Some(0.5));
}

#[test]
fn v2_max_means_no_limit() {
    let root = v2_tree("/a/b");
    root.write("/sys/fs/cgroup/a/cpu.max", "max 100000\n");
    root.write("/sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
    assert_eq!(root.quota().unwrap(), None);
    // An unlimited leaf under a limited parent is limited.
    root.write("/sys/fs/cgroup/a/cpu.max", "150000 100000\n");
    assert_eq!(root.quota().unwrap(), Some(1.5));
}

#[test]
fn v2_root_cgroup_has_no_cpu_max() {
    let root = v2_tree("/");
    std::fs::create_dir_all(root.0.join("sys/fs/cgroup")).unwrap();
    assert_eq!(root.quota().unwrap(), None);
}

#[test]
fn v1_quota_minus_one_is_no_limit() {
    let root = FakeRoot::new();
    root.write(
        "/proc/self/cgroup",
        "4:memory:/x\n2:cpu,cpuacct:/job\n0::/\n",
    );
    root.write("/proc/self/mountinfo", HYBRID_MOUNTS);
    root.write("/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
    root.write(
        "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us",
        "100000\n",
    );
    assert_eq!(root.quota().unwrap(), None);
    root.write(
        "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us",
        "250000\n",
    );
    assert_eq!(root.quota().unwrap(), Some(2.5));
    // The v2 hierarchy of a hybrid system is not the CPU controller's.
    root.write("/sys/fs/cgroup/unified/cpu.max", "10000 100000\n");
    assert_eq!(root.quota().unwrap(), Some(2.5));
}

#[test]
fn v1_mount_of_a_subtree_is_followed() {
    // A container without a cgroup namespace: its cgroup /docker/abc is
    // what is mounted at the mount point.
    let root = FakeRoot::new();
    root.write("/proc/self/cgroup", "3:cpu:/docker/abc\n");
    root.write(
        "/proc/self/mountinfo",
        "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n",
    );
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "150000\n");
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    assert_eq!(root.quota().unwrap(), Some(1.5));
}

#[test]
fn escaped_mount_points_are_unescaped() {
    let root = FakeRoot::new();
    root.write("/proc/self/cgroup", "0::/j\n");
    root.write(
        "/proc/self/mountinfo",
        "30 22 0:26 / /cg\\040root rw - cgroup2 cgroup2 rw\n",
    );
    root.write("/cg root/j/cpu.max", "200000 100000\n");
    assert_eq!(root.quota().unwrap(), Some(2.0));
}

#[test]
fn missing_files_mean_no_limit() {
    let root = FakeRoot::new();
    // No /proc at all.
    assert_eq!(root.quota().unwrap(), None);
    // A cgroup but no CPU controller anywhere.
    root.write("/proc/self/cgroup", "4:memory:/x\n");
    root.write("/proc/self/mountinfo", HYBRID_MOUNTS);
    assert_eq!(root.quota().unwrap(), None);
    // A v2 cgroup whose mount is not listed.
    root.write("/proc/self/cgroup", "0::/x\n");
    root.write(
        "/proc/self/mountinfo",
        "22 1 0:21 / /proc rw - proc proc rw\n",
    );
    assert_eq!(root.quota().unwrap(), None);
    // Listed, but the cgroup's directory is gone (the process moved).
    root.write("/proc/self/mountinfo", V2_MOUNTS);
    assert_eq!(root.quota().unwrap(), None);
}

#[test]
fn malformed_contents_are_errors_not_panics() {
    for bad in [
        "",
        "max",
        "12 0\n",
        "abc 100000\n",
        "0 100000\n",
        "1 2 3\n",
        "-5 100000",
    ] {
        let root = v2_tree("/j");
        root.write("/sys/fs/cgroup/j/cpu.max", bad);
        let e = root.quota().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        assert!(e.to_string().contains("cpu.max"), "{e}");
    }
    let root = FakeRoot::new();
    root.write("/proc/self/cgroup", "1:cpu:/\n");
    root.write(
        "/proc/self/mountinfo",
        HYBRID_MOUNTS.replace("cpu,cpuacct", "cpu").as_str(),
    );
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "lots\n");
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    assert_eq!(root.quota().unwrap_err().kind(), io::ErrorKind::InvalidData);
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "100000\n");
    root.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "0\n");
    assert_eq!(root.quota().unwrap_err().kind(), io::ErrorKind::InvalidData);
    for bad_cgroup in ["garbage\n", "1:cpu\n", "1:cpu:relative\n"] {
        root.write("/proc/self/cgroup", bad_cgroup);
        assert_eq!(root.quota().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
    root.write("/proc/self/cgroup", "1:cpu:/\n");
    for bad_mounts in [
        "no separator here\n",
        "1 2 3 - cgroup\n",
        "1 2 3 / /x\\09 rw - cgroup none rw,cpu\n",
    ] {
        root.write("/proc/self/mountinfo", bad_mounts);
        assert_eq!(
            root.quota().unwrap_err().kind(),
            io::ErrorKind::InvalidData,
            "{bad_mounts:?}"
        );
    }
}

#[test]
fn workers_follow_go_rounding() {
    // Go 1.25's defaultGOMAXPROCS: min(affinity, max(2, ceil(quota))).
    assert_eq!(workers_for(Some(1.5), 8), 2);
    assert_eq!(workers_for(Some(0.5), 8), 2);
    assert_eq!(workers_for(Some(1.0), 8), 2);
    assert_eq!(workers_for(Some(2.01), 8), 3);
    assert_eq!(workers_for(Some(3.0), 8), 3);
    assert_eq!(workers_for(Some(16.0), 8), 8);
    assert_eq!(workers_for(Some(0.5), 1), 1);
    assert_eq!(workers_for(None, 8), 8);
    assert_eq!(workers_for(Some(f64::NAN), 4), 4);
    assert_eq!(workers_for(None, 0), 1);
}

#[test]
fn affinity_is_at_least_one_cpu() {
    let n = affinity_count().expect("sched_getaffinity");
    assert!(n >= 1);
    assert!(n <= std::thread::available_parallelism().map_or(usize::MAX, |_| 4096));
}
