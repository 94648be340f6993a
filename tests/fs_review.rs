//! Regressions found by reviewing greenrt::fs: each test failed (hung,
//! misread or leaked) before its fix.

mod common;

use std::io::{Read, Seek};
use std::time::Duration;

use greenrt::fs::{AlignedBuf, OpenOptions};

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("greenrt-fs-review-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Asking why io_uring is not used before any file operation made the
/// rings without the rest of their set-up: every later operation was
/// queued and never submitted (the probe read of a direct open hung).
/// Needs a fresh process: the rings are made once per process.
#[test]
fn backend_reason_before_any_file_operation_leaves_file_io_working() {
    const NAME: &str = "backend_reason_before_any_file_operation_leaves_file_io_working";
    if common::child_tag().as_deref() == Some("reason_first") {
        println!("backend_reason: {:?}", greenrt::fs::backend_reason());
        let path = temp_path("reason-first.dat");
        std::fs::write(&path, vec![1u8; 1 << 16]).unwrap();
        let rt = common::runtime(2);
        let p = path.clone();
        let n = rt.block_on(move || {
            let f = OpenOptions::new().read(true).direct(true).open(&p).unwrap();
            let mut b = AlignedBuf::new(4096, 4096);
            f.read_at(&mut b, 4096).unwrap()
        });
        assert_eq!(n, 4096);
        std::fs::remove_file(&path).unwrap();
        println!("CHILD_OK reason_first");
        return;
    }
    let out = common::run_child(NAME, "reason_first", &[], Duration::from_secs(20));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("CHILD_OK reason_first"),
        "{}",
        common::describe(&out)
    );
}

/// O_DIRECT through `custom_flags` (not `.direct(true)`): the file had no
/// alignment, so reads through the position used io_uring's position
/// offset, which a direct read does not move: blocks were read twice.
#[test]
fn o_direct_through_custom_flags_is_a_direct_file() {
    let path = temp_path("custom-flags.dat");
    let data: Vec<u8> = (0..16 * 4096).map(|i| (i / 4096) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let rt = common::runtime(1);
    let p = path.clone();
    rt.block_on(move || {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
            .unwrap();
        assert!(
            f.direct_alignment().is_some(),
            "O_DIRECT file without alignment"
        );
        let mut buf = AlignedBuf::new(4096, 4096);
        let mut firsts = Vec::new();
        for _ in 0..4 {
            assert_eq!(f.read(&mut buf).unwrap(), 4096);
            firsts.push(buf[0]);
        }
        assert_eq!(firsts, [0, 1, 2, 3]);
        assert_eq!(f.stream_position().unwrap(), 4 * 4096);
    });
    std::fs::remove_file(&path).unwrap();
}

fn fds_to(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t == path)
        .count()
}

/// A green thread cancelled (its runtime shut down) while its open(2)
/// blocked unwound after the open returned, dropping the raw fd unclosed.
#[test]
fn open_interrupted_by_shutdown_closes_its_fd() {
    let fifo = temp_path("open-cancel.fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; a plain syscall.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let rt = common::runtime(1);
    let p = fifo.clone();
    // Opening a FIFO for reading blocks until a writer comes.
    rt.spawn(move || greenrt::fs::File::open(&p).map(drop));
    std::thread::sleep(Duration::from_millis(100));
    let p2 = fifo.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let w = std::fs::OpenOptions::new().write(true).open(&p2).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(w);
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    writer.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while fds_to(&fifo) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fds_to(&fifo), 0, "the FIFO's fd was left open");
    std::fs::remove_file(&fifo).unwrap();
}
