//! Unit tests of the poll descriptor: the drained-stream protocol and
//! which waiters an edge wakes.

use super::*;

/// A descriptor with no fd behind it, and its current generation.
fn desc() -> (&'static PollDesc, u16) {
    let pd = PollDesc::alloc();
    let gen = pd.state.lock().gen;
    (pd, gen)
}

const READ: Readiness = Readiness {
    read: true,
    write: false,
    closed: false,
};

#[test]
fn short_read_with_no_edge_since_drains_until_the_next_edge() {
    let (pd, gen) = desc();
    pd.notify(gen, READ);
    let seen = pd.read_edges();
    pd.mark_drained(seen);
    assert!(pd.is_drained());
    assert!(
        !pd.state.lock().read_ready,
        "the edge before the read is spent"
    );
    pd.notify(gen, READ);
    assert!(!pd.is_drained());
    assert!(pd.state.lock().read_ready);
    pd.close();
}

#[test]
fn an_edge_during_the_read_keeps_the_socket_undrained() {
    let (pd, gen) = desc();
    let seen = pd.read_edges(); // the read starts
    pd.notify(gen, READ); // bytes arrive after it; another M notifies
    pd.mark_drained(seen); // the short read returns
    assert!(!pd.is_drained());
    assert!(pd.state.lock().read_ready, "the new edge must not be lost");
    pd.close();
}

#[test]
fn an_ended_stream_is_never_drained() {
    let (pd, gen) = desc();
    pd.notify(gen, readiness((libc::EPOLLIN | libc::EPOLLRDHUP) as u32));
    let seen = pd.read_edges();
    pd.mark_drained(seen); // the last bytes, with the EOF behind them
    assert!(!pd.is_drained());
    // Sticky: later edges without RDHUP do not clear it.
    pd.notify(gen, READ);
    pd.mark_drained(pd.read_edges());
    assert!(!pd.is_drained());
    pd.close();
    // A recycled descriptor starts afresh.
    let (pd, gen) = desc();
    pd.notify(gen, READ);
    pd.mark_drained(pd.read_edges());
    assert!(pd.is_drained());
    pd.close();
}

#[test]
fn a_read_touches_one_cache_line() {
    let pd = PollDesc::default();
    let base = &pd as *const PollDesc as usize;
    let s = pd.state.lock();
    let read_end = &s.read as *const Slot as usize + std::mem::size_of::<Slot>();
    assert_eq!(base % 64, 0);
    assert!(
        read_end - base <= 64,
        "read slot ends at byte {}",
        read_end - base
    );
    let flags = &s.write_waited as *const bool as usize;
    assert!(flags - base < 64, "write_waited at byte {}", flags - base);
}

#[test]
fn a_write_edge_wakes_a_parked_writer_only() {
    let (pd, gen) = desc();
    let write = Readiness {
        write: true,
        ..Readiness::default()
    };
    // Nobody waits: the edge is remembered, nothing is woken.
    assert_eq!(pd.notify(gen, write).wake_all(), 0);
    assert!(pd.state.lock().write_ready);
    // A (fake) writer waits: the next edge takes it out of the slot.
    let me = Waker::Os(std::thread::current());
    {
        let mut s = pd.state.lock();
        s.write_ready = false;
        s.write.push(me.clone());
        s.note_write_waiters();
    }
    assert!(pd.state.lock().write_waited);
    assert_eq!(pd.notify(gen, write).wake_all(), 1);
    let s = pd.state.lock();
    assert!(!s.write_waited && !s.write.contains(&me) && s.write_ready);
    drop(s);
    pd.close();
}

#[test]
fn errors_and_hang_ups_count_as_ended() {
    for ev in [libc::EPOLLERR, libc::EPOLLHUP, libc::EPOLLRDHUP] {
        let r = readiness(ev as u32);
        assert!(r.read && r.closed, "{ev:#x}: {r:?}");
    }
    assert!(!readiness(libc::EPOLLIN as u32).closed);
}
