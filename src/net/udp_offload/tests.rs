//! The batching and the EIO/EINVAL fallbacks of `send_batches`, against a
//! wire that records datagrams and fails on demand.

use super::*;

/// Records every datagram; GSO sends fail with `gso_errors` in turn
/// (then succeed), and `send_each` sends at most `each_limit` datagrams a
/// call (as a sendmmsg(2) cut short by a full buffer would), failing with
/// `each_error` once `fail_each_after` datagrams have gone.
struct FakeWire {
    segment_size: usize,
    gso: bool,
    gso_errors: Vec<i32>,
    each_limit: usize,
    fail_each_after: Option<usize>,
    datagrams: Vec<Vec<u8>>,
    gso_calls: usize,
    each_calls: usize,
    broken_marks: usize,
}

impl FakeWire {
    fn new(segment_size: usize, gso: bool) -> FakeWire {
        FakeWire {
            segment_size,
            gso,
            gso_errors: Vec::new(),
            each_limit: 7,
            fail_each_after: None,
            datagrams: Vec::new(),
            gso_calls: 0,
            each_calls: 0,
            broken_marks: 0,
        }
    }
}

impl SegmentWire for FakeWire {
    fn gso_usable(&self) -> bool {
        self.gso
    }

    fn send_gso(&mut self, batch: &[u8]) -> io::Result<()> {
        assert!(batch.len() <= MAX_PAYLOAD, "GSO batch of {}", batch.len());
        assert!(batch.len().div_ceil(self.segment_size) <= MAX_SEGMENTS);
        self.gso_calls += 1;
        if !self.gso_errors.is_empty() {
            return Err(io::Error::from_raw_os_error(self.gso_errors.remove(0)));
        }
        self.datagrams
            .extend(batch.chunks(self.segment_size).map(<[u8]>::to_vec));
        Ok(())
    }

    fn send_each(&mut self, batch: &[u8]) -> io::Result<usize> {
        self.each_calls += 1;
        let mut sent = 0;
        for d in batch.chunks(self.segment_size).take(self.each_limit) {
            if self.fail_each_after == Some(self.datagrams.len()) {
                if sent > 0 {
                    break;
                }
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            self.datagrams.push(d.to_vec());
            sent += d.len();
        }
        Ok(sent)
    }

    fn gso_broken(&mut self) {
        self.broken_marks += 1;
        self.gso = false;
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn assert_split(wire: &FakeWire, buf: &[u8], segment_size: usize) {
    let expected: Vec<Vec<u8>> = buf.chunks(segment_size).map(<[u8]>::to_vec).collect();
    assert_eq!(wire.datagrams.len(), expected.len(), "datagram count");
    assert!(
        wire.datagrams == expected,
        "datagrams differ from the buffer's split"
    );
}

#[test]
fn batch_lengths_respect_the_segment_and_size_limits() {
    assert_eq!(batch_len(1200, MAX_SEGMENTS, true), 1200 * 54);
    assert_eq!(batch_len(1, MAX_SEGMENTS, true), 64);
    assert_eq!(batch_len(1000, MAX_SEGMENTS, true), 64_000);
    assert_eq!(batch_len(40_000, MAX_SEGMENTS, true), 40_000);
    assert_eq!(batch_len(MAX_PAYLOAD, MAX_SEGMENTS, true), MAX_PAYLOAD);
    assert_eq!(batch_len(1200, MAX_SEGMENTS, false), 1200 * 64);
    assert_eq!(batch_len(1200, 1, true), 1200);
}

#[test]
fn segment_sizes_outside_one_datagram_are_invalid_input() {
    for bad in [0, MAX_PAYLOAD + 1, usize::MAX] {
        let e = check_segment_size(bad).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
    check_segment_size(1).unwrap();
    check_segment_size(MAX_PAYLOAD).unwrap();
}

#[test]
fn gso_sends_whole_batches_with_a_short_last_datagram() {
    let buf = pattern(1000 * 1200 + 77);
    let mut wire = FakeWire::new(1200, true);
    assert_eq!(send_batches(&mut wire, &buf, 1200).unwrap(), buf.len());
    assert_split(&wire, &buf, 1200);
    assert_eq!(wire.gso_calls, 1001usize.div_ceil(54));
    assert_eq!(wire.each_calls, 0);
}

#[test]
fn without_gso_datagrams_go_one_each_in_batches_of_64() {
    let buf = pattern(200 * 100);
    let mut wire = FakeWire::new(100, false);
    wire.each_limit = usize::MAX;
    assert_eq!(send_batches(&mut wire, &buf, 100).unwrap(), buf.len());
    assert_split(&wire, &buf, 100);
    assert_eq!(
        (wire.gso_calls, wire.each_calls),
        (0, 200usize.div_ceil(64))
    );
}

#[test]
fn eio_resends_the_batch_without_gso_and_turns_gso_off() {
    let buf = pattern(300 * 1200);
    let mut wire = FakeWire::new(1200, true);
    wire.gso_errors = vec![libc::EIO];
    assert_eq!(send_batches(&mut wire, &buf, 1200).unwrap(), buf.len());
    assert_split(&wire, &buf, 1200);
    assert_eq!((wire.gso_calls, wire.broken_marks), (1, 1));
    assert!(wire.each_calls >= 300 / 7);
}

#[test]
fn einval_resends_that_batch_alone_and_keeps_gso() {
    let buf = pattern(200 * 1200);
    let mut wire = FakeWire::new(1200, true);
    wire.gso_errors = vec![libc::EINVAL];
    assert_eq!(send_batches(&mut wire, &buf, 1200).unwrap(), buf.len());
    assert_split(&wire, &buf, 1200);
    assert_eq!(wire.broken_marks, 0);
    // The first batch (54 datagrams) one each, the rest with GSO.
    assert_eq!(wire.each_calls, 54usize.div_ceil(7));
    assert_eq!(wire.gso_calls, 1 + (200 - 54usize).div_ceil(54));
}

#[test]
fn other_gso_errors_are_returned() {
    let buf = pattern(10 * 100);
    let mut wire = FakeWire::new(100, true);
    wire.gso_errors = vec![libc::ECONNREFUSED];
    let e = send_batches(&mut wire, &buf, 100).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    assert!(wire.datagrams.is_empty());
}

#[test]
fn an_error_after_some_datagrams_returns_their_bytes() {
    let buf = pattern(100 * 50);
    let mut wire = FakeWire::new(50, false);
    wire.fail_each_after = Some(30);
    assert_eq!(send_batches(&mut wire, &buf, 50).unwrap(), 30 * 50);
    let mut wire = FakeWire::new(50, false);
    wire.fail_each_after = Some(0);
    let e = send_batches(&mut wire, &buf, 50).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
}

#[test]
fn an_empty_buffer_sends_nothing() {
    let mut wire = FakeWire::new(100, true);
    assert_eq!(send_batches(&mut wire, &[], 100).unwrap(), 0);
    assert_eq!((wire.gso_calls, wire.each_calls), (0, 0));
}
