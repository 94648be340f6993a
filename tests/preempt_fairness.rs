//! Signal-based preemption shares the CPU (`src/preempt/`): CPU-bound
//! green threads on one worker finish close together (the `cpu_bound`
//! example's property), a sleeping green thread keeps running among
//! CPU-bound hogs, and a green thread in the global queue is not starved
//! by preempted hogs.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time), bounds have
//! generous margins, and every body runs under a timeout so that a hang
//! fails instead of blocking the run.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::preemption::{add_twos, calibrate, exclusive, ms, preemptive, since, tsc, tsc_ticks};
use common::spin_for;
use greenrt::preempt::{self, Stats};

// ---------------------------------------------------------------------
// Fairness: the cpu_bound example's property.
// ---------------------------------------------------------------------

/// `threads` green threads on one worker each run `add_twos(iterations)`;
/// returns each one's finish time since the start, and the counters.
fn finish_times(preemption: bool, threads: usize, iterations: u64) -> (Vec<Duration>, Stats) {
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(preemption)
        .preempt_quantum(Duration::from_millis(1))
        .build()
        .expect("build the runtime");
    assert_eq!(rt.preempt_quantum().is_some(), preemption);
    let before = preempt::stats();
    let times = rt.block_on(move || {
        let start = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                greenrt::spawn(move || {
                    assert_eq!(add_twos(iterations), 2 * iterations);
                    start.elapsed()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (times, since(before))
}

#[test]
fn cpu_bound_green_threads_share_one_worker_fairly() {
    exclusive(|| {
        const THREADS: usize = 10;
        let iterations = calibrate(Duration::from_millis(70), |n| {
            black_box(add_twos(n));
        });
        let ratio = |t: &[Duration]| {
            let first = t.iter().min().unwrap().as_secs_f64();
            let last = t.iter().max().unwrap().as_secs_f64();
            first / last
        };
        let (on, on_stats) = finish_times(true, THREADS, iterations);
        let (off, off_stats) = finish_times(false, THREADS, iterations);
        let (r_on, r_off) = (ratio(&on), ratio(&off));
        println!(
            "fairness: {iterations} iterations each; preemption on: first/last = {r_on:.2} \
             (last {:.0} ms), {on_stats:?}; off: first/last = {r_off:.2} (last {:.0} ms), \
             {off_stats:?}",
            ms(*on.iter().max().unwrap()),
            ms(*off.iter().max().unwrap()),
        );
        assert!(
            r_on > 0.4,
            "with preemption (1 ms quantum) the first of {THREADS} equal CPU-bound green \
             threads finished at {r_on:.2} of the last one's time (expected them to finish \
             close together); finish times: {on:?}"
        );
        assert!(
            r_off < 0.3,
            "without preemption the first green thread should finish after ~1/{THREADS} of \
             the total, got {r_off:.2}: {off:?}"
        );
        assert!(
            on_stats.preemptions >= 50,
            "~{:.0} ms of CPU-bound work at a 1 ms quantum, but only {} preemptions",
            ms(*on.iter().max().unwrap()),
            on_stats.preemptions
        );
        // Once every thread has started, the next to run is always a
        // preempted one: its M should get the P straight from the preempted
        // one's, with no spare M in between.
        assert!(
            2 * on_stats.direct_handoffs >= on_stats.preemptions,
            "only {} of {} preemptions handed the P directly to the next preempted green \
             thread",
            on_stats.direct_handoffs,
            on_stats.preemptions
        );
        assert_eq!(
            (off_stats.preemptions, off_stats.signals),
            (0, 0),
            "a runtime with preemption(false) preempted or signalled"
        );
    });
}

// ---------------------------------------------------------------------
// Latency: a sleeper keeps running among hogs.
// ---------------------------------------------------------------------

#[test]
fn sleeping_green_thread_keeps_running_among_cpu_hogs() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(2)
            .preemption(true)
            .build()
            .unwrap();
        assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
        let before = preempt::stats();
        let cap = tsc_ticks(Duration::from_secs(10));
        let (iterations, worst, first_run, hogs_alive) = rt.block_on(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let finished = Arc::new(AtomicUsize::new(0));
            // Two hogs in pure main-executable code (preempted), two that
            // spin on the clock (mostly in the vDSO: retaken).
            let hogs: Vec<_> = (0..4)
                .map(|i| {
                    let (stop, finished) = (stop.clone(), finished.clone());
                    greenrt::spawn(move || {
                        let end = tsc() + cap;
                        while !stop.load(SeqCst) && tsc() < end {
                            if i % 2 == 0 {
                                black_box(add_twos(black_box(1000)));
                            } else {
                                spin_for(Duration::from_micros(10));
                            }
                        }
                        finished.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            let spawned = Instant::now();
            let probe = {
                let (stop, finished) = (stop.clone(), finished.clone());
                greenrt::spawn(move || {
                    let start = Instant::now();
                    let first_run = start - spawned;
                    let (mut n, mut worst) = (0u32, Duration::ZERO);
                    while start.elapsed() < Duration::from_secs(1) {
                        let t = Instant::now();
                        greenrt::sleep(Duration::from_millis(1));
                        let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                        worst = worst.max(late);
                        n += 1;
                    }
                    let alive = finished.load(SeqCst) == 0;
                    stop.store(true, SeqCst);
                    (n, worst, first_run, alive)
                })
            };
            let r = probe.join().unwrap();
            for h in hogs {
                h.join().unwrap();
            }
            r
        });
        let st = since(before);
        println!(
            "latency among 4 hogs on 2 workers (10 ms quantum): {iterations} sleeps of 1 ms in \
             1 s, worst lateness {:.1} ms, first run after {:.1} ms; {st:?}",
            ms(worst),
            ms(first_run)
        );
        assert!(
            iterations >= 10,
            "the sleeping green thread completed only {iterations} 1 ms sleeps in 1 s among \
             CPU-bound hogs (worst lateness {worst:?})"
        );
        assert!(
            worst < Duration::from_millis(200) && first_run < Duration::from_millis(200),
            "a 1 ms sleep among hogs was {worst:?} late (first run after {first_run:?}); \
             expected a few 10 ms quanta at most"
        );
        assert!(
            hogs_alive,
            "the hogs stopped before the probe's window ended"
        );
        assert!(
            st.preemptions + st.retakes > 0,
            "hogs ran for 1 s on every worker without a preemption or retake: {st:?}"
        );
    });
}

// ---------------------------------------------------------------------
// The global queue among preempted hogs.
// ---------------------------------------------------------------------

#[test]
fn global_queue_is_not_starved_by_preempted_hogs() {
    // A green thread spawned from outside the runtime goes to the global
    // queue; it must run within a few quanta even while every worker runs
    // a CPU-bound green thread that keeps being preempted.
    exclusive(|| {
        for workers in [1, 2] {
            let rt = preemptive(workers, Duration::from_millis(1));
            let stop = Arc::new(AtomicBool::new(false));
            let hogs: Vec<_> = (0..workers)
                .map(|_| {
                    let stop = stop.clone();
                    rt.spawn(move || {
                        let end = tsc() + tsc_ticks(Duration::from_secs(2));
                        while !stop.load(SeqCst) && tsc() < end {
                            black_box(add_twos(black_box(1000)));
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let before = preempt::stats();
            let t = Instant::now();
            let stop2 = stop.clone();
            rt.spawn(move || stop2.store(true, SeqCst)).join().unwrap();
            let took = t.elapsed();
            let st = since(before);
            for h in hogs {
                h.join().unwrap();
            }
            println!(
                "global queue, {workers} worker(s) with hogs: a green thread spawned from outside \
                 ran after {:.1} ms; {st:?}",
                ms(took)
            );
            assert!(
                took < Duration::from_millis(500),
                "{workers} worker(s): a green thread spawned from outside the runtime waited \
                 {took:?} while preempted hogs ran ({st:?}): preempted green threads are always \
                 resumed before the global queue is looked at"
            );
        }
    });
}

// ---------------------------------------------------------------------
// Turns: round-robin order, and a quantum of CPU time each.
// ---------------------------------------------------------------------

/// CPU time this OS thread has used, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the green threads of `turns` record: who started each turn, and
/// that green thread's CPU time then. Lock-free: a green thread may be
/// preempted anywhere, and one preempted inside a lock would hold up the
/// others.
struct TurnLog {
    runner: AtomicUsize,
    next: AtomicUsize,
    who: Vec<AtomicUsize>,
    cpu: Vec<std::sync::atomic::AtomicU64>,
}

/// `threads` green threads on one worker (quantum `quantum`), each
/// computing until its `rounds + 1`-th turn begins. A green thread
/// notices a new turn when the last turn it saw begin was another's (only
/// one runs at a time). Returns, for each turn in order, who ran it and
/// the CPU time it used (None for each thread's last, unfinished turn).
fn turns(threads: usize, rounds: usize, quantum: Duration) -> Vec<(usize, Option<u64>)> {
    let cap = threads * (rounds + 1);
    let log = Arc::new(TurnLog {
        runner: AtomicUsize::new(usize::MAX),
        next: AtomicUsize::new(0),
        who: (0..cap).map(|_| AtomicUsize::new(usize::MAX)).collect(),
        cpu: (0..cap)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    });
    let rt = preemptive(1, quantum);
    let l = log.clone();
    rt.block_on(move || {
        let hs: Vec<_> = (0..threads)
            .map(|me| {
                let log = l.clone();
                greenrt::spawn(move || {
                    let mut mine = 0;
                    while mine <= rounds {
                        black_box(add_twos(black_box(200)));
                        if log.runner.load(SeqCst) != me {
                            log.runner.store(me, SeqCst);
                            let i = log.next.fetch_add(1, SeqCst);
                            log.cpu[i].store(thread_cpu_ns(), SeqCst);
                            log.who[i].store(me, SeqCst);
                            mine += 1;
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let n = log.next.load(SeqCst);
    assert_eq!(n, cap, "every green thread logs each of its turns once");
    let who: Vec<usize> = log.who.iter().map(|w| w.load(SeqCst)).collect();
    let cpu: Vec<u64> = log.cpu.iter().map(|c| c.load(SeqCst)).collect();
    // A turn's CPU time: from its start to the same thread's next one (a
    // green thread keeps its OS thread from its first preemption on,
    // which is also where its first turn ran).
    (0..n)
        .map(|i| {
            let next = (i + 1..n).find(|&j| who[j] == who[i]);
            (who[i], next.map(|j| cpu[j].saturating_sub(cpu[i])))
        })
        .collect()
}

/// Checks that the first `rounds` rounds of `log` are round-robin, and
/// that nine turns in ten used about a quantum of CPU time (3/4 to 2
/// quanta: a turn also pays for the preemption, and the signal lands a
/// little after the quantum is up); prints a summary.
fn check_turns(
    what: &str,
    log: &[(usize, Option<u64>)],
    threads: usize,
    rounds: usize,
    q: Duration,
) {
    let order: Vec<usize> = log.iter().map(|&(g, _)| g).collect();
    let full = &order[..threads * rounds];
    let repeats = full
        .windows(threads)
        .filter(|w| {
            let mut seen = vec![false; threads];
            w.iter().any(|&g| std::mem::replace(&mut seen[g], true))
        })
        .count();
    // Each green thread's first turn is left out: it starts on a spare
    // M, not resumed from the preemption path, and sysmon dates it only
    // roughly.
    let mut cpu: Vec<u64> = log
        .iter()
        .enumerate()
        .filter(|&(i, &(g, _))| order[..i].contains(&g))
        .filter_map(|(_, &(_, c))| c)
        .collect();
    cpu.sort_unstable();
    let q_ns = q.as_nanos() as u64;
    let about_right = cpu
        .iter()
        .filter(|&&c| c >= 3 * q_ns / 4 && c <= 2 * q_ns)
        .count();
    let pct = |p: usize| cpu[(cpu.len() - 1) * p / 100] as f64 / 1e6;
    println!(
        "{what}: {threads} green threads, {rounds} rounds at {q:?}: {repeats} windows of \
         {threads} turns with a repeat; CPU a turn p10 {:.2} ms, median {:.2} ms, p90 {:.2} ms; \
         {about_right} of {} turns after the first within [3q/4, 2q]",
        pct(10),
        pct(50),
        pct(90),
        cpu.len()
    );
    assert_eq!(
        repeats, 0,
        "{what}: a green thread had a second turn before every other had one: {full:?}"
    );
    assert!(
        10 * about_right >= 9 * cpu.len(),
        "{what}: only {about_right} of {} turns used between 3/4 of a quantum and two quanta \
         of CPU time ({q:?} quantum); sorted turn CPU times (ns): {cpu:?}",
        cpu.len()
    );
}

#[test]
fn cpu_bound_green_threads_take_turns_in_round_robin() {
    exclusive(|| {
        const THREADS: usize = 6;
        const ROUNDS: usize = 8;
        let q = Duration::from_millis(1);
        let log = turns(THREADS, ROUNDS, q);
        check_turns("round robin", &log, THREADS, ROUNDS, q);
    });
}

/// Turns are a quantum of CPU time, not of wall-clock time: with more
/// runnable OS threads than CPUs, the kernel gives the worker only part
/// of each wall-clock quantum (and the thread resuming a preempted green
/// thread may wait for a CPU before it runs), so turns measured on the
/// wall clock would come out short and unequal.
#[test]
fn turns_are_a_quantum_of_cpu_time_while_other_threads_compete() {
    exclusive(|| {
        const THREADS: usize = 6;
        const ROUNDS: usize = 8;
        let q = Duration::from_millis(1);
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs: Vec<_> = (0..2 * cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        black_box(add_twos(black_box(10_000)));
                    }
                })
            })
            .collect();
        let log = turns(THREADS, ROUNDS, q);
        stop.store(true, SeqCst);
        for h in hogs {
            h.join().unwrap();
        }
        check_turns(
            &format!("among {} spinning OS threads", 2 * cpus),
            &log,
            THREADS,
            ROUNDS,
            q,
        );
    });
}
