//! greenrt versus tokio's multi-threaded runtime, side by side.
//!
//! A port of tokio's own `benches/rt_multi_threaded.rs` plus skynet and
//! issue 14's sustained workloads. Each workload has a `greenrt` and a
//! `tokio` function doing the same work with the same worker count
//! ([`WORKERS`]):
//!
//! - `spawn_many`: `block_on` spawns 10 000 tasks; each decrements a
//!   counter and the last one signals the bench thread. (greenrt runs the
//!   `block_on` closure as a green thread on a worker; tokio polls the
//!   future on the bench thread, as in tokio's `spawn_many_local`.)
//! - `yield_many`: the bench thread spawns 200 tasks that each yield
//!   1 000 times, then signal it.
//! - `ping_pong`: 1 000 pairs of tasks exchange one message each way
//!   (tokio `oneshot`s, greenrt `sync_channel(1)`s); the last pair to
//!   finish signals the bench thread.
//! - `ping_pong_sustained`: 1 000 pairs, all spawned from the bench
//!   thread, exchange 100 messages each way over two bounded channels of
//!   capacity 1 (greenrt `sync_channel(1)`, tokio `mpsc::channel(1)`).
//! - `ping_pong_sustained_unbounded`: the same over unbounded channels
//!   (greenrt `mpsc::channel`, tokio `mpsc::unbounded_channel`).
//! - `mutex_handoff`: 1 000 pairs, all spawned from the bench thread, pass
//!   a turn back and forth 100 times (200 turns a pair) through a
//!   mutex-protected `Turns` (whose turn, turns taken) and a condition:
//!   greenrt `sync::Mutex` + `sync::Condvar`, tokio `sync::Mutex` +
//!   `sync::Notify`. Each side locks once and keeps the lock except while
//!   waiting; a turn is taken by waiting until it is ours, counting it,
//!   handing it over and notifying with the lock held. tokio's wait
//!   creates its `Notified` before releasing the lock and is woken by
//!   `notify_waiters` (no stored permits, so no wake-ups a condition
//!   variable would not give); greenrt's by `notify_one` (with at most one
//!   waiter the same). The first side of a pair checks all 200 turns were
//!   taken.
//! - `chained_spawn`: a chain of 1 000 tasks, each spawning the next; the
//!   last signals the bench thread.
//! - `skynet`: 1 000 000 leaf tasks in a tree of fan-out 10; each inner
//!   task spawns its 10 children and sums their results through their
//!   join handles (greenrt children get 16 KiB stacks).
//! - `sleep_churn`: the bench thread spawns 10 000 tasks that each sleep
//!   1 ms ten times, then count down; the last signals the bench thread.
//!   Mostly arming, firing and waking timers: 100 000 of them, in
//!   batches of about 10 000 a millisecond.
//!
//! Signals to the bench thread go over a `std::sync::mpsc::sync_channel`
//! with spare capacity, so sending never blocks a worker.
//!
//! Each workload is first a criterion group (`<workload>/greenrt` then
//! `<workload>/tokio`, as before). Then, when both of its functions ran
//! and criterion measures (not under `--test`), an alternating pass
//! (`alternate.rs`) interleaves greenrt and tokio samples and, after all
//! workloads, a table gives per workload each runtime's median time per
//! iteration and the median, min and max of the per-pair greenrt / tokio
//! ratios: the figures to quote. Each runtime is built once per workload,
//! used by both parts, and dropped before the next workload.
//!
//! Run with `cargo bench --bench rt_multi_threaded` (a few minutes on 2
//! cores). Criterion's filter picks workloads for both parts, e.g.
//! `cargo bench --bench rt_multi_threaded -- skynet` (a workload whose
//! two functions are not both picked, e.g. by `-- skynet/tokio`, gets no
//! alternating pass; `-- ping_pong` picks all three ping_pong workloads,
//! `-- '^ping_pong/'` just the first).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

mod common;
use common::{benchmarking, load_average};

#[path = "rt_multi_threaded/alternate.rs"]
mod alternate;
#[path = "rt_multi_threaded/messaging.rs"]
mod messaging;
#[path = "rt_multi_threaded/spawning.rs"]
mod spawning;
#[path = "rt_multi_threaded/timers.rs"]
mod timers;

/// Worker threads of both runtimes.
const WORKERS: usize = 2;

/// One workload: one iteration of it on each runtime.
pub struct Workload {
    /// Criterion's group name, which its filter matches.
    name: &'static str,
    /// The name with the workload's size, for the table.
    label: &'static str,
    /// Criterion's measurement time per runtime.
    measurement: Duration,
    greenrt: fn(&greenrt::Runtime),
    tokio: fn(&tokio::runtime::Runtime),
}

const WORKLOADS: [Workload; 9] = [
    spawning::SPAWN_MANY,
    spawning::YIELD_MANY,
    messaging::PING_PONG,
    messaging::PING_PONG_SUSTAINED,
    messaging::PING_PONG_SUSTAINED_UNBOUNDED,
    messaging::MUTEX_HANDOFF,
    spawning::CHAINED_SPAWN,
    spawning::SKYNET,
    timers::SLEEP_CHURN,
];

fn greenrt_rt() -> greenrt::Runtime {
    greenrt::Builder::new().workers(WORKERS).build().unwrap()
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `w`'s criterion group, then its alternating pass if both of the
/// group's functions ran and criterion measures.
fn workload(c: &mut Criterion, w: &Workload) -> Option<alternate::Row> {
    let mut group = c.benchmark_group(w.name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(w.measurement);
    // Built the first time criterion calls (not at all if its filter
    // leaves the function out).
    let (mut g, mut t) = (None, None);
    group.bench_function("greenrt", |b| {
        let rt = g.get_or_insert_with(greenrt_rt);
        b.iter(|| (w.greenrt)(rt))
    });
    group.bench_function("tokio", |b| {
        let rt = t.get_or_insert_with(tokio_rt);
        b.iter(|| (w.tokio)(rt))
    });
    group.finish();
    let row = match (&g, &t) {
        (Some(g), Some(t)) if benchmarking() => Some(alternate::alternate(w, g, t)),
        _ => None,
    };
    if let Some(row) = &row {
        row.report();
    }
    row
}

fn rt_multi_threaded(c: &mut Criterion) {
    let load_before = load_average();
    let rows: Vec<_> = WORKLOADS.iter().filter_map(|w| workload(c, w)).collect();
    if !rows.is_empty() {
        alternate::print_table(&rows, WORKERS, &load_before, &load_average());
    }
}

criterion_group!(benches, rt_multi_threaded);
criterion_main!(benches);
