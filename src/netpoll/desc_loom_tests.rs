//! Loom model checks of the poll descriptor's drained-stream protocol
//! (see the `desc` module docs and docs/DESIGN.md, "Model checking"):
//! the real `PollDesc` (`notify`, `read_edges`, `mark_drained`,
//! `is_drained`) with its lock, against a modelled socket: the kernel
//! queues bytes (and an end of stream) before epoll reports the edge,
//! and a read(2) takes whatever is queued.

use std::sync::atomic::Ordering;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::Arc;
use loom::thread;

use super::*;
use crate::sys::sync::model;

const READ: Readiness = Readiness {
    read: true,
    write: false,
    closed: false,
};

/// What a reader's next read does with what is left in the socket: it
/// must not wait for an edge that already came. It waits first when the
/// descriptor is drained (`NetFd::read_stream`), and that wait returns at
/// once only if `read_ready` is set.
fn next_read_would_hang(pd: &PollDesc, unread: bool) -> bool {
    unread && pd.is_drained() && !pd.state.lock().read_ready
}

/// A short read races with the arrival of more bytes (and their edge,
/// notified by the polling M). Checks: no lost edge — if bytes are left
/// after the read, the descriptor is not left drained without a pending
/// readiness (the read's `read_edges` count, compared under the lock in
/// `mark_drained`, catches an edge that came after the read began).
#[test]
fn loom_desc_short_read_never_loses_an_edge() {
    model(|| {
        let pd = Arc::new(PollDesc::default());
        let queued = Arc::new(AtomicUsize::new(1));
        pd.notify(0, READ); // the first byte's edge
        let poller = {
            let (pd, queued) = (pd.clone(), queued.clone());
            thread::spawn(move || {
                queued.fetch_add(1, Ordering::Release);
                pd.notify(0, READ);
            })
        };
        let seen = pd.read_edges();
        let n = queued.swap(0, Ordering::AcqRel); // read(2), short
        if n > 0 {
            pd.mark_drained(seen);
        }
        poller.join().unwrap();
        let unread = queued.load(Ordering::Acquire) > 0;
        assert!(
            !next_read_would_hang(&pd, unread),
            "lost edge: bytes left, the descriptor drained, no readiness"
        );
    });
}

/// The last bytes arrive with the end of stream behind them (one event:
/// EPOLLIN | EPOLLRDHUP), racing with a read that takes the bytes but
/// not the EOF (a read that returns bytes does not report it). Checks:
/// the EOF is not lost — the descriptor is not left drained without a
/// pending readiness, however the edge and the read interleave (the
/// sticky `read_closed` keeps `mark_drained` away even when the edge came
/// before the read began and the edge counts agree).
#[test]
fn loom_desc_eof_behind_the_last_bytes_is_not_lost() {
    model(|| {
        let pd = Arc::new(PollDesc::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let eof = Arc::new(AtomicBool::new(false));
        let poller = {
            let (pd, queued, eof) = (pd.clone(), queued.clone(), eof.clone());
            thread::spawn(move || {
                queued.fetch_add(1, Ordering::Release);
                eof.store(true, Ordering::Release);
                pd.notify(0, readiness((libc::EPOLLIN | libc::EPOLLRDHUP) as u32));
            })
        };
        let seen = pd.read_edges();
        let n = queued.swap(0, Ordering::AcqRel); // read(2), short
        if n > 0 {
            pd.mark_drained(seen);
        }
        poller.join().unwrap();
        // A read that got bytes left the EOF for the next one.
        let unread = queued.load(Ordering::Acquire) > 0 || (n > 0 && eof.load(Ordering::Acquire));
        assert!(
            !next_read_would_hang(&pd, unread),
            "lost end of stream: the descriptor drained, no readiness"
        );
    });
}
