//! An intrusive list of free stacks, linked through the stacks' own
//! memory: pooling a stack needs no allocation and no bound on the
//! number pooled (see `pool` for why both matter).
//!
//! Each pooled stack holds its [`Node`] in the last bytes of its usable
//! range — the top of the stack, the page every green thread touched
//! first, so writing the node faults in nothing new. The list is
//! doubly linked: the newest stack is popped from the front (its pages
//! are the warmest), the oldest cut from the back when trimming.

use std::mem::size_of;
use std::ptr::{self, NonNull};

use super::Stack;

/// The link a pooled stack carries at its top.
#[repr(C)]
struct Node {
    prev: *mut Node,
    next: *mut Node,
    base: NonNull<u8>,
    len: usize,
}

/// Free stacks, newest at the front.
pub(super) struct StackList {
    head: *mut Node,
    tail: *mut Node,
    len: usize,
}

// SAFETY: the list owns the stacks its nodes live in (as `Stack`s it
// took by `into_raw`); like a `Vec<Stack>` it may move between threads.
unsafe impl Send for StackList {}

impl StackList {
    pub(super) const fn new() -> StackList {
        StackList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Pools `stack` as the newest.
    pub(super) fn push_front(&mut self, stack: Stack) {
        let top = stack.top();
        let (base, len) = stack.into_raw();
        let node = top.wrapping_sub(size_of::<Node>()).cast::<Node>();
        // SAFETY: the top `size_of::<Node>()` bytes of the usable range
        // belong to the stack just taken over (no green thread runs on a
        // pooled stack), are 16-byte aligned (`top` is page-aligned), and
        // stay untouched by anyone else while the stack is in the list;
        // `self.head`, if any, is a node of another stack in this list.
        unsafe {
            node.write(Node {
                prev: ptr::null_mut(),
                next: self.head,
                base,
                len,
            });
            match NonNull::new(self.head) {
                Some(h) => (*h.as_ptr()).prev = node,
                None => self.tail = node,
            }
        }
        self.head = node;
        self.len += 1;
    }

    /// Unpools the newest stack.
    pub(super) fn pop_front(&mut self) -> Option<Stack> {
        let node = NonNull::new(self.head)?;
        // SAFETY: `node` is this list's head, a live node in a stack the
        // list owns; unlinking it fixes its successor's back link, itself
        // a node of this list.
        unsafe {
            let Node {
                next, base, len, ..
            } = node.as_ptr().read();
            self.head = next;
            match NonNull::new(next) {
                Some(n) => (*n.as_ptr()).prev = ptr::null_mut(),
                None => self.tail = ptr::null_mut(),
            }
            self.len -= 1;
            Some(Stack::from_raw(base, len))
        }
    }

    /// Unpools the oldest stack.
    pub(super) fn pop_back(&mut self) -> Option<Stack> {
        let node = NonNull::new(self.tail)?;
        // SAFETY: as in `pop_front`, from the other end.
        unsafe {
            let Node {
                prev, base, len, ..
            } = node.as_ptr().read();
            self.tail = prev;
            match NonNull::new(prev) {
                Some(p) => (*p.as_ptr()).next = ptr::null_mut(),
                None => self.head = ptr::null_mut(),
            }
            self.len -= 1;
            Some(Stack::from_raw(base, len))
        }
    }
}

impl Drop for StackList {
    fn drop(&mut self) {
        while let Some(s) = self.pop_front() {
            drop(s);
        }
    }
}
