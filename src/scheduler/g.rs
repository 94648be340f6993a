//! G: a green thread — its stack, saved context, state and identity.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sys::sync::AtomicPtr;

pub(crate) use super::park_state::ParkState;

use super::handoff::MHandle;
use super::registry::Links;
use super::shared::Shared;
use crate::context;
use crate::stack::Stack;
use crate::task::local::LocalMap;

/// Waiting in a run queue (or about to be put in one).
pub(crate) const RUNNABLE: u8 = 0;
/// Running on an M.
pub(crate) const RUNNING: u8 = 1;
/// Parked; `unpark` makes it runnable again.
pub(crate) const PARKED: u8 = 2;
/// Finished; its stack has been released.
pub(crate) const DEAD: u8 = 3;

/// What a G runs, where its result goes, and how its allocation ends:
/// the functions of the spawn cell (`task::cell`) that holds the G header,
/// the closure and the joiner's result slot in one allocation, with the
/// header first. Each takes the header of a live cell of the vtable's own
/// type (the cell calls `G::new` with its vtable).
pub(crate) struct GBodyVTable {
    /// Runs the closure (on the G's stack), or with `start_error`, drops
    /// it unrun (on the scheduler's stack) and reports the error to the
    /// joiner. Called at most once.
    pub(crate) start: unsafe fn(NonNull<G>, Option<std::io::Error>),
    /// The G will never finish (its runtime shut down): drop the closure
    /// if it never ran and let the joiner know. Returns whether it had
    /// started (its closure was no longer there).
    pub(crate) abandon: unsafe fn(NonNull<G>) -> bool,
    /// Drops the cell and frees its memory; called once, as the last
    /// `GRef` goes.
    pub(crate) destroy: unsafe fn(NonNull<G>),
}

/// A shared handle to a G (a counted reference to its spawn cell). Run
/// queues, timers and wait queues hold these.
///
/// Counted by hand rather than an `Arc<dyn ..>`: the cell's memory goes
/// back through `cell_cache` (an Arc frees into malloc), the handle is
/// one word, and the count sits in the G's first cache line.
pub(crate) struct GRef(NonNull<G>);

// SAFETY: a GRef shares a G, which is Send + Sync, and its cell, whose
// closure and result are Send (spawn requires it); the count is atomic.
unsafe impl Send for GRef {}
// SAFETY: as above: `&GRef` gives only `&G`.
unsafe impl Sync for GRef {}

impl GRef {
    /// Takes over the one reference a new cell's header starts with.
    ///
    /// # Safety
    /// `g` is the header of a fully built spawn cell whose count is 1 and
    /// owned by the caller, and whose `vtable` fits it.
    pub(crate) unsafe fn from_new(g: NonNull<G>) -> GRef {
        GRef(g)
    }

    /// The header's address (also the allocation's).
    pub(crate) fn as_ptr(&self) -> *const G {
        self.0.as_ptr()
    }

    /// See [`GBodyVTable::start`].
    pub(crate) fn start(&self, start_error: Option<std::io::Error>) {
        // SAFETY: the G is the header of a live cell (we hold a reference)
        // of the vtable's type (`G::new`'s contract).
        unsafe { (self.vtable.start)(self.0, start_error) }
    }

    /// See [`GBodyVTable::abandon`].
    pub(crate) fn abandon(&self) -> bool {
        // SAFETY: as in `start`.
        unsafe { (self.vtable.abandon)(self.0) }
    }

    /// Wakes the G: leaves a token if it runs; if it is parked, makes it
    /// runnable and queues it (this reference is dropped).
    pub(crate) fn unpark_owned(self) {
        if let Some(parked) = self.wake() {
            super::ready(parked);
        }
    }
}

impl Clone for GRef {
    #[inline]
    fn clone(&self) -> GRef {
        // Relaxed, as Arc's: a new reference is made from an existing one,
        // whose owner already sees the cell.
        let old = self.refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            // Leaked references (mem::forget in a loop): as Arc does.
            std::process::abort();
        }
        GRef(self.0)
    }
}

impl Drop for GRef {
    #[inline]
    fn drop(&mut self) {
        // Release, then Acquire before destroying (as Arc's drop): every
        // use of the cell through other references happens before it goes.
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: that was the last reference: nobody else can reach the
        // cell, whose vtable fits it (`G::new`'s contract).
        unsafe { (self.vtable.destroy)(self.0) }
    }
}

impl std::ops::Deref for GRef {
    type Target = G;
    fn deref(&self) -> &G {
        // SAFETY: our reference keeps the cell, and its header, alive.
        unsafe { self.0.as_ref() }
    }
}

/// How many bytes at the start of a G hold every field a switch into it
/// reads (`prefetch_context` loads them at the wake-up): a header is
/// 16-byte aligned, so its first 80 bytes lie in at most two cache lines.
const HOT_BYTES: usize = 80;
const _: () =
    assert!(std::mem::offset_of!(G, guard) + std::mem::size_of::<(usize, usize)>() <= HOT_BYTES);

/// The scheduler's view of a green thread.
///
/// `repr(C)` with the reference count and the fields every park and
/// wake-up touches first, so they share one or two cache lines: with
/// thousands of parked green threads each wake-up finds its G cold.
#[repr(C)]
pub(crate) struct G {
    /// `GRef`s to this G (see `GRef`'s Clone and Drop).
    refs: AtomicUsize,
    /// State (with the wake-up token) and cancel mark.
    park: ParkState,
    /// Set by the timer wheel, under its lock, when it fires the timer this
    /// G armed (`timers::add_timer` clears it): the G's deadline has passed
    /// and its wheel node is gone, so the wait's end neither disarms it
    /// (no wheel lock) nor reads the clock. Fits the padding before
    /// `nopreempt`, on the line a wake-up touches anyway.
    pub(crate) timer_fired: AtomicBool,
    /// While non-zero the G must not be preempted: it is in runtime code
    /// (or under `preempt::disable`). Read by the SIGURG handler.
    pub(crate) nopreempt: AtomicU32,
    /// Saved stack pointer while the G is not running.
    pub(crate) sp: UnsafeCell<*mut u8>,
    /// While the G is PARKED: the reference its M ran it with, handed
    /// over at the park (`park_owned`) to whoever wakes it (`wake`). A
    /// parked G thus keeps itself alive, and a waker need not hold a
    /// reference of its own (see `park::StackWaker`).
    parked_ref: UnsafeCell<Option<GRef>>,
    /// Top of the stack (null until one is bound); the parent slot lives
    /// just below it.
    top: UnsafeCell<*mut u8>,
    /// What the stack's parent slot holds: the g0 stack pointer cell of
    /// the M that last ran this G (see `link_parent`).
    parent: UnsafeCell<*mut *mut u8>,
    /// Guard page range, kept outside `stack` so the SIGSEGV handler can
    /// read it without touching the Option (and here, beside `sp`, for
    /// the direct switch's room check).
    guard: UnsafeCell<(usize, usize)>,
    pub(crate) rt: Arc<Shared>,
    /// The functions of the cell this header is in.
    vtable: &'static GBodyVTable,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    /// Usable stack size to bind when the G first runs.
    pub(crate) stack_size: usize,
    stack: UnsafeCell<Option<Stack>>,
    pub(crate) locals: UnsafeCell<LocalMap>,
    /// Set by the preemption path: the M that waits to resume this G.
    pub(crate) locked_m: AtomicPtr<MHandle>,
    /// Link in the runtime's queue of preempted Gs (intrusive: the
    /// preemption path must not allocate).
    pub(crate) preempt_next: AtomicPtr<G>,
    /// The queue's reference to this G while it is queued there.
    pub(crate) preempt_ref: UnsafeCell<Option<GRef>>,
    /// Membership in the runtime's registry of live Gs.
    pub(crate) links: Links,
    /// Open `greenrt::scope`s of this G: while non-zero, green threads
    /// may borrow from its stack, which shutdown's `abandon_queued` must
    /// then leak rather than unmap (see `task::scope`).
    stack_pins: AtomicU32,
}

// SAFETY: the UnsafeCell fields are only touched by the M that currently
// runs (or last ran and then released, with a release/acquire hand-over
// through the run queues and `state`) this G.
unsafe impl Send for G {}
// SAFETY: other threads share a G only through its atomic fields (state,
// the wake-up token, the no-preempt count, links taken under their own locks); the
// UnsafeCell fields are touched by the owning M alone (see Send above).
unsafe impl Sync for G {}

impl G {
    /// A new G header, with one reference (for `GRef::from_new`). Without
    /// `stack`, one is bound when the G first runs, so queued Gs that have
    /// not started cost no stack.
    ///
    /// # Safety
    /// The header must be the first field of a spawn cell whose functions
    /// `vtable` holds (each `GRef` calls them with this header).
    #[inline]
    pub(crate) unsafe fn new(
        rt: Arc<Shared>,
        vtable: &'static GBodyVTable,
        id: u64,
        name: Option<Box<str>>,
        stack_size: usize,
    ) -> G {
        G {
            refs: AtomicUsize::new(1),
            vtable,
            id,
            name,
            rt,
            park: ParkState::new(),
            timer_fired: AtomicBool::new(false),
            sp: UnsafeCell::new(std::ptr::null_mut()),
            parked_ref: UnsafeCell::new(None),
            top: UnsafeCell::new(std::ptr::null_mut()),
            parent: UnsafeCell::new(std::ptr::null_mut()),
            guard: UnsafeCell::new((0, 0)),
            stack_size,
            stack: UnsafeCell::new(None),
            locals: UnsafeCell::new(LocalMap::default()),
            nopreempt: AtomicU32::new(0),
            locked_m: AtomicPtr::new(std::ptr::null_mut()),
            preempt_next: AtomicPtr::new(std::ptr::null_mut()),
            preempt_ref: UnsafeCell::new(None),
            links: Links::default(),
            stack_pins: AtomicU32::new(0),
        }
    }

    /// The G whose context slot (`sp`) is at `slot`: the switch has the
    /// slot at hand, and reaching the header through a `GRef` would cost a
    /// load more.
    ///
    /// # Safety
    /// `slot` must be `g.sp.get()` of a G that outlives the returned
    /// reference.
    #[inline(always)]
    pub(crate) unsafe fn from_context_slot<'a>(slot: *mut *mut u8) -> &'a G {
        // SAFETY: G is `repr(C)` and `slot` points at its `sp` field (the
        // caller's contract), so the G starts `offset_of!(G, sp)` bytes
        // before it, and lives as the caller says.
        unsafe { &*slot.byte_sub(std::mem::offset_of!(G, sp)).cast::<G>() }
    }

    /// Marks the stack as lent out (a scope opens on this G; the G itself
    /// calls this, while running).
    pub(crate) fn pin_stack(&self) {
        self.stack_pins.fetch_add(1, Ordering::Relaxed);
    }

    /// Undoes one [`pin_stack`](Self::pin_stack) (every borrower is done).
    pub(crate) fn unpin_stack(&self) {
        self.stack_pins.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether other green threads may still use this G's stack. Read by
    /// whoever owns the G off-CPU (the run queue's hand-over orders it
    /// after the G's own updates).
    pub(crate) fn stack_pinned(&self) -> bool {
        self.stack_pins.load(Ordering::Relaxed) != 0
    }

    /// Marks the G cancelled (see [`ParkState::cancel`]).
    pub(crate) fn cancel(&self) {
        self.park.cancel();
    }

    /// Whether the G's runtime cancelled it.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.park.is_cancelled()
    }

    /// Gives the G its stack and prepares the first switch into it.
    ///
    /// # Safety
    /// The G must not have started, and the caller must own it (creating
    /// or about to run it).
    pub(crate) unsafe fn bind_stack(&self, stack: Stack) {
        let top = stack.top();
        let arg = self as *const G as *mut u8;
        // SAFETY: the caller owns this G and it has not started, so no one
        // else reads or writes these cells now (they are read by the M
        // that runs the G, after a hand-over that synchronises).
        unsafe {
            *self.top.get() = top;
            *self.parent.get() = std::ptr::null_mut();
            *self.guard.get() = stack.guard();
            *self.stack.get() = Some(stack);
        }
        // SAFETY: `top` is the top of the stack just bound to this G, which
        // nothing runs on yet; `g_entry` never returns (as `prepare`
        // requires). The caller's ownership covers the `sp` cell.
        unsafe { *self.sp.get() = context::prepare(top, super::m::g_entry, arg) };
    }

    /// Points the stack's parent slot at `g0_sp`, the cell where the M
    /// about to run this G keeps the scheduler's stack pointer, so that
    /// unwinders walk from the G's frames into the scheduler (see
    /// `greenrt_start` in switch.S). Written only when the G changes Ms:
    /// the slot sits in the stack's top line, which the G's own frames
    /// rarely touch, and a wake-up of a cold G should not pay for it.
    ///
    /// # Safety
    /// The caller must own the G, which must have a stack bound.
    pub(crate) unsafe fn link_parent(&self, g0_sp: *mut *mut u8) {
        // SAFETY: the caller owns the G, so its `parent` cell is ours; the
        // G has a stack bound, so `top` is its stack's top, whose parent
        // slot is ours to write while the G does not run (it is about to).
        unsafe {
            if *self.parent.get() != g0_sp {
                *self.parent.get() = g0_sp;
                *context::parent_slot(self.top()) = g0_sp.cast();
            }
        }
    }

    /// Bytes of the bound stack left below the saved stack pointer (the
    /// room code resumed there has before it reaches the guard).
    ///
    /// # Safety
    /// The caller must own the G, which must have a stack bound and a
    /// saved context (it is not running).
    pub(crate) unsafe fn stack_room(&self) -> usize {
        // SAFETY: the caller owns the G, so nobody writes these meanwhile.
        let (sp, (_, lowest)) = unsafe { (*self.sp.get() as usize, *self.guard.get()) };
        sp.saturating_sub(lowest)
    }

    /// Whether a stack is bound (always, once the G has started).
    ///
    /// # Safety
    /// The caller must own the G (be about to run it).
    pub(crate) unsafe fn has_stack(&self) -> bool {
        // SAFETY: the caller owns the G: no one writes `top` meanwhile.
        unsafe { !(*self.top.get()).is_null() }
    }

    /// Top of the bound stack.
    pub(crate) fn top(&self) -> *mut u8 {
        // SAFETY: written only before the G first runs, by its owner.
        unsafe { *self.top.get() }
    }

    /// Guard page range of the bound stack ((0, 0) before one is bound).
    pub(crate) fn guard(&self) -> (usize, usize) {
        // SAFETY: written only in `bind_stack`, by the owner, before the G
        // first runs; later readers see it through the hand-over that
        // made them the G's M (or read it on the G's own thread).
        unsafe { *self.guard.get() }
    }

    /// Sets RUNNING, RUNNABLE or DEAD (see [`ParkState::set_state`]).
    pub(crate) fn set_state(&self, s: u8) {
        self.park.set_state(s);
    }

    /// Takes the stack of a G that has exited.
    ///
    /// # Safety
    /// The G must be DEAD and no longer running on its stack.
    pub(crate) unsafe fn take_stack(&self) -> Option<Stack> {
        // SAFETY: a DEAD G no longer runs on its stack and nothing else
        // touches the cell (the caller finishing it is the last owner).
        unsafe { (*self.stack.get()).take() }
    }

    /// Consumes the wake-up token, if set.
    pub(crate) fn take_token(&self) -> bool {
        self.park.take_token()
    }

    /// Called by the scheduler after the G switched away to park, with
    /// the reference it ran the G with: parks the G, handing that
    /// reference to the G's next waker (see [`G::wake`]) — no reference
    /// count changes on a park and wake-up. Returns it back if a wake-up
    /// came first (the G is RUNNABLE again; the caller queues it).
    pub(crate) fn park_owned(g: GRef) -> Option<GRef> {
        let ptr = g.as_ptr();
        // SAFETY: the caller owns the G (it just switched out of it) and
        // the G is RUNNING or NOTIFIED, so no waker reads `parked_ref`
        // (only the one that moves it PARKED → RUNNABLE does). The G is
        // alive: the reference stored here keeps it so until the CAS
        // below publishes it.
        let cell = unsafe {
            let cell = (*ptr).parked_ref.get();
            *cell = Some(g);
            cell
        };
        // SAFETY: as above, the G is alive until `finish_park` parks it;
        // after that this function touches it no more (its waker may take
        // the reference, run and free the G at once).
        let token_came = unsafe { (*ptr).park.finish_park() };
        if !token_came {
            return None;
        }
        // SAFETY: `finish_park` returned true, so the G never became
        // PARKED: no waker takes the reference, which is still ours.
        unsafe { (*cell).take() }
    }

    /// Wakes the G: leaves a token if it runs; if it is parked, makes it
    /// runnable and returns the reference its park handed over (see
    /// [`G::park_owned`]), which the caller must queue.
    pub(crate) fn wake(&self) -> Option<GRef> {
        if !self.wake_token() {
            return None;
        }
        // SAFETY: we won PARKED → RUNNABLE (acquiring the park's release
        // of `parked_ref`), so we alone own the parked G until we queue
        // it; the reference is there by `park_owned`'s contract.
        let g = unsafe { (*self.parked_ref.get()).take() };
        debug_assert!(g.is_some(), "a parked G without its reference");
        g
    }

    /// See [`ParkState::wake_token`]. When it returns true (the G was
    /// parked and the caller queues it), also starts loading the G's saved
    /// context into the cache (see `prefetch_context`).
    fn wake_token(&self) -> bool {
        let woken = self.park.wake_token();
        if woken {
            self.prefetch_context();
        }
        woken
    }

    /// Asks the CPU to start loading the lines a switch into this G reads
    /// first: its saved switch frame and the frame above it. A G that has
    /// been parked a while has them out of cache (1 000 connections or
    /// channel pairs are megabytes of stacks), and the switch would wait
    /// for them; the waker has work left before the G runs (it finishes its
    /// own turn, or queues a poll's batch), which hides the load.
    ///
    /// Call only after winning PARKED → RUNNABLE: the saved stack pointer
    /// was written before the park's CAS, which that win acquired, and is
    /// not written again until the G runs, after the caller queues it.
    #[inline(always)]
    fn prefetch_context(&self) {
        // SAFETY: as the doc says, this read is ordered after the write of
        // `sp` (the G's switch out, released by `finish_park`'s CAS and
        // acquired by the waker's) and before the next one (the G must be
        // queued by our caller and run first).
        let sp = unsafe { *self.sp.get() };
        // Any address is fine for a prefetch (a G that never ran has a
        // null `sp` and `top`).
        crate::sys::prefetch(sp);
        crate::sys::prefetch(sp.wrapping_add(64));
        // The rest of the fields a switch into the G reads: the header's
        // first `HOT_BYTES` (the line holding the park state is loaded
        // already; a 16-byte aligned header's first 80 bytes lie in it
        // and the line holding byte 64). And the stack's parent slot,
        // which the switch writes when the G comes back on another M.
        crate::sys::prefetch((self as *const G).cast::<u8>().wrapping_add(64));
        crate::sys::prefetch(context::parent_slot(self.top()));
    }

    /// The display name used in messages.
    pub(crate) fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("<unnamed>")
    }
}
