//! Container-aware workers: the active-worker limit follows the cgroup CPU
//! quota while green threads run (a fake cgroup tree), and a real cgroup's
//! quota sets a child process's default worker count.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{serial, spin_for, with_timeout};
use greenrt::{Runtime, RuntimeMetrics};

/// A fake file-system root holding a cgroup v2 tree, removed on drop.
struct FakeTree(PathBuf);

impl FakeTree {
    fn new(cpu_max: &str) -> FakeTree {
        let root = std::env::temp_dir().join(format!("greenrt-cgroup-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/cgroup/job")).unwrap();
        std::fs::write(root.join("proc/self/cgroup"), "0::/job\n").unwrap();
        std::fs::write(
            root.join("proc/self/mountinfo"),
            "30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let tree = FakeTree(root);
        tree.set(cpu_max);
        tree
    }

    /// Rewrites cpu.max atomically (a rename), so the reader never sees
    /// a half-written file.
    fn set(&self, cpu_max: &str) {
        let dir = self.0.join("sys/fs/cgroup/job");
        std::fs::write(dir.join("cpu.max.new"), cpu_max).unwrap();
        std::fs::rename(dir.join("cpu.max.new"), dir.join("cpu.max")).unwrap();
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn eventually(rt: &Runtime, what: &str, f: impl Fn(&RuntimeMetrics) -> bool) -> RuntimeMetrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = rt.metrics();
        if f(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never {what}: {m:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn polls(m: &RuntimeMetrics) -> Vec<u64> {
    (0..m.num_workers())
        .map(|w| m.worker_poll_count(w))
        .collect()
}

#[test]
fn the_limit_follows_the_quota_while_green_threads_run() {
    let _s = serial();
    with_timeout(Duration::from_secs(30), || {
        const PS: usize = 4;
        let tree = FakeTree::new("max 100000\n");
        let rt = greenrt::Builder::new()
            .workers(PS)
            .cgroup_root_for_tests(&tree.0)
            .cpu_quota_poll_for_tests(Duration::from_millis(10))
            .build()
            .unwrap();
        assert_eq!(rt.workers(), PS);
        let m = rt.metrics();
        assert_eq!(
            (m.num_workers(), m.num_active_workers(), m.cpu_quota()),
            (PS, PS, None)
        );

        // Green threads that compute in short bursts and yield; each
        // burst counts itself in `running` under `preempt::disable`, so
        // the count is the number of workers running green threads.
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let hogs: Vec<_> = (0..4 * PS)
            .map(|_| {
                let (stop, running, most) = (stop.clone(), running.clone(), most.clone());
                rt.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        {
                            let _np = greenrt::preempt::disable();
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            spin_for(Duration::from_micros(30));
                            running.fetch_sub(1, Ordering::SeqCst);
                        }
                        greenrt::yield_now();
                    }
                })
            })
            .collect();

        // 1.5 CPUs: Go's rule gives 2 workers.
        tree.set("150000 100000\n");
        eventually(&rt, "limited to 2", |m| m.num_active_workers() == 2);
        assert_eq!(rt.workers(), 2);
        assert_eq!(rt.metrics().cpu_quota(), Some(1.5));
        // Let the Ms holding P 2 and 3 reach their next scheduling point.
        std::thread::sleep(Duration::from_millis(100));
        most.store(0, Ordering::SeqCst);
        let before = polls(&rt.metrics());
        std::thread::sleep(Duration::from_millis(300));
        let after = polls(&rt.metrics());
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "{} workers ran green threads at once under a limit of 2",
            most.load(Ordering::SeqCst)
        );
        assert_eq!(before[2..], after[2..], "parked workers ran green threads");
        assert!(
            after[..2].iter().sum::<u64>() > before[..2].iter().sum::<u64>(),
            "the active workers ran nothing: {before:?} -> {after:?}"
        );

        // No limit again: the parked workers run green threads again.
        tree.set("max 100000\n");
        eventually(&rt, "back to 4", |m| m.num_active_workers() == PS);
        let m = eventually(&rt, "parked workers back at work", |m| {
            let now = polls(m);
            now[2] > after[2] && now[3] > after[3]
        });
        assert_eq!(m.cpu_quota(), None);

        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
        drop(tree);
    });
}

/// Green threads that never yield: only preemption takes the parked
/// workers' Ps away (the preemption path hands a P over the limit to a
/// spare M, whose scheduler parks it).
#[test]
fn preempted_hogs_leave_parked_workers() {
    let _s = serial();
    with_timeout(Duration::from_secs(30), || {
        let tree = FakeTree::new("max 100000\n");
        let rt = greenrt::Builder::new()
            .workers(4)
            .preemption(true)
            .preempt_quantum(Duration::from_millis(2))
            .cgroup_root_for_tests(&tree.0)
            .cpu_quota_poll_for_tests(Duration::from_millis(10))
            .build()
            .unwrap();
        if rt.preempt_quantum().is_none() {
            eprintln!("skipped: preemption is unavailable here");
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..8)
            .map(|_| {
                let stop = stop.clone();
                rt.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        tree.set("150000 100000\n");
        eventually(&rt, "limited to 2", |m| m.num_active_workers() == 2);
        std::thread::sleep(Duration::from_millis(150));
        let before = polls(&rt.metrics());
        std::thread::sleep(Duration::from_millis(300));
        let m = rt.metrics();
        let after = polls(&m);
        assert_eq!(before[2..], after[2..], "parked workers ran green threads");
        assert!(
            m.preemptions() > 0 && after[..2].iter().sum::<u64>() > before[..2].iter().sum::<u64>(),
            "the hogs did not take turns on the active workers: {before:?} -> {after:?}"
        );
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
    });
}

#[test]
fn a_malformed_quota_keeps_the_limit_and_a_fixed_count_reads_none() {
    let _s = serial();
    let tree = FakeTree::new("300000 100000\n");
    let rt = greenrt::Builder::new()
        .workers(4)
        .cgroup_root_for_tests(&tree.0)
        .cpu_quota_poll_for_tests(Duration::from_millis(10))
        .build()
        .unwrap();
    assert_eq!(rt.workers(), 3);
    tree.set("garbage\n");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(rt.workers(), 3);
    assert_eq!(rt.block_on(|| greenrt::spawn(|| 7).join().unwrap()), 7);
    drop(rt);

    let fixed = greenrt::Builder::new().workers(3).build().unwrap();
    let m = fixed.metrics();
    assert_eq!(
        (fixed.workers(), m.num_active_workers(), m.cpu_quota()),
        (3, 3, None)
    );
}

/// Body of the child process of `a_real_cgroup_quota_sets_the_default`:
/// waits for the parent to move it into the cgroup, reports the default
/// runtime's workers and quota, then waits for the quota to be lifted.
#[test]
fn cgroup_child() {
    if std::env::var("GREENRT_CGROUP_CHILD").is_err() {
        return;
    }
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    let rt = Runtime::new().unwrap();
    let m = rt.metrics();
    println!(
        "workers={} ps={} quota={:?}",
        rt.workers(),
        m.num_workers(),
        m.cpu_quota()
    );
    line.clear();
    stdin.read_line(&mut line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.metrics().cpu_quota().is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("after quota={:?}", rt.metrics().cpu_quota());
}

/// The v1 cpu controller's directory of this process's cgroup, if the
/// system has one (this test does not handle v2's "no internal
/// processes" rule).
fn own_v1_cpu_cgroup() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == "cpu")
            .then(|| path.to_string())
    })?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (fstype, _, opts) = (tail.next()?, tail.next()?, tail.next()?);
        (fstype == "cgroup" && opts.split(',').any(|o| o == "cpu") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(fields[4]))
    })?;
    Some(mount.join(path.trim_start_matches('/')))
}

/// CPUs this process may run on (std's `available_parallelism` would
/// apply the quota too).
fn affinity() -> usize {
    // SAFETY: cpu_set_t is plain data, all zeroes the empty set; the
    // kernel writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as usize
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[test]
fn a_real_cgroup_quota_sets_the_default() {
    if std::env::var("GREENRT_CGROUP_CHILD").is_ok() {
        return;
    }
    let _s = serial();
    with_timeout(Duration::from_secs(30), real_cgroup_body);
}

fn real_cgroup_body() {
    let Some(parent) = own_v1_cpu_cgroup() else {
        eprintln!("skipped: no cgroup v1 cpu controller mounted with its root");
        return;
    };
    let dir = parent.join(format!("greenrt-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&dir) {
        eprintln!("skipped: cannot create cgroup {}: {e}", dir.display());
        return;
    }
    let _cleanup = RemoveOnDrop(dir.clone());
    if let Err(e) = write(&dir.join("cpu.cfs_period_us"), "100000")
        .and_then(|_| write(&dir.join("cpu.cfs_quota_us"), "150000"))
    {
        eprintln!("skipped: cannot set a quota in {}: {e}", dir.display());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["cgroup_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("GREENRT_CGROUP_CHILD", "1")
        .env_remove("GREENRT_WORKERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    if let Err(e) = write(&dir.join("cgroup.procs"), &child.id().to_string()) {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("skipped: cannot move the child into {}: {e}", dir.display());
        return;
    }
    let mut read_report = |prefix: &str| -> String {
        let mut line = String::new();
        while from_child.read_line(&mut line).unwrap() > 0 {
            // libtest prints "test cgroup_child ... " before the body's
            // output, on the same line.
            if let Some(at) = line.find(prefix) {
                return line[at..].trim().to_string();
            }
            line.clear();
        }
        panic!("the child never reported {prefix:?}");
    };
    writeln!(to_child, "go").unwrap();
    let report = read_report("workers=");
    let affinity = affinity();
    // Go's rule: min(affinity, max(2, ceil(1.5))).
    let expected = affinity.min(2);
    assert_eq!(
        report,
        format!("workers={expected} ps={affinity} quota=Some(1.5)"),
        "(affinity {affinity})"
    );
    // Lift the quota: the running child's runtime notices.
    write(&dir.join("cpu.cfs_quota_us"), "-1").unwrap();
    writeln!(to_child, "lifted").unwrap();
    assert_eq!(read_report("after"), "after quota=None");
    assert!(child.wait().unwrap().success());
}
