//! The wheel against a plain model: every timer fires in the first poll
//! whose clock has passed its deadline's tick, none earlier, removed ones
//! never.

use super::*;

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Runs `rounds` of random inserts, removals and polls over deadlines up
/// to `span` ns ahead, checking each poll against the model.
fn check(seed: u64, rounds: usize, span: u64) {
    let mut rng = Rng(seed);
    let mut wheel = Wheel::<u64>::default();
    // id -> (deadline, key)
    let mut live: Vec<(u64, u64, Key)> = Vec::new();
    let mut now = rng.next() % (1 << 40);
    wheel.poll(now, |_| panic!("empty wheel fired"));
    let mut next_id = 0;
    for _ in 0..rounds {
        for _ in 0..rng.next() % 20 {
            let when = now + 1 + rng.next() % span;
            let key = wheel.insert(when, next_id);
            live.push((next_id, when, key));
            next_id += 1;
        }
        for _ in 0..rng.next() % 4 {
            if live.is_empty() {
                break;
            }
            let i = (rng.next() % live.len() as u64) as usize;
            let (id, _, key) = live.swap_remove(i);
            assert_eq!(wheel.remove(key), Some(id));
            assert_eq!(wheel.remove(key), None, "removed twice");
        }
        assert_eq!(wheel.len(), live.len());
        let next = wheel.next_due();
        let earliest = live.iter().map(|l| due_tick(l.1) * TICK_NS).min();
        if let Some(e) = earliest {
            assert!(next <= e, "next_due {next} after the earliest due {e}");
        } else {
            assert_eq!(next, u64::MAX);
        }
        now += rng.next() % (span / 8 + 1);
        if rng.next() % 4 == 0 && next != u64::MAX {
            now = now.max(next);
        }
        let mut fired = Vec::new();
        wheel.poll(now, |id| fired.push(id));
        fired.sort_unstable();
        let mut want: Vec<u64> = live
            .iter()
            .filter(|l| due_tick(l.1) <= now >> TICK_SHIFT)
            .map(|l| l.0)
            .collect();
        want.sort_unstable();
        assert_eq!(fired, want, "at {now}");
        for l in live.iter().filter(|l| want.binary_search(&l.0).is_ok()) {
            assert!(l.1 < now, "fired early");
            assert_eq!(wheel.remove(l.2), None, "a fired timer removed");
        }
        live.retain(|l| want.binary_search(&l.0).is_err());
    }
}

#[test]
fn short_deadlines() {
    for seed in 1..20 {
        check(seed, 300, 64 * TICK_NS);
    }
}

#[test]
fn deadlines_across_levels() {
    for seed in 1..20 {
        check(seed, 300, 1 << 40);
    }
}

#[test]
fn deadlines_beyond_the_top_level() {
    for seed in 1..10 {
        check(seed, 200, 1 << 55);
    }
}

#[test]
fn already_due_and_far_away() {
    let mut wheel = Wheel::default();
    wheel.poll(10 * TICK_NS, |_: u32| unreachable!());
    let a = wheel.insert(TICK_NS, 1);
    let b = wheel.insert(u64::MAX - 1, 2);
    assert_eq!(wheel.next_due(), 10 * TICK_NS);
    let mut fired = vec![];
    wheel.poll(10 * TICK_NS, |v| fired.push(v));
    assert_eq!(fired, [1]);
    assert_eq!(wheel.remove(a), None);
    assert_eq!(wheel.remove(b), Some(2));
    assert_eq!((wheel.len(), wheel.next_due()), (0, u64::MAX));
}

#[test]
fn a_burst_gives_its_slab_back_and_old_keys_stay_dead() {
    let mut wheel = Wheel::default();
    let keys: Vec<Key> = (0..10_000).map(|i| wheel.insert(5 * TICK_NS, i)).collect();
    assert_eq!(wheel.poll(10 * TICK_NS, |_| {}), 10_000);
    assert!(wheel.nodes.is_empty(), "slab kept after the burst");
    let new = wheel.insert(20 * TICK_NS, 7);
    for k in keys {
        assert_eq!(wheel.remove(k), None);
    }
    assert_eq!(wheel.remove(new), Some(7));
}
