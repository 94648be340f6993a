//! sysmon: the thread that watches every P and asks for preemption.
//!
//! Like Go's sysmon it never runs green threads. Each round it notes every
//! P's schedule tick; a P whose tick has not moved for a quantum while its
//! M runs a green thread gets a preemption request and one SIGURG (no
//! second signal while one is pending). If the M is still stuck a grace
//! period later, the request escalates to "retake": the handler then gives
//! the P to a spare M even where it cannot preempt (blocking hand-off).
//! sysmon also keeps spare Ms ready, since the preemption path may not
//! create threads, and wakes an idle P when preempted Gs wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::chores;
use super::handoff::{MHandle, PREEMPT, RETAKE};
use super::shared::Shared;
use crate::preempt::{self, Critical};
use crate::sys::clock;

/// Longest sleep between rounds when no green thread runs.
const MAX_DELAY: Duration = Duration::from_millis(10);
const MIN_DELAY: Duration = Duration::from_micros(20);
/// Shortest cadence for noticing new slices: each sysmon wake-up costs a
/// running G about 10 µs of its CPU when sysmon is real-time.
const MIN_BUSY_DELAY: Duration = Duration::from_micros(50);
/// First wait before signalling a retaken M again after a signal that did
/// not stop its G; it doubles per failed attempt.
const RETAKEN_SIGNAL_BACKOFF_NS: u64 = 200_000;
/// Longest wait between two signals to one M.
const MAX_SIGNAL_BACKOFF_NS: u64 = 20_000_000;
/// Retries a slice gets a grace period apart before sysmon backs off
/// (see `Seen::next_request`).
const PROMPT_RETRIES: u32 = 16;
/// Longest wait between two requests to a slice that keeps refusing them.
const MAX_RETRY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Default)]
struct Seen {
    tick: u32,
    since: u64,
    /// When sysmon last asked this slice's M to preempt (0: never).
    requested: u64,
    /// Requests sent to this slice (every one but the last was refused:
    /// the slice ran on).
    asks: u32,
    /// The last request went out with no spare M ready: unless a
    /// preempted G could take the P directly, it was refused for want of
    /// one (not because the G cannot be preempted), so it is repeated as
    /// soon as a spare is ready rather than after the back-off.
    starved: bool,
    /// For a slice its M stamped (a resumed preempted G): its thread's
    /// CPU time when it began (see `held`).
    cpu_start: Option<u64>,
}

impl Seen {
    /// A slice whose M stamped its start (monotonic ns, and thread CPU
    /// ns if taken).
    fn stamped(&mut self, start: u64, cpu_start: Option<u64>) {
        self.since = start;
        self.cpu_start = cpu_start;
    }

    /// How much of the quantum `quantum_ns` the slice has used at `now`:
    /// wall-clock time since it began, or, for a slice its M stamped, its
    /// thread's CPU time unless the thread is blocked (in a system call:
    /// then wall-clock time, so a blocked one is asked, and retaken, on
    /// time). Equal turns are equal CPU time: with more runnable threads
    /// than CPUs the kernel gives other threads parts of a worker's
    /// wall-clock slice, more of some slices than of others. The thread's
    /// state (a read of /proc) is looked at only when the two disagree.
    fn held(&self, now: u64, quantum_ns: u64, tid: libc::pid_t) -> u64 {
        let wall = now.saturating_sub(self.since);
        let Some(start) = self.cpu_start else {
            return wall;
        };
        let Some(cpu) = clock::thread_cpu(tid) else {
            return wall;
        };
        let used = cpu.saturating_sub(start);
        if used < quantum_ns && wall >= quantum_ns && !thread_is_running(tid) {
            return wall;
        }
        used
    }

    /// When sysmon may next ask this slice's M to preempt. A slice that
    /// refused a request has its green thread under `preempt::disable()`,
    /// in libc or the vDSO, or blocked. Code that only calls into libc or
    /// the vDSO now and then is caught in its own code by one of the next
    /// signals (each lands there with some odds, about 30% for a loop that
    /// reads the clock, and a few in a row can miss together when the
    /// loop's rhythm beats with sysmon's), so the first `PROMPT_RETRIES`
    /// retries come a grace period apart (the first of them is the
    /// retake, on time). Past that the slice most likely cannot be
    /// preempted at all, and a signal per round (up to tens of thousands
    /// a second when timers are due) would be for nothing: each further
    /// wait doubles, up to `MAX_RETRY`. The slice's end starts the next
    /// one afresh. (So a green thread that leaves a long
    /// `preempt::disable()` section may run on for up to `MAX_RETRY`
    /// before the next signal stops it.)
    fn next_request(&self, grace_ns: u64) -> u64 {
        if self.asks == 0 {
            return 0;
        }
        let doublings = self.asks.saturating_sub(PROMPT_RETRIES).min(16);
        let wait = (grace_ns << doublings).min(MAX_RETRY.as_nanos() as u64);
        self.requested + wait
    }

    /// Records a request sent at `now`; `spare` tells whether a spare M
    /// was ready for it.
    fn asked(&mut self, now: u64, spare: bool) {
        self.asks = self.asks.saturating_add(1);
        self.requested = now;
        self.starved = !spare;
    }
}

/// Starts sysmon for `rt`; it stops when `rt.sysmon_stop` is set.
pub(crate) fn start(rt: Arc<Shared>, quantum: Duration) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("{}-sysmon", rt.cfg.thread_name))
        .spawn(move || run(&rt, quantum))
}

fn run(rt: &Arc<Shared>, quantum: Duration) {
    crate::sys::sched_class::raise_sysmon();
    let quantum_ns = quantum.as_nanos() as u64;
    // Stuck this long past the quantum (not preemptible all along): retake.
    let grace_ns = quantum_ns.min(1_000_000);
    // After seeing a slice begin that sysmon did not cause (a green thread
    // blocked or yielded), or while timers are pending, look every quarter
    // quantum (at most 2 ms): a slice noticed then is dated within ± an
    // eighth of a quantum, unbiased, and a due timer is noticed soon.
    // Slices that follow sysmon's own preemption requests are dated by the
    // request, so while every running slice is one sysmon knows it just
    // sleeps to the earliest slice end (or retake): each wake-up costs a
    // running G some CPU.
    let busy_delay = (quantum / 4).clamp(MIN_BUSY_DELAY, Duration::from_millis(2));
    let mut seen = vec![Seen::default(); rt.cfg.workers];
    let mut delay = MIN_DELAY;
    let mut last_round = clock::now();
    // From here on sysmon neither allocates nor takes a lock: it is what
    // gets a preempted green thread its P back, and that green thread may
    // hold the allocator's lock. Errands that need either go to the
    // errand thread (`chores`).
    let _critical = Critical::enter();
    while !rt.sysmon_stop.load(Ordering::Acquire) {
        thread::sleep(delay);
        if rt.spares_missing() {
            rt.chores.request(chores::SPARES);
        }
        let now = clock::now();
        // A slice noticed now began somewhere since the last round: take
        // the midpoint, so slices come out right on average.
        let slice_start = last_round + (now - last_round) / 2;
        last_round = now;
        // Any P held by an M (running a G or between two).
        let mut busy = false;
        // A slice began that sysmon did not ask for: look again soon.
        let mut unexpected = false;
        // When sysmon must look next: the earliest end of a running slice,
        // or of a retake's grace period.
        let mut next_deadline = u64::MAX;
        // Overdue timers with every P busy: nobody will look at them until
        // some G leaves its P, so preempt the longest-running G now rather
        // than at the end of its quantum.
        let next_timer = rt.next_timer();
        let timers_overdue = next_timer <= now && rt.npidle.load(Ordering::Relaxed) == 0;
        let mut longest: Option<(usize, u64)> = None;
        for (id, s) in seen.iter_mut().enumerate() {
            let tick = rt.ticks[id].load(Ordering::Relaxed);
            let owner = rt.owner(id);
            busy |= owner.is_some();
            if tick != s.tick {
                // Asked for by sysmon (lately): it began a few µs after
                // the request (the hand-off), not at the midpoint.
                let asked = s.requested != 0 && now - s.requested <= quantum_ns + grace_ns;
                unexpected |= !asked;
                *s = Seen {
                    tick,
                    since: if asked { s.requested } else { slice_start },
                    ..Seen::default()
                };
            }
            let Some(m) = owner.filter(|m| m.in_g.load(Ordering::Relaxed)) else {
                // Idle, or its M is between two green threads: a slice
                // may start any moment (keep `requested`: a hand-off that
                // sysmon asked for may be under way).
                s.since = slice_start;
                unexpected |= owner.is_some();
                continue;
            };
            // A resumed preempted G, or the first slice since its M took
            // the P: the M stamped when the slice began.
            if let Some((start, cpu_start)) = m.slice_started(id, tick) {
                s.stamped(start, cpu_start);
            }
            let held = s.held(now, quantum_ns, m.tid.load(Ordering::Relaxed));
            // Already asked, and refused: not again before the back-off,
            // unless it was refused for want of a spare M and one is
            // ready now (while none is, look again soon).
            let retry_at = match s.starved {
                true if rt.has_spare() => now,
                true => {
                    next_deadline = next_deadline.min(now + MIN_BUSY_DELAY.as_nanos() as u64);
                    s.next_request(grace_ns)
                }
                false => s.next_request(grace_ns),
            };
            if held < quantum_ns {
                // The earliest the quantum can be up (CPU time passes no
                // faster than wall-clock time; a thread waiting for a CPU
                // is not looked at more often than every 50 µs).
                let left = match s.cpu_start {
                    Some(_) => (quantum_ns - held).max(MIN_BUSY_DELAY.as_nanos() as u64),
                    None => quantum_ns - held,
                };
                next_deadline = next_deadline.min(now + left);
                if timers_overdue && now >= retry_at && longest.is_none_or(|(_, h)| held > h) {
                    longest = Some((id, held));
                }
                continue;
            }
            if now < retry_at {
                next_deadline = next_deadline.min(retry_at);
                continue;
            }
            // The first request comes at the quantum, the next (if the
            // slice runs on) a grace period later: the retake.
            let level = if held >= quantum_ns + grace_ns {
                RETAKE
            } else {
                PREEMPT
            };
            request(rt, m, level, tick);
            s.asked(now, rt.has_spare());
            next_deadline = next_deadline.min(s.next_request(grace_ns));
        }
        if let Some((id, _)) = longest.filter(|_| timers_overdue) {
            if let Some(m) = rt.owner(id).filter(|m| m.in_g.load(Ordering::Relaxed)) {
                request(rt, m, PREEMPT, seen[id].tick);
                seen[id].asked(now, rt.has_spare());
            }
        }
        // Green threads whose P was retaken run on without one; stop them
        // (queue them for a P) as soon as they can be preempted.
        // Only while its thread actually runs: one still blocked in its
        // system call would just get EINTR (poll, nanosleep and friends
        // are not restarted) over and over.
        rt.for_each_m(|m| {
            if !(m.retaken.load(Ordering::Acquire) && m.in_g.load(Ordering::Relaxed)) {
                m.retaken_attempts.store(0, Ordering::Relaxed);
                return;
            }
            busy = true;
            unexpected = true;
            if now >= m.retaken_next_signal.load(Ordering::Relaxed)
                && thread_is_running(m.tid.load(Ordering::Relaxed))
            {
                request(rt, m, PREEMPT, 0);
                // A G computing in libc is not preempted by a signal that
                // lands there: back off (doubling, capped) rather than
                // signal it every round.
                let n = m.retaken_attempts.fetch_add(1, Ordering::Relaxed).min(16);
                let wait = (RETAKEN_SIGNAL_BACKOFF_NS << n).min(MAX_SIGNAL_BACKOFF_NS);
                m.retaken_next_signal.store(now + wait, Ordering::Relaxed);
            }
        });
        // File operations queued while every M is busy with long-running
        // Gs: submit them (a syscall; no lock, no allocation).
        crate::netpoll::uring::submit_if_due(None, || now);
        // Nobody polled for a while (every M busy): have fds looked at.
        if crate::netpoll::poll_is_stale(now) {
            rt.chores.request(chores::POLL);
        }
        if !rt.preempted.is_empty() {
            busy = true;
            if rt.npidle.load(Ordering::Relaxed) > 0 {
                rt.chores.request(chores::WAKEP);
            }
        }
        delay = if busy {
            // Timers due while every P is busy need a look too; one that
            // is added while sysmon sleeps long would be noticed late, so
            // with timers about, keep the short cadence.
            // A timer due later: wake for it (not sooner than the
            // wheel's tick, its resolution). One overdue already: the
            // Ms run it as soon as one looks for work, and sysmon has
            // asked the longest-running G to make way (above); looking
            // again every busy round is enough. (Waking at every round's
            // minimum instead, while a million sleepers kept some timer
            // always overdue, cost the workers a tenth of their time.)
            let timer_wake = match next_timer {
                u64::MAX => u64::MAX,
                t if t > now => t.max(now + super::timers::TICK_NS),
                _ => now + busy_delay.as_nanos() as u64,
            };
            let wake_at = next_deadline.min(timer_wake);
            let cap = if unexpected || next_timer != u64::MAX {
                busy_delay
            } else {
                quantum.min(MAX_DELAY)
            };
            Duration::from_nanos(wake_at.saturating_sub(now)).clamp(MIN_DELAY, cap)
        } else {
            (delay * 2).min(MAX_DELAY)
        };
    }
}

/// Asks `m` to preempt (or retake) and signals it, unless a signal is
/// already pending for it.
fn request(rt: &Shared, m: &MHandle, level: u8, tick: u32) {
    m.preempt_tick.store(tick, Ordering::Release);
    m.preempt_req.fetch_max(level, Ordering::AcqRel);
    if !m.signal_pending.swap(true, Ordering::AcqRel) {
        if super::tracing::on(rt) {
            super::tracing::signalled(rt, m);
        }
        // A live M's tid: Ms never exit while sysmon runs.
        preempt::send_preempt_signal(m.tid.load(Ordering::Relaxed));
        preempt::count_signal();
    }
}

/// Is thread `tid` of this process running or runnable (not sleeping in
/// the kernel)? Reads its state from /proc with raw system calls and
/// buffers on the stack: sysmon may not allocate.
fn thread_is_running(tid: libc::pid_t) -> bool {
    let mut path = [0u8; 48];
    let len = stat_path(tid, &mut path);
    let mut buf = [0u8; 512];
    // SAFETY: `path` is NUL-terminated (stat_path leaves a zero after
    // `len` bytes); the fd is closed below on every path.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 || len == 0 {
        return false;
    }
    // SAFETY: reading at most buf.len() bytes into our own buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours and still open.
    unsafe { libc::close(fd) };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    thread_state(&buf[..n]) == Some(b'R')
}

/// Writes "/proc/self/task/<tid>/stat" and a NUL into `out`; returns the
/// path's length (0 if `tid` is negative).
fn stat_path(tid: libc::pid_t, out: &mut [u8; 48]) -> usize {
    const PREFIX: &[u8] = b"/proc/self/task/";
    const SUFFIX: &[u8] = b"/stat";
    let Ok(mut t) = u32::try_from(tid) else {
        return 0;
    };
    let mut digits = [0u8; 10];
    let mut nd = 0;
    loop {
        digits[nd] = b'0' + (t % 10) as u8;
        nd += 1;
        t /= 10;
        if t == 0 {
            break;
        }
    }
    let mut len = 0;
    for &b in PREFIX.iter().chain(digits[..nd].iter().rev()).chain(SUFFIX) {
        out[len] = b;
        len += 1;
    }
    out[len] = 0;
    len
}

/// The state letter of a /proc/<pid>/task/<tid>/stat line: "tid (comm) S
/// ...", where it follows the last ')' (comm may itself hold one).
fn thread_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().copied().find(|&b| b != b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_path_names_the_thread() {
        let mut out = [0u8; 48];
        let len = stat_path(12345, &mut out);
        assert_eq!(&out[..len], b"/proc/self/task/12345/stat");
        assert_eq!(out[len], 0);
        assert_eq!(stat_path(-1, &mut out), 0);
    }

    #[test]
    fn thread_state_follows_the_last_paren() {
        assert_eq!(thread_state(b"42 (a) b) R 1 2"), Some(b'R'));
        assert_eq!(thread_state(b"42 (sleepy) S 1"), Some(b'S'));
        assert_eq!(thread_state(b"garbage"), None);
    }

    #[test]
    fn this_thread_is_running() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert!(thread_is_running(tid));
    }
}
