//! greenrt: Go's scheduling model for Rust. Cheap stackful green threads
//! with a plain blocking, std-like API, multiplexed M:N over a few worker
//! OS threads with per-worker run queues and work stealing, and
//! signal-based preemption so that no green thread can starve the others.
//!
//! A green thread is a closure with a stack of its own (256 KiB of address
//! space, [`DEFAULT_STACK_SIZE`], committed as it is used). It blocks as a
//! std thread would — [`sleep`], [`JoinHandle::join`], a
//! [`sync::Mutex`], a [`sync::mpsc`] channel, a read on a
//! [`net::TcpStream`] — but blocking parks the green thread, not the OS
//! thread under it: the worker runs other green threads meanwhile. Linux
//! x86-64 only.
//!
//! | module | what is in it |
//! |---|---|
//! | crate root | [`run`], [`Builder`] and [`Runtime`], [`spawn`], [`scope`], [`sleep`], [`yield_now`], [`metrics`], [`macro@main`] / [`macro@test`] |
//! | [`task`] | [`task::Builder`] (names, stack sizes), [`task_local!`], cancellation, the current green thread's id and name |
//! | [`sync`] | `std::sync`'s `Mutex`, `RwLock`, `Condvar`, `Barrier` and `mpsc` for green threads, and Go's `WaitGroup` |
//! | [`net`], [`os::unix::net`] | TCP, UDP and Unix sockets with std's API |
//! | [`io`] | [`io::copy`] and [`io::copy_bidirectional`], zero-copy between greenrt sockets and from files |
//! | [`fs`] | files on io_uring: buffered, O_DIRECT and uncached |
//! | [`time`] | [`sleep`] and [`sleep_until`] |
//! | [`preempt`] | what preemption does, holding it off ([`preempt::disable`]), its counters |
//! | [`trace`] | recording which green thread ran where, drawn as SVG or exported for Perfetto |
//!
//! # Spawning and joining
//!
//! [`run`] builds a runtime with default settings, runs a closure as its
//! first green thread and returns the closure's value. Inside, [`spawn`]
//! starts a green thread and [`JoinHandle::join`] waits for its result. A
//! panic stays in its green thread and comes back from `join` as
//! `Err(payload)`, as with `std::thread`; the runtime lives on.
//!
//! ```
//! let sum = greenrt::run(|| {
//!     let handles: Vec<_> = (0..10u64).map(|i| greenrt::spawn(move || i * i)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sum, 285);
//! ```
//!
//! [`scope`] is `std::thread::scope` for green threads: they may borrow
//! from the caller's stack, and all are joined before it returns.
//!
//! ```
//! greenrt::run(|| {
//!     let mut words = vec![String::from("green"), String::from("thread")];
//!     greenrt::scope(|s| {
//!         for word in &mut words {
//!             s.spawn(move || word.make_ascii_uppercase());
//!         }
//!     });
//!     assert_eq!(words, ["GREEN", "THREAD"]);
//! });
//! ```
//!
//! [`Builder`] sets the number of workers, the stack size and the
//! preemption quantum; [`Runtime::block_on`] runs a green thread from an OS
//! thread and waits for it, [`Runtime::spawn`] does not wait. Dropping a
//! [`Runtime`] cancels the green threads still running (see
//! [`Cancelled`]). [`macro@main`] and [`macro@test`] run `fn main` or a
//! test as the main green thread of a runtime of its own:
//!
//! ```
//! #[greenrt::main(workers = 2)]
//! fn main() {
//!     assert_eq!(greenrt::spawn(|| 6 * 7).join().unwrap(), 42);
//! }
//! ```
//!
//! [`spawn`], [`yield_now`] and [`sleep`] panic outside a green thread;
//! [`run`] and [`Runtime::block_on`] panic inside one (they would block a
//! worker). A panic on a green thread is reported with the green thread's
//! name and id (`green thread 'name' (g42) panicked at ...`) instead of the
//! worker OS thread that ran it.
//!
//! # Synchronisation
//!
//! [`sync`] has `std::sync`'s types, names and signatures (poisoning
//! included): code moves over by changing an import. Contention parks the
//! green thread, never its worker. Every type also works from plain OS
//! threads and between the two worlds. (std's own `Mutex` or channels
//! work too, but a green thread waiting on them holds its OS thread.)
//!
//! ```
//! use std::sync::Arc;
//! use greenrt::sync::{mpsc, Mutex};
//!
//! greenrt::run(|| {
//!     let total = Arc::new(Mutex::new(0u64));
//!     let (tx, rx) = mpsc::sync_channel::<u64>(8); // bounded: a full channel parks the sender
//!     let consumer = {
//!         let total = Arc::clone(&total);
//!         greenrt::spawn(move || {
//!             for v in rx {
//!                 *total.lock().unwrap() += v;
//!             }
//!         })
//!     };
//!     for i in 0..100 {
//!         let tx = tx.clone();
//!         greenrt::spawn(move || tx.send(i).unwrap());
//!     }
//!     drop(tx); // the channel closes when the last sender is gone
//!     consumer.join().unwrap();
//!     assert_eq!(*total.lock().unwrap(), 4950);
//! });
//! ```
//!
//! # Sockets
//!
//! [`net::TcpListener`], [`net::TcpStream`] and [`net::UdpSocket`] (and the
//! Unix sockets of [`os::unix::net`]) have the names, methods and
//! signatures of their std counterparts, so code written for
//! `impl Read + Write` works unchanged. A call that would block parks the
//! green thread until the socket is ready (one edge-triggered epoll
//! netpoller serves them all). A server is a green thread per connection:
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use greenrt::net::{TcpListener, TcpStream};
//!
//! greenrt::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     // The server: every connection gets a green thread echoing its lines.
//!     greenrt::spawn(move || {
//!         for conn in listener.incoming() {
//!             let conn = conn.unwrap();
//!             greenrt::spawn(move || {
//!                 let mut line = String::new();
//!                 let mut reader = BufReader::new(&conn);
//!                 while reader.read_line(&mut line).unwrap() > 0 {
//!                     (&conn).write_all(line.as_bytes()).unwrap();
//!                     line.clear();
//!                 }
//!             });
//!         }
//!     });
//!     let clients: Vec<_> = (0..3)
//!         .map(|i| {
//!             greenrt::spawn(move || {
//!                 let mut stream = TcpStream::connect(addr).unwrap();
//!                 writeln!(stream, "hello {i}").unwrap();
//!                 let mut reply = String::new();
//!                 BufReader::new(&stream).read_line(&mut reply).unwrap();
//!                 reply
//!             })
//!         })
//!         .collect();
//!     for (i, client) in clients.into_iter().enumerate() {
//!         assert_eq!(client.join().unwrap(), format!("hello {i}\n"));
//!     }
//!     // Returning ends the runtime: the server, parked in accept, is cancelled.
//! });
//! ```
//!
//! Writes never raise SIGPIPE (a closed peer is an error); an expired read
//! or write timeout is `WouldBlock`, as with std on Linux. See [`net`].
//!
//! # Copying: `io::copy`
//!
//! [`io::copy`] and [`io::copy_bidirectional`] (a two-way relay, as in a
//! proxy) splice(2) bulk data between greenrt stream sockets through a
//! pooled pipe and send files to them with sendfile(2), so it never crosses
//! user space; any other reader and writer get a buffered copy. They
//! recognise greenrt's sockets owned or borrowed, and `io::copy` a
//! [`Take`](std::io::Take) of one, which splices at most its limit (a
//! proxy that parsed a head passes the body on so). [`io::stats`] says
//! which path ran.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::Shutdown;
//! use greenrt::net::{TcpListener, TcpStream};
//!
//! greenrt::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = greenrt::spawn(move || {
//!         let (mut conn, _) = listener.accept().unwrap();
//!         let mut back = conn.try_clone().unwrap();
//!         greenrt::io::copy(&mut conn, &mut back).unwrap() // echo until end of stream
//!     });
//!     let mut client = TcpStream::connect(addr).unwrap();
//!     let mut writer = client.try_clone().unwrap();
//!     // Write from a green thread of its own while this one reads the echo.
//!     let sender = greenrt::spawn(move || {
//!         writer.write_all(&vec![7u8; 1 << 20]).unwrap();
//!         writer.shutdown(Shutdown::Write).unwrap();
//!     });
//!     let mut echoed = Vec::new();
//!     client.read_to_end(&mut echoed).unwrap();
//!     sender.join().unwrap();
//!     assert_eq!(server.join().unwrap(), 1 << 20);
//!     assert!(echoed.len() == 1 << 20 && echoed.iter().all(|&b| b == 7));
//! });
//! ```
//!
//! # Preemption
//!
//! A green thread that computes without blocking is preempted once it has
//! held its worker for a quantum ([`preempt::DEFAULT_QUANTUM`], 10 ms;
//! [`Builder::preempt_quantum`]), as in Go: a monitor thread signals its OS
//! thread, and the green thread is parked at the interrupted instruction,
//! every register saved, so the worker runs the others. It needs no
//! cooperation from the code: loops with no call in them are preempted
//! too. Turn it off with [`Builder::preemption`] or `GREENRT_PREEMPT=off`.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let rt = greenrt::Builder::new().workers(1).build().unwrap();
//! rt.block_on(|| {
//!     let before = greenrt::preempt::stats();
//!     let stop = Arc::new(AtomicBool::new(false));
//!     let hog = {
//!         let stop = Arc::clone(&stop);
//!         greenrt::spawn(move || {
//!             let mut spins = 0u64;
//!             while !stop.load(Ordering::Relaxed) {
//!                 spins = spins.wrapping_add(1); // never blocks, never yields
//!             }
//!             spins
//!         })
//!     };
//!     // One worker, and the hog never gives it up: only preemption lets
//!     // this green thread wake up from its sleep.
//!     greenrt::sleep(Duration::from_millis(30));
//!     stop.store(true, Ordering::Relaxed);
//!     hog.join().unwrap();
//!     assert!(greenrt::preempt::stats().since(&before).preemptions >= 1);
//! });
//! ```
//!
//! [`preempt::disable`] returns a guard that defers preemption of the
//! current green thread until it drops, for code that must not be
//! interrupted (blocking calls still switch):
//!
//! ```
//! greenrt::run(|| {
//!     let guard = greenrt::preempt::disable();
//!     // Runs to the end of the guard's life without being preempted.
//!     let checksum = (0..1_000u64).fold(0u64, |a, b| a.rotate_left(5) ^ b);
//!     drop(guard);
//!     assert_ne!(checksum, 0);
//! });
//! ```
//!
//! Only code of the main executable is preempted: a green thread computing
//! inside libc or another shared library, or under a guard, runs on until
//! it leaves it. [`preempt`] has the details, including the
//! [`preempt::NoPreempt`] wrapper for locking global allocators.
//!
//! # Green threads and OS threads
//!
//! A green thread may move to another OS thread at any blocking greenrt
//! call (`sleep`, `join`, a channel or lock that waits, socket and file
//! I/O, `yield_now`); preemption never moves it. So:
//!
//! - `std::thread_local!` is per OS thread: use [`task_local!`] for state
//!   that belongs to the green thread.
//! - Locks keyed on the OS thread must not be held across a blocking
//!   greenrt call. While the green thread is parked, its OS thread runs
//!   other green threads, which such a lock takes for its owner and lets
//!   straight in; and the green thread may come back on another OS thread,
//!   still holding it. std's stdout and stderr locks
//!   (`io::stdout().lock()`, a `ReentrantLock`) are such locks, as are
//!   other reentrant or thread-owned ones (recursive pthread mutexes, a
//!   lock that records `thread::current().id()`). Hold them only over code
//!   that does not block on greenrt, or call
//!   [`task::lock_os_thread`] first: until [`task::unlock_os_thread`], the
//!   green thread keeps its OS thread and no other green thread runs
//!   there. `println!` on its own is fine.
//!   Preemption is no hazard here: a preempted green thread keeps its OS
//!   thread, and nothing else runs on it meanwhile.
//! - A green thread blocked in a system call, or on a std lock, holds its
//!   OS thread; greenrt hands its worker to another OS thread after a short
//!   grace period so the other green threads keep running.
//!
//! # Container-aware workers
//!
//! Unless [`Builder::workers`] or `GREENRT_WORKERS` fixes the count, a
//! runtime makes one worker (P) per CPU of the process's affinity mask and
//! lets min(affinity CPUs, max(2, ⌈quota⌉)) of them run green threads,
//! where the quota is the cgroup CPU bandwidth limit (v2 `cpu.max`, v1
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the lowest along the
//! cgroup's ancestors): Go 1.25's default `GOMAXPROCS`. The quota is
//! re-read every second and the limit follows it (workers over it are
//! parked); [`Runtime::workers`] is the current limit, and
//! [`RuntimeMetrics::num_active_workers`] and
//! [`RuntimeMetrics::cpu_quota`] show it and the quota read.
//!
//! # Environment variables
//!
//! `GREENRT_WORKERS`, `GREENRT_PREEMPT`, `GREENRT_IO_URING`, `GREENRT_UDP_GSO`,
//! `GREENRT_GUARD` and `GREENRT_CELL_CACHE` are checked when a runtime is built: a value the variable
//! does not accept makes `Builder::build` fail with `InvalidInput`, naming
//! the variable and what it accepts. Booleans accept `off`, `0`, `false`,
//! `no` and `on`, `1`, `true`, `yes`, in any case. The two debugging aids
//! never stop a program: a `GREENRT_SCHEDTRACE` that is not a whole number,
//! or a `GREENRT_TRACE` path that cannot be written, is reported on stderr.
//!
//! | variable | values | effect |
//! |---|---|---|
//! | `GREENRT_WORKERS` | an integer from 1 to 4096 (`greenrt::MAX_WORKERS`) | number of workers (Ps) when `Builder::workers` is not called, fixed; default: container-aware, min(affinity CPUs, max(2, ⌈cgroup CPU quota⌉)), re-read every second (see "Container-aware workers") |
//! | `GREENRT_PREEMPT` | boolean | preemption on (default) or off, when `Builder::preemption` is not called |
//! | `GREENRT_IO_URING` | boolean | off: file operations never use io_uring (each is a blocking syscall, the worker handed to another thread meanwhile); on (default): io_uring where the kernel allows |
//! | `GREENRT_GUARD` | `mprotect` or `auto` | how stack guard pages are made: `auto` (default) uses guard regions (`MADV_GUARD_INSTALL`) where the kernel has them, `mprotect` forces one extra mapping per stack |
//! | `GREENRT_CELL_CACHE` | boolean | off: a green thread's memory goes straight back to the allocator when it ends (for valgrind or a quarantining allocator, which then see use of freed cells); on (default): each worker (and each other thread that spawns or ends green threads) keeps freed cells for its next spawns (see "Allocators"). Read at each runtime's build, for the whole process |
//! | `GREENRT_UDP_GSO` | boolean | off: `UdpSocket::send_segments` never uses UDP segmentation offload (sendmmsg(2) instead) and `max_gso_segments()` is 1; on (default): GSO where the kernel has it. Read once, at the first use |
//! | `GREENRT_TRACE` | `path[,path]` (`.json`, `.svg`) | records a trace from the runtime's build to its drop, written to each path on drop |
//! | `GREENRT_SCHEDTRACE` | milliseconds | prints a line of scheduler state to stderr every that many milliseconds (like Go's `schedtrace`) |
//!
//! # Limitations
//!
//! - Linux x86-64 only.
//! - Only code of the main executable is preempted (not libc or other
//!   shared libraries), and each preempted green thread keeps its OS
//!   thread until it runs again: many CPU-bound green threads mean as many
//!   OS threads, mostly parked.
//! - A green thread blocked in a system call or a std lock holds its OS
//!   thread (its worker is handed on after a grace period; not with
//!   preemption off, and not before it returns from one long call the
//!   kernel does not interrupt, such as a big std file read); prefer
//!   [`sync`], [`sleep`] and [`fs`].
//! - With a locking global allocator in the executable, wrap it in
//!   [`preempt::NoPreempt`].
//! - [`io::copy`] and [`io::copy_bidirectional`] recognise greenrt's
//!   sockets by their concrete type (owned, `&`, `&mut`, or in a `Take`);
//!   other wrappers (`BufReader`, `Box<dyn Read>`) get a buffered copy.
//!
//! The README's "Limitations" section has the full list, and
//! docs/DESIGN.md the design.

// Unsafe hygiene, kept by CI (clippy -D warnings): every unsafe operation
// in its own block with a SAFETY comment, and every public item documented.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("greenrt supports Linux on x86-64 only");

mod context;
mod env;
pub mod fs;
pub mod io;
pub mod net;
mod netpoll;
pub mod os;
pub mod preempt;
mod runtime_metrics;
mod scheduler;
mod splice;
mod stack;
pub mod sync;
mod sys;
pub mod task;
pub mod time;
pub mod trace;

pub use greenrt_macros::{main, test};
pub use runtime_metrics::{metrics, RuntimeMetrics};
pub use scheduler::{run, Builder, Runtime, DEFAULT_SHUTDOWN_TIMEOUT, MAX_WORKERS};
pub use stack::DEFAULT_STACK_SIZE;
pub use task::{scope, spawn, yield_now, Cancelled, JoinHandle, Scope, ScopedJoinHandle};
pub use time::{sleep, sleep_until};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
