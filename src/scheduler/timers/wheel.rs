//! A hierarchical timing wheel (tokio's `runtime::time::wheel`, rewritten
//! over a slab): O(1) insert, O(1) removal by handle, and expiry that
//! costs O(1) per timer plus O(levels) per batch.
//!
//! Time is counted in ticks of [`TICK_NS`]. Level `k` has 64 slots, each
//! covering 64^k ticks; a timer sits in the lowest level whose current
//! rotation holds its tick. When a slot of a higher level comes due, its
//! timers cascade down (each is re-inserted, at most once per level);
//! when a slot of level 0 comes due, all its timers fire. Which slots are
//! occupied is a bitmap per level, so finding the next due slot is a few
//! `trailing_zeros`.
//!
//! A timer due at `when` (monotonic ns) fires once the clock has passed
//! the end of `when`'s tick: never early, at most one tick late. That
//! rounding is what batches: every timer of a tick fires in one
//! `poll`, and an idle worker sleeps until a tick boundary rather than
//! until each deadline (see docs/DESIGN.md, "Stacks and timers").

/// A tick: 2^16 ns (65.5 µs), about the slack the kernel gives a futex
/// timeout anyway (50 µs by default).
pub(crate) const TICK_SHIFT: u32 = 16;
pub(crate) const TICK_NS: u64 = 1 << TICK_SHIFT;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// 6 levels of 64 slots: 2^36 ticks, about 52 days. Later timers wait in
/// the top level, which they go round until due.
const LEVELS: usize = 6;
const MAX_TICKS: u64 = (1 << (SLOT_BITS * LEVELS as u32)) - 1;
/// "No node" in the intrusive links.
const NIL: u32 = u32::MAX;
/// A node's `place` when it is in the due list (not in a slot).
const DUE: u16 = u16::MAX - 1;
/// A node's `place` when it is free.
const FREE: u16 = u16::MAX;
/// A slab this much larger than what is armed is given back when it
/// empties (after a burst of a million sleepers).
const KEEP_SLAB: usize = 4096;

/// A timer in the wheel: which slab node, and which use of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

struct Node<T> {
    /// The tick this timer is due at: it fires once the wheel reaches it.
    due: u64,
    value: Option<T>,
    prev: u32,
    next: u32,
    /// `level * 64 + slot`, `DUE` or `FREE`.
    place: u16,
    generation: u32,
}

/// A doubly linked list of slab nodes (a slot, or the due list).
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// The wheel; `T` is what a timer hands back when it fires.
pub(crate) struct Wheel<T> {
    nodes: Vec<Node<T>>,
    /// Free nodes, linked through `next`.
    free: u32,
    armed: usize,
    /// Every tick before this one has been processed.
    elapsed: u64,
    occupied: [u64; LEVELS],
    slots: [[List; SLOTS]; LEVELS],
    /// Timers inserted already due (the wheel had moved past their tick).
    due: List,
    /// The generation new nodes start at: above every generation a key
    /// into an earlier, given-back slab can hold.
    generation_floor: u32,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Wheel {
            nodes: Vec::new(),
            free: NIL,
            armed: 0,
            elapsed: 0,
            occupied: [0; LEVELS],
            slots: [[EMPTY; SLOTS]; LEVELS],
            due: EMPTY,
            generation_floor: 0,
        }
    }
}

/// The tick by whose start a deadline of `when` ns has passed.
fn due_tick(when: u64) -> u64 {
    (when >> TICK_SHIFT) + 1
}

/// When a timer due at `when` (monotonic ns) fires: the end of its tick.
pub(crate) fn fire_time(when: u64) -> u64 {
    due_tick(when).saturating_mul(TICK_NS)
}

/// The level a timer due at tick `due` goes to, seen from tick `elapsed`:
/// the highest 6-bit group in which the two differ.
fn level_for(elapsed: u64, due: u64) -> usize {
    let masked = ((elapsed ^ due) | (SLOTS as u64 - 1)).min(MAX_TICKS);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(due: u64, level: usize) -> usize {
    ((due >> (level as u32 * SLOT_BITS)) % SLOTS as u64) as usize
}

/// Ticks one slot of `level` covers.
fn slot_range(level: usize) -> u64 {
    1 << (level as u32 * SLOT_BITS)
}

impl<T> Wheel<T> {
    /// Timers armed (inserted, not yet fired or removed).
    pub(crate) fn len(&self) -> usize {
        self.armed
    }

    /// Arms a timer that fires `value` once the clock passes `when`
    /// (monotonic ns).
    pub(crate) fn insert(&mut self, when: u64, value: T) -> Key {
        let index = self.alloc(due_tick(when), value);
        self.armed += 1;
        self.place(index);
        Key {
            index,
            generation: self.nodes[index as usize].generation,
        }
    }

    /// Disarms the timer `key` if it has not fired: returns its value.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let node = self.nodes.get(key.index as usize)?;
        if node.generation != key.generation || node.place == FREE {
            return None;
        }
        self.unlink(key.index);
        Some(self.release(key.index))
    }

    /// The earliest time (monotonic ns) at which `poll` has work: a timer
    /// fires, or a slot cascades (never later than the earliest timer's
    /// deadline has passed). `u64::MAX` with nothing armed.
    pub(crate) fn next_due(&self) -> u64 {
        match self.next_expiration() {
            Some((_, _, tick)) => tick.saturating_mul(TICK_NS),
            None => u64::MAX,
        }
    }

    /// Fires, through `fire`, every timer whose deadline had passed
    /// at `now` (monotonic ns); returns how many.
    pub(crate) fn poll(&mut self, now: u64, mut fire: impl FnMut(T)) -> usize {
        let now_tick = now >> TICK_SHIFT;
        let mut fired = 0;
        loop {
            while self.due.head != NIL {
                let index = self.due.head;
                self.unlink(index);
                fire(self.release(index));
                fired += 1;
            }
            match self.next_expiration() {
                Some((level, slot, tick)) if tick <= now_tick => {
                    self.elapsed = self.elapsed.max(tick);
                    self.expire_slot(level, slot, tick, &mut fired, &mut fire);
                }
                _ => break,
            }
        }
        self.elapsed = self.elapsed.max(now_tick);
        self.maybe_shrink();
        fired
    }

    /// Every armed value, disarmed (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let floor = self.next_generation_floor();
        let out = self.nodes.drain(..).filter_map(|n| n.value).collect();
        let elapsed = self.elapsed;
        *self = Wheel::default();
        self.elapsed = elapsed;
        self.generation_floor = floor;
        out
    }

    /// A generation above every node's, for a fresh slab: keys into the
    /// old one (held by waits that end later) then match nothing.
    fn next_generation_floor(&self) -> u32 {
        let max = self.nodes.iter().map(|n| n.generation).max();
        max.map_or(self.generation_floor, |g| g.wrapping_add(1))
    }

    /// Fires or cascades every timer of one slot that came due at `tick`.
    fn expire_slot(
        &mut self,
        level: usize,
        slot: usize,
        tick: u64,
        fired: &mut usize,
        fire: &mut impl FnMut(T),
    ) {
        let list = std::mem::replace(&mut self.slots[level][slot], EMPTY);
        self.occupied[level] &= !(1 << slot);
        let mut index = list.head;
        while index != NIL {
            let next = self.nodes[index as usize].next;
            if self.nodes[index as usize].due <= tick {
                fire(self.release(index));
                *fired += 1;
            } else {
                // Cascades to a lower level (or round the top level).
                self.place(index);
            }
            index = next;
        }
    }

    /// The next slot with timers, as (level, slot, tick it is due at).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        if self.due.head != NIL {
            return Some((0, 0, self.elapsed));
        }
        // Lower levels' occupied slots all come before any higher level's
        // (a timer sits in the lowest level whose rotation holds it).
        (0..LEVELS).find_map(|level| {
            let occupied = self.occupied[level];
            if occupied == 0 {
                return None;
            }
            let range = slot_range(level);
            // From the slot after the current one round to the current
            // one: only the top level has timers in the current slot (ones
            // beyond its rotation), and those are a rotation away.
            let from = (self.elapsed / range + 1) % SLOTS as u64;
            let slot =
                (from + occupied.rotate_right(from as u32).trailing_zeros() as u64) % SLOTS as u64;
            let level_range = range * SLOTS as u64;
            let mut tick = (self.elapsed & !(level_range - 1)) + slot * range;
            if tick <= self.elapsed {
                // Only the top level wraps: a timer beyond its rotation
                // waits in a slot "before" now, which means the next
                // rotation.
                tick += level_range;
            }
            Some((level, slot as usize, tick))
        })
    }

    /// Puts node `index` (not linked anywhere) where its due tick says.
    fn place(&mut self, index: u32) {
        let due = self.nodes[index as usize].due;
        if due <= self.elapsed {
            self.nodes[index as usize].place = DUE;
            let mut list = self.due;
            self.push_back(&mut list, index);
            self.due = list;
            return;
        }
        let level = level_for(self.elapsed, due);
        let slot = slot_for(due, level);
        self.nodes[index as usize].place = (level * SLOTS + slot) as u16;
        let mut list = self.slots[level][slot];
        self.push_back(&mut list, index);
        self.slots[level][slot] = list;
        self.occupied[level] |= 1 << slot;
    }

    fn push_back(&mut self, list: &mut List, index: u32) {
        let node = &mut self.nodes[index as usize];
        node.prev = list.tail;
        node.next = NIL;
        if list.tail == NIL {
            list.head = index;
        } else {
            self.nodes[list.tail as usize].next = index;
        }
        list.tail = index;
    }

    /// Unlinks node `index` from its slot or the due list.
    fn unlink(&mut self, index: u32) {
        let (prev, next, place) = {
            let n = &self.nodes[index as usize];
            (n.prev, n.next, n.place)
        };
        let list = if place == DUE {
            &mut self.due
        } else {
            let (level, slot) = (place as usize / SLOTS, place as usize % SLOTS);
            &mut self.slots[level][slot]
        };
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        if place != DUE {
            let (level, slot) = (place as usize / SLOTS, place as usize % SLOTS);
            if self.slots[level][slot].head == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        }
    }

    fn alloc(&mut self, due: u64, value: T) -> u32 {
        if self.free == NIL {
            let index = u32::try_from(self.nodes.len()).expect("greenrt: 2^32 timers");
            self.nodes.push(Node {
                due,
                value: Some(value),
                prev: NIL,
                next: NIL,
                place: FREE,
                generation: self.generation_floor,
            });
            return index;
        }
        let index = self.free;
        let node = &mut self.nodes[index as usize];
        self.free = node.next;
        node.due = due;
        node.value = Some(value);
        index
    }

    /// Frees node `index` (already unlinked) and returns its value.
    fn release(&mut self, index: u32) -> T {
        let node = &mut self.nodes[index as usize];
        node.place = FREE;
        node.generation = node.generation.wrapping_add(1);
        node.next = self.free;
        self.free = index;
        self.armed -= 1;
        node.value.take().expect("an armed timer has a value")
    }

    /// After a burst, gives the slab's memory back once nothing is armed.
    fn maybe_shrink(&mut self) {
        if self.armed == 0 && self.nodes.len() > KEEP_SLAB {
            self.generation_floor = self.next_generation_floor();
            self.nodes = Vec::new();
            self.free = NIL;
        }
    }
}

#[cfg(test)]
#[path = "wheel_tests.rs"]
mod tests;
