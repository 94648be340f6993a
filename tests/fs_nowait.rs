//! Page-cache hits of a buffered `greenrt::fs::File` are one
//! preadv2(RWF_NOWAIT) each, with no ring round trip and no park, also
//! after the process read a file that has no RWF_NOWAIT (procfs and
//! sysfs say EOPNOTSUPP). That answer was kept process-wide: one read of
//! /proc/self/stat sent every later cached read of every file through
//! the ring (4–5 × slower, one netpoller poll each). Alone in its binary:
//! it counts the process's netpoller polls.

use std::io::Read;

const READS: u64 = 2_000;

/// Netpoller polls made by `READS` cached 4 KiB reads of `file`.
fn polls_for_cached_reads(file: &greenrt::fs::File) -> u64 {
    let mut buf = vec![0u8; 4096];
    let before = greenrt::metrics().netpoll_polls();
    for _ in 0..READS {
        assert_eq!(file.read_at(&mut buf, 0).unwrap(), 4096);
    }
    greenrt::metrics().netpoll_polls() - before
}

#[test]
fn cached_reads_skip_the_ring_after_a_file_without_nowait_was_read() {
    let dir = std::env::temp_dir().join(format!("greenrt-nowait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cached");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let p = path.clone();
    let (before, after) = greenrt::Builder::new()
        .workers(1)
        .build()
        .unwrap()
        .block_on(move || {
            let file = greenrt::fs::File::open(&p).unwrap();
            let before = polls_for_cached_reads(&file);
            let mut stat = String::new();
            greenrt::fs::File::open("/proc/self/stat")
                .unwrap()
                .read_to_string(&mut stat)
                .unwrap();
            assert!(!stat.is_empty());
            (before, polls_for_cached_reads(&file))
        });
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "netpoller polls per {READS} cached reads: {before} before, {after} after reading procfs"
    );
    assert!(
        after < READS / 4,
        "{after} polls for {READS} cached reads after a procfs read ({before} before): \
         they went through the ring"
    );
}
