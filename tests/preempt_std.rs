//! std keeps working under preemption: stdout's (reentrant) lock held
//! across preemptions, thread-locals, the allocator and std's Mutex, and
//! greenrt's own Mutex.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time, including the
//! children they start), bounds have generous margins, and every body runs
//! under a timeout so that a hang fails instead of blocking the run.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child_tag;
use common::preemption::{child_ok, exclusive, preemptive, since, spin_tsc};
use greenrt::preempt;

// ---------------------------------------------------------------------
// std keeps working under preemption.
// ---------------------------------------------------------------------

/// A line's payload: deterministic, with its own checksum.
fn line_payload(g: usize, i: usize) -> (String, u64) {
    let len = 20 + (g * 31 + i * 17) % 120;
    let s: String = (0..len)
        .map(|k| (b'a' + ((g + i + k) % 26) as u8) as char)
        .collect();
    let sum = s
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    (s, sum)
}

#[test]
fn println_from_many_green_threads_under_preemption() {
    const NAME: &str = "println_from_many_green_threads_under_preemption";
    const THREADS: usize = 16;
    if child_tag().as_deref() == Some("println") {
        // libtest has printed "test <name> ... " without a newline.
        println!();
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let counts: Vec<usize> = rt.block_on(|| {
            let hs: Vec<_> = (0..THREADS)
                .map(|g| {
                    greenrt::spawn(move || {
                        let start = Instant::now();
                        let mut i = 0;
                        while start.elapsed() < Duration::from_millis(1200) && i < 3000 {
                            let (payload, sum) = line_payload(g, i);
                            if g % 2 == 0 {
                                println!("LINE {g} {i} {sum} {payload}");
                            } else {
                                // Hold stdout's (reentrant) lock across
                                // several writes and some CPU work, to be
                                // preempted while holding it.
                                let mut out = std::io::stdout().lock();
                                write!(out, "LINE {g} {i} ").unwrap();
                                spin_tsc(Duration::from_micros(50));
                                let mut again = std::io::stdout().lock();
                                write!(again, "{sum} ").unwrap();
                                drop(again);
                                writeln!(out, "{payload}").unwrap();
                            }
                            i += 1;
                        }
                        i
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        std::io::stdout().flush().unwrap();
        println!(
            "CHILD_RESULT {} {} {}",
            counts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
            st.preemptions,
            st.retakes
        );
        println!("CHILD_OK println");
        return;
    }
    let stdout = child_ok(NAME, "println", &[]);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD_RESULT "))
        .expect("the child's result line");
    let mut parts = result.split(' ');
    let counts: Vec<usize> = parts
        .next()
        .unwrap()
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let preemptions: u64 = parts.next().unwrap().parse().unwrap();
    let retakes: u64 = parts.next().unwrap().parse().unwrap();
    let mut next = vec![0usize; THREADS];
    let mut lines = 0;
    for line in stdout
        .lines()
        .filter(|l| l.contains("LINE") && !l.starts_with("test "))
    {
        let bad = || -> ! { panic!("a garbled or interleaved line: {line:?}") };
        let rest = line.strip_prefix("LINE ").unwrap_or_else(|| bad());
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() != 4 {
            bad();
        }
        let (g, i): (usize, usize) = (
            f[0].parse().unwrap_or_else(|_| bad()),
            f[1].parse().unwrap_or_else(|_| bad()),
        );
        let (payload, sum) = line_payload(g, i);
        if f[2] != sum.to_string() || f[3] != payload || i != next[g] {
            bad();
        }
        next[g] += 1;
        lines += 1;
    }
    println!(
        "println: {lines} lines from {THREADS} green threads, {preemptions} preemptions, \
         {retakes} retakes"
    );
    assert_eq!(next, counts, "lines lost or duplicated");
    assert!(
        counts.iter().all(|&c| c >= 10),
        "some green thread printed almost nothing: {counts:?}"
    );
    assert!(preemptions + retakes > 0, "nothing was preempted");
}

thread_local! {
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// One borrow of the thread-local, with work inside it (long enough to be
/// preempted there). Never inlined: a green thread may change OS threads
/// between calls (it yields), and the thread-local's address must be
/// computed anew each time.
#[inline(never)]
fn tls_round(g: u64, round: u64) -> Result<(), String> {
    SCRATCH.with(|cell| {
        let mut v = cell
            .try_borrow_mut()
            .map_err(|_| format!("green thread {g}: thread-local RefCell already borrowed"))?;
        let thread = std::thread::current().id();
        v.clear();
        for k in 0..2000u64 {
            v.push(g << 48 | round << 16 | k);
        }
        spin_tsc(Duration::from_micros(300));
        for (k, &x) in v.iter().enumerate() {
            if x != g << 48 | round << 16 | k as u64 {
                return Err(format!(
                    "green thread {g}: thread-local data changed: {x:#x}"
                ));
            }
        }
        if std::thread::current().id() != thread {
            return Err(format!(
                "green thread {g}: changed OS threads inside a borrow"
            ));
        }
        v.clear();
        Ok(())
    })
}

/// Allocation churn with integrity checks.
#[inline(never)]
fn alloc_round(g: u64, round: u64) -> Result<u64, String> {
    let mut boxes: Vec<Box<[u64]>> = Vec::new();
    let mut strings: Vec<String> = Vec::new();
    for k in 0..64u64 {
        let len = 1 + ((g * 7 + round * 13 + k * 29) % 700) as usize;
        boxes.push((0..len as u64).map(|j| g ^ round ^ k ^ j).collect());
        strings.push(format!("{g}-{round}-{k}-{}", "x".repeat((k % 50) as usize)));
        if k % 3 == 0 {
            boxes.swap_remove(((k * 5) % boxes.len() as u64) as usize);
        }
    }
    let mut sum = 0u64;
    for b in &boxes {
        let k = b[0] ^ g ^ round;
        for (j, &x) in b.iter().enumerate() {
            if x != g ^ round ^ k ^ j as u64 {
                return Err(format!("green thread {g}: heap data changed"));
            }
        }
        sum = sum.wrapping_add(b.iter().sum::<u64>());
    }
    for (k, s) in strings.iter().enumerate() {
        let want = format!("{g}-{round}-{k}-{}", "x".repeat(k % 50));
        if *s != want {
            return Err(format!("green thread {g}: string changed: {s:?}"));
        }
    }
    Ok(sum)
}

#[test]
fn thread_locals_allocator_and_std_mutex_work_under_preemption() {
    exclusive(|| {
        const THREADS: u64 = 12;
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log2 = log.clone();
        let results: Vec<(u64, u64, u64)> = rt.block_on(move || {
            let hs: Vec<_> = (0..THREADS)
                .map(|g| {
                    let log = log2.clone();
                    greenrt::spawn(move || {
                        let start = Instant::now();
                        let (mut tls, mut allocs, mut logged) = (0u64, 0u64, 0u64);
                        let mut round = 0u64;
                        while start.elapsed() < Duration::from_millis(1500) {
                            match round % 3 {
                                0 => {
                                    tls_round(g, round).unwrap();
                                    tls += 1;
                                }
                                1 => {
                                    alloc_round(g, round).unwrap();
                                    allocs += 1;
                                }
                                _ => {
                                    // A std lock held across CPU work: the
                                    // holder is preempted with it, others
                                    // block on it (and are retaken).
                                    let (payload, sum) = line_payload(g as usize, round as usize);
                                    let mut l = log.lock().unwrap();
                                    l.push(format!("{g}:{round}:{sum}:{payload}"));
                                    spin_tsc(Duration::from_micros(100));
                                    drop(l);
                                    logged += 1;
                                }
                            }
                            round += 1;
                            if round % 8 == 0 {
                                greenrt::yield_now();
                            }
                        }
                        (tls, allocs, logged)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        drop(rt);
        let log = std::mem::take(&mut *log.lock().unwrap());
        let mut per = vec![0u64; THREADS as usize];
        let mut last = vec![None::<u64>; THREADS as usize];
        for e in &log {
            let f: Vec<&str> = e.splitn(4, ':').collect();
            let (g, round): (usize, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            let (payload, sum) = line_payload(g, round as usize);
            assert!(
                f[2] == sum.to_string() && f[3] == payload,
                "corrupted log entry {e:?}"
            );
            assert!(
                last[g] < Some(round) || last[g].is_none(),
                "out of order: {e:?}"
            );
            last[g] = Some(round);
            per[g] += 1;
        }
        let total: (u64, u64, u64) = results
            .iter()
            .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
        println!(
            "std under preemption: {} TLS borrows, {} allocation rounds, {} std-mutex \
             entries; {st:?}",
            total.0, total.1, total.2
        );
        for (g, r) in results.iter().enumerate() {
            assert_eq!(r.2, per[g], "green thread {g}: std-mutex entries lost");
            assert!(
                r.0 > 0 && r.1 > 0 && r.2 > 0,
                "green thread {g} starved: {r:?}"
            );
        }
        assert!(st.preemptions > 0, "nothing was preempted: {st:?}");
    });
}

// ---------------------------------------------------------------------
// greenrt's own locks.
// ---------------------------------------------------------------------

#[test]
fn greenrt_mutex_excludes_under_preemption() {
    exclusive(|| {
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let m = Arc::new(greenrt::sync::Mutex::new((0u64, 0u64)));
        let m2 = m.clone();
        let (tx, rx) = greenrt::sync::mpsc::channel::<u64>();
        let sum = rt.block_on(move || {
            let hs: Vec<_> = (0..8u64)
                .map(|g| {
                    let (m, tx) = (m2.clone(), tx.clone());
                    greenrt::spawn(move || {
                        for i in 0..1000 {
                            let mut v = m.lock().unwrap();
                            let seen = v.0;
                            spin_tsc(Duration::from_micros(20));
                            v.0 = seen + 1;
                            v.1 += 1;
                            drop(v);
                            tx.send(g * 1000 + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let sum: u64 = rx.iter().sum();
            for h in hs {
                h.join().unwrap();
            }
            sum
        });
        let st = since(before);
        let v = *m.lock().unwrap();
        println!("greenrt Mutex: {v:?}, {st:?}");
        assert_eq!(v, (8000, 8000), "lost updates under preemption");
        assert_eq!(sum, (0..8000u64).sum::<u64>());
        assert!(st.preemptions > 0, "{st:?}");
    });
}
