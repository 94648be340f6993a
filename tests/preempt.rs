//! Signal-based asynchronous preemption (`src/preempt/`,
//! `asm/x86_64/preempt.S`): fairness and latency with CPU-bound green
//! threads, machine state across preemption (general registers, flags, the
//! red zone, SSE/AVX2/AVX-512 registers, MXCSR), std under preemption
//! (stdout's lock, thread-locals, the allocator, std locks), the blocking
//! hand-off, an application's own SIGURG handler, `preempt::disable`,
//! builder validation and backtraces.
//!
//! Timing matters here and the machine may be small and busy: every test
//! holds `SERIAL` (the tests of this file run one at a time, including the
//! children they start), bounds have generous margins, and every body runs
//! under a timeout so that a hang fails instead of blocking the run.

mod common;

use std::arch::x86_64::*;
use std::arch::{asm, global_asm};
use std::cell::RefCell;
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::preemption::{
    add_twos, calibrate, child_ok, exclusive, ms, preemptive, since, spin_tsc, tsc, tsc_ticks,
    tsc_to_ms,
};
use common::{child_tag, serial, spin_for};
use greenrt::preempt::{self, Stats};

// ---------------------------------------------------------------------
// 1. Fairness: the cpu_bound example's property.
// ---------------------------------------------------------------------

/// `threads` green threads on one worker each run `add_twos(iterations)`;
/// returns each one's finish time since the start, and the counters.
fn finish_times(preemption: bool, threads: usize, iterations: u64) -> (Vec<Duration>, Stats) {
    let rt = greenrt::Builder::new()
        .workers(1)
        .preemption(preemption)
        .preempt_quantum(Duration::from_millis(1))
        .build()
        .expect("build the runtime");
    assert_eq!(rt.preempt_quantum().is_some(), preemption);
    let before = preempt::stats();
    let times = rt.block_on(move || {
        let start = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                greenrt::spawn(move || {
                    assert_eq!(add_twos(iterations), 2 * iterations);
                    start.elapsed()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (times, since(before))
}

#[test]
fn cpu_bound_green_threads_share_one_worker_fairly() {
    exclusive(|| {
        const THREADS: usize = 10;
        let iterations = calibrate(Duration::from_millis(70), |n| {
            black_box(add_twos(n));
        });
        let ratio = |t: &[Duration]| {
            let first = t.iter().min().unwrap().as_secs_f64();
            let last = t.iter().max().unwrap().as_secs_f64();
            first / last
        };
        let (on, on_stats) = finish_times(true, THREADS, iterations);
        let (off, off_stats) = finish_times(false, THREADS, iterations);
        let (r_on, r_off) = (ratio(&on), ratio(&off));
        println!(
            "fairness: {iterations} iterations each; preemption on: first/last = {r_on:.2} \
             (last {:.0} ms), {on_stats:?}; off: first/last = {r_off:.2} (last {:.0} ms), \
             {off_stats:?}",
            ms(*on.iter().max().unwrap()),
            ms(*off.iter().max().unwrap()),
        );
        assert!(
            r_on > 0.4,
            "with preemption (1 ms quantum) the first of {THREADS} equal CPU-bound green \
             threads finished at {r_on:.2} of the last one's time (expected them to finish \
             close together); finish times: {on:?}"
        );
        assert!(
            r_off < 0.3,
            "without preemption the first green thread should finish after ~1/{THREADS} of \
             the total, got {r_off:.2}: {off:?}"
        );
        assert!(
            on_stats.preemptions >= 50,
            "~{:.0} ms of CPU-bound work at a 1 ms quantum, but only {} preemptions",
            ms(*on.iter().max().unwrap()),
            on_stats.preemptions
        );
        // Once every thread has started, the next to run is always a
        // preempted one: its M should get the P straight from the preempted
        // one's, with no spare M in between.
        assert!(
            2 * on_stats.direct_handoffs >= on_stats.preemptions,
            "only {} of {} preemptions handed the P directly to the next preempted green \
             thread",
            on_stats.direct_handoffs,
            on_stats.preemptions
        );
        assert_eq!(
            (off_stats.preemptions, off_stats.signals),
            (0, 0),
            "a runtime with preemption(false) preempted or signalled"
        );
    });
}

// ---------------------------------------------------------------------
// 2. Latency: a sleeper keeps running among hogs.
// ---------------------------------------------------------------------

#[test]
fn sleeping_green_thread_keeps_running_among_cpu_hogs() {
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .workers(2)
            .preemption(true)
            .build()
            .unwrap();
        assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
        let before = preempt::stats();
        let cap = tsc_ticks(Duration::from_secs(10));
        let (iterations, worst, first_run, hogs_alive) = rt.block_on(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let finished = Arc::new(AtomicUsize::new(0));
            // Two hogs in pure main-executable code (preempted), two that
            // spin on the clock (mostly in the vDSO: retaken).
            let hogs: Vec<_> = (0..4)
                .map(|i| {
                    let (stop, finished) = (stop.clone(), finished.clone());
                    greenrt::spawn(move || {
                        let end = tsc() + cap;
                        while !stop.load(SeqCst) && tsc() < end {
                            if i % 2 == 0 {
                                black_box(add_twos(black_box(1000)));
                            } else {
                                spin_for(Duration::from_micros(10));
                            }
                        }
                        finished.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            let spawned = Instant::now();
            let probe = {
                let (stop, finished) = (stop.clone(), finished.clone());
                greenrt::spawn(move || {
                    let start = Instant::now();
                    let first_run = start - spawned;
                    let (mut n, mut worst) = (0u32, Duration::ZERO);
                    while start.elapsed() < Duration::from_secs(1) {
                        let t = Instant::now();
                        greenrt::sleep(Duration::from_millis(1));
                        let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                        worst = worst.max(late);
                        n += 1;
                    }
                    let alive = finished.load(SeqCst) == 0;
                    stop.store(true, SeqCst);
                    (n, worst, first_run, alive)
                })
            };
            let r = probe.join().unwrap();
            for h in hogs {
                h.join().unwrap();
            }
            r
        });
        let st = since(before);
        println!(
            "latency among 4 hogs on 2 workers (10 ms quantum): {iterations} sleeps of 1 ms in \
             1 s, worst lateness {:.1} ms, first run after {:.1} ms; {st:?}",
            ms(worst),
            ms(first_run)
        );
        assert!(
            iterations >= 10,
            "the sleeping green thread completed only {iterations} 1 ms sleeps in 1 s among \
             CPU-bound hogs (worst lateness {worst:?})"
        );
        assert!(
            worst < Duration::from_millis(200) && first_run < Duration::from_millis(200),
            "a 1 ms sleep among hogs was {worst:?} late (first run after {first_run:?}); \
             expected a few 10 ms quanta at most"
        );
        assert!(
            hogs_alive,
            "the hogs stopped before the probe's window ended"
        );
        assert!(
            st.preemptions + st.retakes > 0,
            "hogs ran for 1 s on every worker without a preemption or retake: {st:?}"
        );
    });
}

// ---------------------------------------------------------------------
// 3. Interrupted state survives.
// ---------------------------------------------------------------------

// All 15 general registers, RFLAGS and the red zone, in a loop where most
// instructions consume the flags of the previous one and CF is carried
// across the back edge (`dec` keeps CF). A leaf function: 14 qwords of its
// state live below rsp, in the red zone, plus its loop counter and the
// output pointer.
//
// extern "C" fn(iterations: u64 (>0), init: *const [u64; 29],
//               out: *mut [u64; 30])
global_asm!(
    ".pushsection .text.greenrt_test_state_loop,\"ax\",@progbits",
    ".p2align 4",
    ".globl greenrt_test_state_loop",
    ".type greenrt_test_state_loop,@function",
    "greenrt_test_state_loop:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rsp-8], rdx",
    "mov [rsp-16], rdi",
    // Red-zone state: init[15..29] -> [rsp-128 .. rsp-24].
    "mov rax, [rsi+120]",
    "mov [rsp-128], rax",
    "mov rax, [rsi+128]",
    "mov [rsp-120], rax",
    "mov rax, [rsi+136]",
    "mov [rsp-112], rax",
    "mov rax, [rsi+144]",
    "mov [rsp-104], rax",
    "mov rax, [rsi+152]",
    "mov [rsp-96], rax",
    "mov rax, [rsi+160]",
    "mov [rsp-88], rax",
    "mov rax, [rsi+168]",
    "mov [rsp-80], rax",
    "mov rax, [rsi+176]",
    "mov [rsp-72], rax",
    "mov rax, [rsi+184]",
    "mov [rsp-64], rax",
    "mov rax, [rsi+192]",
    "mov [rsp-56], rax",
    "mov rax, [rsi+200]",
    "mov [rsp-48], rax",
    "mov rax, [rsi+208]",
    "mov [rsp-40], rax",
    "mov rax, [rsi+216]",
    "mov [rsp-32], rax",
    "mov rax, [rsi+224]",
    "mov [rsp-24], rax",
    // Registers: init[0..15].
    "mov rax, [rsi]",
    "mov rbx, [rsi+8]",
    "mov rcx, [rsi+16]",
    "mov rdx, [rsi+24]",
    "mov rdi, [rsi+40]",
    "mov rbp, [rsi+48]",
    "mov r8, [rsi+56]",
    "mov r9, [rsi+64]",
    "mov r10, [rsi+72]",
    "mov r11, [rsi+80]",
    "mov r12, [rsi+88]",
    "mov r13, [rsi+96]",
    "mov r14, [rsi+104]",
    "mov r15, [rsi+112]",
    "mov rsi, [rsi+32]",
    "or r9, 1", // the xorshift register must not be zero
    "clc",
    "2:",
    "adc rax, rbx",
    "cmovo rcx, rax",
    "adc rcx, rdx",
    "sbb rdx, rsi",
    "cmovs rsi, rcx",
    "cmovp rdi, rdx",
    "sbb rdi, rbp",
    "rcl rbp, 1",
    "cmovo r8, rbp",
    "adc r8, rbx",
    "setc r10b",
    "add rbx, r10",
    "mov r10, r9",
    "shl r10, 13",
    "xor r9, r10",
    "mov r10, r9",
    "shr r10, 7",
    "xor r9, r10",
    "mov r10, r9",
    "shl r10, 17",
    "xor r9, r10",
    "mov r10, [rsp-16]",
    "and r10d, 7",
    "xor [rsp+8*r10-128], r13",
    "mov r10, [rsp-16]",
    "shr r10, 3",
    "and r10d, 3",
    "add [rsp+8*r10-56], r9",
    "adc r11, r9",
    "adc r12, r11",
    "imul r13, r12",
    "adc r13, r14",
    "cmovc r14, r13",
    "sbb r14, [rsp-64]",
    "mov [rsp-64], r15",
    "adc r15, [rsp-24]",
    "cmovz r10, r15",
    "mov [rsp-24], rax",
    "adc rax, r10",
    "dec qword ptr [rsp-16]",
    "jnz 2b",
    // Store: out[0..15] registers, out[15..29] red zone, out[29] CF.
    "mov [rsp-16], rax",
    "mov rax, [rsp-8]",
    "mov [rax+8], rbx",
    "mov [rax+16], rcx",
    "mov [rax+24], rdx",
    "mov [rax+32], rsi",
    "mov [rax+40], rdi",
    "mov [rax+48], rbp",
    "mov [rax+56], r8",
    "mov [rax+64], r9",
    "mov [rax+72], r10",
    "mov [rax+80], r11",
    "mov [rax+88], r12",
    "mov [rax+96], r13",
    "mov [rax+104], r14",
    "mov [rax+112], r15",
    "setc cl",
    "movzx ecx, cl",
    "mov [rax+232], rcx",
    "mov rcx, [rsp-16]",
    "mov [rax], rcx",
    "mov rcx, [rsp-128]",
    "mov [rax+120], rcx",
    "mov rcx, [rsp-120]",
    "mov [rax+128], rcx",
    "mov rcx, [rsp-112]",
    "mov [rax+136], rcx",
    "mov rcx, [rsp-104]",
    "mov [rax+144], rcx",
    "mov rcx, [rsp-96]",
    "mov [rax+152], rcx",
    "mov rcx, [rsp-88]",
    "mov [rax+160], rcx",
    "mov rcx, [rsp-80]",
    "mov [rax+168], rcx",
    "mov rcx, [rsp-72]",
    "mov [rax+176], rcx",
    "mov rcx, [rsp-64]",
    "mov [rax+184], rcx",
    "mov rcx, [rsp-56]",
    "mov [rax+192], rcx",
    "mov rcx, [rsp-48]",
    "mov [rax+200], rcx",
    "mov rcx, [rsp-40]",
    "mov [rax+208], rcx",
    "mov rcx, [rsp-32]",
    "mov [rax+216], rcx",
    "mov rcx, [rsp-24]",
    "mov [rax+224], rcx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    ".size greenrt_test_state_loop, .-greenrt_test_state_loop",
    ".popsection",
);

extern "C" {
    fn greenrt_test_state_loop(iterations: u64, init: *const [u64; 29], out: *mut [u64; 30]);
}

/// splitmix64: `N` well-mixed words from `seed`.
fn seeds<const N: usize>(seed: u64) -> [u64; N] {
    let mut s = seed;
    std::array::from_fn(|_| {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn gpr_kernel(iterations: u64, seed: u64) -> Vec<u64> {
    let init = seeds::<29>(seed);
    let mut out = [0u64; 30];
    // SAFETY: valid pointers to arrays of the sizes the routine uses; it
    // follows the C ABI (saves the callee-saved registers it uses).
    unsafe { greenrt_test_state_loop(iterations.max(1), &init, &mut out) };
    out.to_vec()
}

/// Comparisons, overflow checks and branches in a tight loop (whatever
/// flag-using code the compiler makes of it).
#[inline(never)]
fn compare_kernel(iterations: u64, seed: u64) -> Vec<u64> {
    let [mut s, mut a, mut b, mut c, mut d] = seeds::<5>(seed);
    s |= 1;
    let (mut lt, mut ov, mut cmp) = (0u64, 0u64, 0u64);
    for _ in 0..iterations {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let (r, o) = a.overflowing_add(s);
        a = r;
        ov += o as u64;
        if (s as i64) < (b as i64) {
            lt += 1;
            b = b.wrapping_sub(s >> 3);
        } else {
            b = b.rotate_left(5) ^ s;
        }
        let (r, o) = c.overflowing_sub(a & 0xFFFF_FFFF);
        c = r.wrapping_add(o as u64 * 0x9E37_79B9);
        cmp += (c > b) as u64 + ((a as u32) < (s as u32)) as u64;
        d = if (a ^ b) & 1 == 0 {
            d.wrapping_mul(3)
        } else {
            d ^ c
        };
    }
    vec![s, a, b, c, d, lt, ov, cmp]
}

const MANT64: i64 = 0x000F_FFFF_FFFF_FFFF;
const ONE64: i64 = 0x3FF0_0000_0000_0000;
const MANT32: i32 = 0x007F_FFFF;
const ONE32: i32 = 0x3F80_0000;

/// xorshift64 on every 64-bit lane of an integer vector.
macro_rules! xorshift {
    ($x:ident, $xor:ident, $shl:ident, $shr:ident) => {
        $x = $xor($x, $shl::<13>($x));
        $x = $xor($x, $shr::<7>($x));
        $x = $xor($x, $shl::<17>($x));
    };
}

/// The 64-bit words of a SIMD value.
fn lanes<T: Copy, const N: usize>(v: T) -> [u64; N] {
    assert_eq!(std::mem::size_of::<T>(), N * 8);
    // SAFETY: same size, and every bit pattern is a valid u64.
    unsafe { std::mem::transmute_copy(&v) }
}

/// Appends the words of each vector to `out`.
macro_rules! words {
    ($out:ident, $n:literal, $($v:expr),+) => {
        $( $out.extend_from_slice(&lanes::<_, $n>($v)); )+
    };
}

/// SSE2: integer xorshift lanes feed f64 and f32 random walks (rounding
/// matters at every step, and no error heals); all of it in xmm registers
/// across the loop.
///
/// # Safety
/// None beyond x86-64 (SSE2 is baseline).
#[inline(never)]
unsafe fn sse_kernel(iterations: u64, seed: u64) -> Vec<u64> {
    let s = seeds::<8>(seed);
    let mut x0: __m128i = std::mem::transmute([s[0] | 1, s[1] | 1]);
    let mut x1: __m128i = std::mem::transmute([s[2] | 1, s[3] | 1]);
    let mut x2: __m128i = std::mem::transmute([s[4] | 1, s[5] | 1]);
    let mut x3: __m128i = std::mem::transmute([s[6] | 1, s[7] | 1]);
    let mant = _mm_set1_epi64x(MANT64);
    let one = _mm_set1_epi64x(ONE64);
    let mant32 = _mm_set1_epi32(MANT32);
    let one32 = _mm_set1_epi32(ONE32);
    let (c, c2, cf) = (_mm_set1_pd(1.5), _mm_set1_pd(2.25), _mm_set1_ps(1.5));
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm_setzero_pd(),
        _mm_setzero_pd(),
        _mm_setzero_pd(),
        _mm_setzero_pd(),
    );
    let (mut f0, mut f1) = (_mm_setzero_ps(), _mm_setzero_ps());
    for _ in 0..iterations {
        xorshift!(x0, _mm_xor_si128, _mm_slli_epi64, _mm_srli_epi64);
        xorshift!(x1, _mm_xor_si128, _mm_slli_epi64, _mm_srli_epi64);
        xorshift!(x2, _mm_xor_si128, _mm_slli_epi64, _mm_srli_epi64);
        xorshift!(x3, _mm_xor_si128, _mm_slli_epi64, _mm_srli_epi64);
        let d0 = _mm_castsi128_pd(_mm_or_si128(_mm_and_si128(x0, mant), one));
        let d1 = _mm_castsi128_pd(_mm_or_si128(_mm_and_si128(x1, mant), one));
        let e0 = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(x2, mant32), one32));
        let e1 = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(x3, mant32), one32));
        a0 = _mm_sub_pd(_mm_add_pd(a0, d0), c);
        a1 = _mm_sub_pd(_mm_add_pd(a1, d1), c);
        a2 = _mm_sub_pd(_mm_add_pd(a2, _mm_mul_pd(d0, d1)), c2);
        a3 = _mm_sub_pd(_mm_add_pd(a3, _mm_div_pd(d1, d0)), c);
        f0 = _mm_sub_ps(_mm_add_ps(f0, e0), cf);
        f1 = _mm_sub_ps(_mm_add_ps(f1, e1), cf);
    }
    let mut out = Vec::new();
    words!(out, 2, x0, x1, x2, x3, a0, a1, a2, a3, f0, f1);
    out
}

/// AVX2: the SSE kernel on 256-bit registers (the upper halves of the
/// ymm registers must survive too).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(never)]
#[target_feature(enable = "avx2")]
unsafe fn avx2_kernel(iterations: u64, seed: u64) -> Vec<u64> {
    let s = seeds::<16>(seed);
    let l = |i: usize| [s[i] | 1, s[i + 1] | 1, s[i + 2] | 1, s[i + 3] | 1];
    let mut x0: __m256i = std::mem::transmute(l(0));
    let mut x1: __m256i = std::mem::transmute(l(4));
    let mut x2: __m256i = std::mem::transmute(l(8));
    let mut x3: __m256i = std::mem::transmute(l(12));
    let mant = _mm256_set1_epi64x(MANT64);
    let one = _mm256_set1_epi64x(ONE64);
    let mant32 = _mm256_set1_epi32(MANT32);
    let one32 = _mm256_set1_epi32(ONE32);
    let (c, c2, cf) = (
        _mm256_set1_pd(1.5),
        _mm256_set1_pd(2.25),
        _mm256_set1_ps(1.5),
    );
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm256_setzero_pd(),
        _mm256_setzero_pd(),
        _mm256_setzero_pd(),
        _mm256_setzero_pd(),
    );
    let (mut f0, mut f1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for _ in 0..iterations {
        xorshift!(x0, _mm256_xor_si256, _mm256_slli_epi64, _mm256_srli_epi64);
        xorshift!(x1, _mm256_xor_si256, _mm256_slli_epi64, _mm256_srli_epi64);
        xorshift!(x2, _mm256_xor_si256, _mm256_slli_epi64, _mm256_srli_epi64);
        xorshift!(x3, _mm256_xor_si256, _mm256_slli_epi64, _mm256_srli_epi64);
        let d0 = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(x0, mant), one));
        let d1 = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(x1, mant), one));
        let e0 = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(x2, mant32), one32));
        let e1 = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(x3, mant32), one32));
        a0 = _mm256_sub_pd(_mm256_add_pd(a0, d0), c);
        a1 = _mm256_sub_pd(_mm256_add_pd(a1, d1), c);
        a2 = _mm256_sub_pd(_mm256_add_pd(a2, _mm256_mul_pd(d0, d1)), c2);
        a3 = _mm256_sub_pd(_mm256_add_pd(a3, _mm256_div_pd(d1, d0)), c);
        f0 = _mm256_sub_ps(_mm256_add_ps(f0, e0), cf);
        f1 = _mm256_sub_ps(_mm256_add_ps(f1, e1), cf);
    }
    let mut out = Vec::new();
    words!(out, 4, x0, x1, x2, x3, a0, a1, a2, a3, f0, f1);
    out
}

// AVX-512F, in assembly (explicit registers, and no dependence on the
// AVX-512 intrinsics' stabilisation): all 32 zmm registers and the opmask
// registers k1-k7 hold state across the loop. zmm0-7: xorshift lanes;
// zmm8: scratch; zmm9-15: doubles in [1, 2) made from them; zmm16-29:
// f64 accumulators (masked adds with k1-k7); zmm30/zmm31: constants (the
// mantissa mask and 1.0). Only called when the CPU has AVX-512F.
//
// extern "C" fn(iterations: u64 (>0), init: *const [u64; 256],
//               out: *mut [u64; 263])
global_asm!(
    ".pushsection .text.greenrt_test_avx512_loop,\"ax\",@progbits",
    ".p2align 4",
    ".globl greenrt_test_avx512_loop",
    ".type greenrt_test_avx512_loop,@function",
    "greenrt_test_avx512_loop:",
    "vmovdqu64 zmm0, [rsi+0]",
    "vmovdqu64 zmm1, [rsi+64]",
    "vmovdqu64 zmm2, [rsi+128]",
    "vmovdqu64 zmm3, [rsi+192]",
    "vmovdqu64 zmm4, [rsi+256]",
    "vmovdqu64 zmm5, [rsi+320]",
    "vmovdqu64 zmm6, [rsi+384]",
    "vmovdqu64 zmm7, [rsi+448]",
    "vmovdqu64 zmm8, [rsi+512]",
    "vmovdqu64 zmm9, [rsi+576]",
    "vmovdqu64 zmm10, [rsi+640]",
    "vmovdqu64 zmm11, [rsi+704]",
    "vmovdqu64 zmm12, [rsi+768]",
    "vmovdqu64 zmm13, [rsi+832]",
    "vmovdqu64 zmm14, [rsi+896]",
    "vmovdqu64 zmm15, [rsi+960]",
    "vmovdqu64 zmm16, [rsi+1024]",
    "vmovdqu64 zmm17, [rsi+1088]",
    "vmovdqu64 zmm18, [rsi+1152]",
    "vmovdqu64 zmm19, [rsi+1216]",
    "vmovdqu64 zmm20, [rsi+1280]",
    "vmovdqu64 zmm21, [rsi+1344]",
    "vmovdqu64 zmm22, [rsi+1408]",
    "vmovdqu64 zmm23, [rsi+1472]",
    "vmovdqu64 zmm24, [rsi+1536]",
    "vmovdqu64 zmm25, [rsi+1600]",
    "vmovdqu64 zmm26, [rsi+1664]",
    "vmovdqu64 zmm27, [rsi+1728]",
    "vmovdqu64 zmm28, [rsi+1792]",
    "vmovdqu64 zmm29, [rsi+1856]",
    "vmovdqu64 zmm30, [rsi+1920]",
    "vmovdqu64 zmm31, [rsi+1984]",
    "vpcmpuq k1, zmm0, zmm1, 1",
    "vpcmpuq k2, zmm2, zmm3, 1",
    "vpcmpuq k3, zmm4, zmm5, 1",
    "vpcmpuq k4, zmm6, zmm7, 1",
    "vpcmpuq k5, zmm1, zmm2, 1",
    "vpcmpuq k6, zmm3, zmm4, 1",
    "vpcmpuq k7, zmm5, zmm6, 1",
    "2:",
    "vpsllq zmm8, zmm0, 13",
    "vpxorq zmm0, zmm0, zmm8",
    "vpsrlq zmm8, zmm0, 7",
    "vpxorq zmm0, zmm0, zmm8",
    "vpsllq zmm8, zmm0, 17",
    "vpxorq zmm0, zmm0, zmm8",
    "vpsllq zmm8, zmm1, 13",
    "vpxorq zmm1, zmm1, zmm8",
    "vpsrlq zmm8, zmm1, 7",
    "vpxorq zmm1, zmm1, zmm8",
    "vpsllq zmm8, zmm1, 17",
    "vpxorq zmm1, zmm1, zmm8",
    "vpsllq zmm8, zmm2, 13",
    "vpxorq zmm2, zmm2, zmm8",
    "vpsrlq zmm8, zmm2, 7",
    "vpxorq zmm2, zmm2, zmm8",
    "vpsllq zmm8, zmm2, 17",
    "vpxorq zmm2, zmm2, zmm8",
    "vpsllq zmm8, zmm3, 13",
    "vpxorq zmm3, zmm3, zmm8",
    "vpsrlq zmm8, zmm3, 7",
    "vpxorq zmm3, zmm3, zmm8",
    "vpsllq zmm8, zmm3, 17",
    "vpxorq zmm3, zmm3, zmm8",
    "vpsllq zmm8, zmm4, 13",
    "vpxorq zmm4, zmm4, zmm8",
    "vpsrlq zmm8, zmm4, 7",
    "vpxorq zmm4, zmm4, zmm8",
    "vpsllq zmm8, zmm4, 17",
    "vpxorq zmm4, zmm4, zmm8",
    "vpsllq zmm8, zmm5, 13",
    "vpxorq zmm5, zmm5, zmm8",
    "vpsrlq zmm8, zmm5, 7",
    "vpxorq zmm5, zmm5, zmm8",
    "vpsllq zmm8, zmm5, 17",
    "vpxorq zmm5, zmm5, zmm8",
    "vpsllq zmm8, zmm6, 13",
    "vpxorq zmm6, zmm6, zmm8",
    "vpsrlq zmm8, zmm6, 7",
    "vpxorq zmm6, zmm6, zmm8",
    "vpsllq zmm8, zmm6, 17",
    "vpxorq zmm6, zmm6, zmm8",
    "vpsllq zmm8, zmm7, 13",
    "vpxorq zmm7, zmm7, zmm8",
    "vpsrlq zmm8, zmm7, 7",
    "vpxorq zmm7, zmm7, zmm8",
    "vpsllq zmm8, zmm7, 17",
    "vpxorq zmm7, zmm7, zmm8",
    "vpandq zmm9, zmm0, zmm30",
    "vporq zmm9, zmm9, zmm31",
    "vpandq zmm10, zmm1, zmm30",
    "vporq zmm10, zmm10, zmm31",
    "vpandq zmm11, zmm2, zmm30",
    "vporq zmm11, zmm11, zmm31",
    "vpandq zmm12, zmm3, zmm30",
    "vporq zmm12, zmm12, zmm31",
    "vpandq zmm13, zmm4, zmm30",
    "vporq zmm13, zmm13, zmm31",
    "vpandq zmm14, zmm5, zmm30",
    "vporq zmm14, zmm14, zmm31",
    "vpandq zmm15, zmm6, zmm30",
    "vporq zmm15, zmm15, zmm31",
    "vaddpd zmm16 {{k1}}, zmm16, zmm9",
    "vaddpd zmm17 {{k2}}, zmm17, zmm10",
    "vaddpd zmm18 {{k3}}, zmm18, zmm11",
    "vaddpd zmm19 {{k4}}, zmm19, zmm12",
    "vaddpd zmm20 {{k5}}, zmm20, zmm13",
    "vaddpd zmm21 {{k6}}, zmm21, zmm14",
    "vaddpd zmm22 {{k7}}, zmm22, zmm15",
    "vsubpd zmm23, zmm23, zmm9",
    "vmulpd zmm24, zmm9, zmm10",
    "vaddpd zmm25, zmm25, zmm24",
    "vsubpd zmm26, zmm26, zmm12",
    "vaddpd zmm27, zmm27, zmm13",
    "vsubpd zmm28, zmm28, zmm14",
    "vaddpd zmm29, zmm29, zmm15",
    "vpcmpuq k1, zmm0, zmm1, 1",
    "kxorw k2, k2, k1",
    "vpcmpuq k3, zmm2, zmm3, 1",
    "kxorw k4, k4, k3",
    "vpcmpuq k5, zmm4, zmm5, 1",
    "kxorw k6, k6, k5",
    "kxorw k7, k7, k2",
    "dec rdi",
    "jnz 2b",
    "vmovdqu64 [rdx+0], zmm0",
    "vmovdqu64 [rdx+64], zmm1",
    "vmovdqu64 [rdx+128], zmm2",
    "vmovdqu64 [rdx+192], zmm3",
    "vmovdqu64 [rdx+256], zmm4",
    "vmovdqu64 [rdx+320], zmm5",
    "vmovdqu64 [rdx+384], zmm6",
    "vmovdqu64 [rdx+448], zmm7",
    "vmovdqu64 [rdx+512], zmm8",
    "vmovdqu64 [rdx+576], zmm9",
    "vmovdqu64 [rdx+640], zmm10",
    "vmovdqu64 [rdx+704], zmm11",
    "vmovdqu64 [rdx+768], zmm12",
    "vmovdqu64 [rdx+832], zmm13",
    "vmovdqu64 [rdx+896], zmm14",
    "vmovdqu64 [rdx+960], zmm15",
    "vmovdqu64 [rdx+1024], zmm16",
    "vmovdqu64 [rdx+1088], zmm17",
    "vmovdqu64 [rdx+1152], zmm18",
    "vmovdqu64 [rdx+1216], zmm19",
    "vmovdqu64 [rdx+1280], zmm20",
    "vmovdqu64 [rdx+1344], zmm21",
    "vmovdqu64 [rdx+1408], zmm22",
    "vmovdqu64 [rdx+1472], zmm23",
    "vmovdqu64 [rdx+1536], zmm24",
    "vmovdqu64 [rdx+1600], zmm25",
    "vmovdqu64 [rdx+1664], zmm26",
    "vmovdqu64 [rdx+1728], zmm27",
    "vmovdqu64 [rdx+1792], zmm28",
    "vmovdqu64 [rdx+1856], zmm29",
    "vmovdqu64 [rdx+1920], zmm30",
    "vmovdqu64 [rdx+1984], zmm31",
    "kmovw eax, k1",
    "mov [rdx+2048], rax",
    "kmovw eax, k2",
    "mov [rdx+2056], rax",
    "kmovw eax, k3",
    "mov [rdx+2064], rax",
    "kmovw eax, k4",
    "mov [rdx+2072], rax",
    "kmovw eax, k5",
    "mov [rdx+2080], rax",
    "kmovw eax, k6",
    "mov [rdx+2088], rax",
    "kmovw eax, k7",
    "mov [rdx+2096], rax",
    "vzeroupper",
    "ret",
    ".size greenrt_test_avx512_loop, .-greenrt_test_avx512_loop",
    ".popsection",
);

extern "C" {
    fn greenrt_test_avx512_loop(iterations: u64, init: *const [u64; 256], out: *mut [u64; 263]);
}

/// # Safety
/// The CPU (and OS) must support AVX-512F.
unsafe fn avx512_kernel(iterations: u64, seed: u64) -> Vec<u64> {
    let s = seeds::<128>(seed);
    let mut init = [0u64; 256];
    for (i, w) in init[..128].iter_mut().enumerate() {
        *w = s[i] | 1;
    }
    init[240..248].fill(MANT64 as u64);
    init[248..256].fill(ONE64 as u64);
    let mut out = [0u64; 263];
    greenrt_test_avx512_loop(iterations.max(1), &init, &mut out);
    out.to_vec()
}

const MXCSR_DEFAULT: u32 = 0x1F80;
/// All exceptions masked, round toward zero.
const MXCSR_TOWARD_ZERO: u32 = 0x7F80;

fn get_mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores MXCSR into a local.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

fn set_mxcsr(v: u32) {
    // SAFETY: a valid MXCSR value (no reserved bits), from a local.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly, preserves_flags)) };
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    Gpr,
    Compare,
    Sse,
    Avx2,
    Avx512,
    /// The SSE kernel under this MXCSR, in two halves with a cooperative
    /// yield between them on a green thread; the result ends with the
    /// MXCSR read back before restoring the default.
    Mxcsr(u32),
}

impl Kernel {
    fn run(self, iterations: u64, seed: u64, green: bool) -> Vec<u64> {
        match self {
            Kernel::Gpr => gpr_kernel(iterations, seed),
            Kernel::Compare => compare_kernel(iterations, seed),
            // SAFETY: SSE2 is baseline; the others are only used when
            // detected (see `kernels`).
            Kernel::Sse => unsafe { sse_kernel(iterations, seed) },
            Kernel::Avx2 => unsafe { avx2_kernel(iterations, seed) },
            Kernel::Avx512 => unsafe { avx512_kernel(iterations, seed) },
            Kernel::Mxcsr(mode) => {
                set_mxcsr(mode);
                // black_box orders the computation after ldmxcsr and before
                // stmxcsr (the compiler assumes the default environment).
                let half = black_box(iterations / 2);
                let mut out = unsafe { sse_kernel(half, seed) };
                black_box(&out);
                if green {
                    greenrt::yield_now();
                }
                let rest = black_box(iterations - half);
                out.extend(unsafe { sse_kernel(rest, seed ^ 1) });
                black_box(&out);
                out.push(get_mxcsr() as u64);
                set_mxcsr(MXCSR_DEFAULT);
                out
            }
        }
    }
}

/// The kernels this CPU can run (AVX2 and AVX-512 when present).
fn kernels() -> Vec<Kernel> {
    let mut ks = vec![Kernel::Gpr, Kernel::Gpr, Kernel::Compare, Kernel::Sse];
    if is_x86_feature_detected!("avx2") {
        ks.push(Kernel::Avx2);
    } else {
        println!("skipping the AVX2 kernel: this CPU has no AVX2");
    }
    if is_x86_feature_detected!("avx512f") {
        ks.push(Kernel::Avx512);
    } else {
        println!("skipping the AVX-512 kernel: this CPU has no AVX-512F");
    }
    ks.push(Kernel::Mxcsr(MXCSR_TOWARD_ZERO));
    ks.push(Kernel::Mxcsr(MXCSR_DEFAULT));
    ks
}

#[test]
fn interrupted_register_and_fpu_state_survives_preemption() {
    exclusive(|| {
        let jobs: Vec<(Kernel, u64, u64)> = kernels()
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let n = calibrate(Duration::from_millis(200), |n| {
                    black_box(k.run(n, 1, false));
                });
                // Both MXCSR jobs use one seed: their results must differ.
                let seed = match k {
                    Kernel::Mxcsr(_) => 99,
                    _ => 1000 + i as u64,
                };
                (k, n, seed)
            })
            .collect();
        // Reference: a plain OS thread, no runtime.
        let reference: Vec<(Vec<u64>, Duration)> = jobs
            .iter()
            .map(|&(k, n, seed)| {
                let t = Instant::now();
                let r = k.run(n, seed, false);
                (r, t.elapsed())
            })
            .collect();
        let rz = jobs
            .iter()
            .position(|j| j.0 == Kernel::Mxcsr(MXCSR_TOWARD_ZERO))
            .unwrap();
        let rn = jobs
            .iter()
            .position(|j| j.0 == Kernel::Mxcsr(MXCSR_DEFAULT))
            .unwrap();
        assert_ne!(
            reference[rz].0[..reference[rz].0.len() - 1],
            reference[rn].0[..reference[rn].0.len() - 1],
            "the rounding mode made no difference: the MXCSR check would prove nothing"
        );
        // The control bits read back (the low 6 bits are sticky exception
        // flags, set by the computation; they are compared too, below).
        assert_eq!(
            reference[rz].0.last().map(|m| m & !0x3F),
            Some(MXCSR_TOWARD_ZERO as u64)
        );

        // All of them interleaved on one worker, 100 µs quantum.
        let rt = preemptive(1, Duration::from_micros(100));
        let before = preempt::stats();
        let jobs2 = jobs.clone();
        let green: Vec<(Vec<u64>, u64, Duration)> = rt.block_on(move || {
            let hs: Vec<_> = jobs2
                .into_iter()
                .map(|(k, n, seed)| {
                    greenrt::spawn(move || {
                        let p0 = preempt::stats().preemptions;
                        let t = Instant::now();
                        let r = k.run(n, seed, true);
                        let el = t.elapsed();
                        (r, preempt::stats().preemptions - p0, el)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        drop(rt);
        for (i, ((k, n, _), (want, alone))) in jobs.iter().zip(&reference).enumerate() {
            let (got, preempted, took) = &green[i];
            println!(
                "state: {k:?} x{n}: alone {:.0} ms, interleaved {:.0} ms, {preempted} \
                 preemptions while it ran",
                ms(*alone),
                ms(*took)
            );
            assert!(
                *preempted > 0,
                "{k:?}: no green thread was preempted while it ran ({took:?}): the check \
                 proves nothing"
            );
            if got != want {
                let diff: Vec<_> = got
                    .iter()
                    .zip(want)
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(j, (a, b))| format!("word {j}: {a:#018x} != {b:#018x}"))
                    .collect();
                panic!(
                    "{k:?}: the result computed under preemption differs from the reference \
                     ({} of {} words): {diff:?}",
                    diff.len(),
                    want.len()
                );
            }
        }
        println!("state: {st:?}");
        assert!(st.preemptions >= jobs.len() as u64, "{st:?}");
    });
}

// ---------------------------------------------------------------------
// 4. std keeps working under preemption.
// ---------------------------------------------------------------------

/// A line's payload: deterministic, with its own checksum.
fn line_payload(g: usize, i: usize) -> (String, u64) {
    let len = 20 + (g * 31 + i * 17) % 120;
    let s: String = (0..len)
        .map(|k| (b'a' + ((g + i + k) % 26) as u8) as char)
        .collect();
    let sum = s
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    (s, sum)
}

#[test]
fn println_from_many_green_threads_under_preemption() {
    const NAME: &str = "println_from_many_green_threads_under_preemption";
    const THREADS: usize = 16;
    if child_tag().as_deref() == Some("println") {
        // libtest has printed "test <name> ... " without a newline.
        println!();
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let counts: Vec<usize> = rt.block_on(|| {
            let hs: Vec<_> = (0..THREADS)
                .map(|g| {
                    greenrt::spawn(move || {
                        let start = Instant::now();
                        let mut i = 0;
                        while start.elapsed() < Duration::from_millis(1200) && i < 3000 {
                            let (payload, sum) = line_payload(g, i);
                            if g % 2 == 0 {
                                println!("LINE {g} {i} {sum} {payload}");
                            } else {
                                // Hold stdout's (reentrant) lock across
                                // several writes and some CPU work, to be
                                // preempted while holding it.
                                let mut out = std::io::stdout().lock();
                                write!(out, "LINE {g} {i} ").unwrap();
                                spin_tsc(Duration::from_micros(50));
                                let mut again = std::io::stdout().lock();
                                write!(again, "{sum} ").unwrap();
                                drop(again);
                                writeln!(out, "{payload}").unwrap();
                            }
                            i += 1;
                        }
                        i
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        std::io::stdout().flush().unwrap();
        println!(
            "CHILD_RESULT {} {} {}",
            counts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
            st.preemptions,
            st.retakes
        );
        println!("CHILD_OK println");
        return;
    }
    let stdout = child_ok(NAME, "println", &[]);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD_RESULT "))
        .expect("the child's result line");
    let mut parts = result.split(' ');
    let counts: Vec<usize> = parts
        .next()
        .unwrap()
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let preemptions: u64 = parts.next().unwrap().parse().unwrap();
    let retakes: u64 = parts.next().unwrap().parse().unwrap();
    let mut next = vec![0usize; THREADS];
    let mut lines = 0;
    for line in stdout
        .lines()
        .filter(|l| l.contains("LINE") && !l.starts_with("test "))
    {
        let bad = || -> ! { panic!("a garbled or interleaved line: {line:?}") };
        let rest = line.strip_prefix("LINE ").unwrap_or_else(|| bad());
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() != 4 {
            bad();
        }
        let (g, i): (usize, usize) = (
            f[0].parse().unwrap_or_else(|_| bad()),
            f[1].parse().unwrap_or_else(|_| bad()),
        );
        let (payload, sum) = line_payload(g, i);
        if f[2] != sum.to_string() || f[3] != payload || i != next[g] {
            bad();
        }
        next[g] += 1;
        lines += 1;
    }
    println!(
        "println: {lines} lines from {THREADS} green threads, {preemptions} preemptions, \
         {retakes} retakes"
    );
    assert_eq!(next, counts, "lines lost or duplicated");
    assert!(
        counts.iter().all(|&c| c >= 10),
        "some green thread printed almost nothing: {counts:?}"
    );
    assert!(preemptions + retakes > 0, "nothing was preempted");
}

thread_local! {
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// One borrow of the thread-local, with work inside it (long enough to be
/// preempted there). Never inlined: a green thread may change OS threads
/// between calls (it yields), and the thread-local's address must be
/// computed anew each time.
#[inline(never)]
fn tls_round(g: u64, round: u64) -> Result<(), String> {
    SCRATCH.with(|cell| {
        let mut v = cell
            .try_borrow_mut()
            .map_err(|_| format!("green thread {g}: thread-local RefCell already borrowed"))?;
        let thread = std::thread::current().id();
        v.clear();
        for k in 0..2000u64 {
            v.push(g << 48 | round << 16 | k);
        }
        spin_tsc(Duration::from_micros(300));
        for (k, &x) in v.iter().enumerate() {
            if x != g << 48 | round << 16 | k as u64 {
                return Err(format!(
                    "green thread {g}: thread-local data changed: {x:#x}"
                ));
            }
        }
        if std::thread::current().id() != thread {
            return Err(format!(
                "green thread {g}: changed OS threads inside a borrow"
            ));
        }
        v.clear();
        Ok(())
    })
}

/// Allocation churn with integrity checks.
#[inline(never)]
fn alloc_round(g: u64, round: u64) -> Result<u64, String> {
    let mut boxes: Vec<Box<[u64]>> = Vec::new();
    let mut strings: Vec<String> = Vec::new();
    for k in 0..64u64 {
        let len = 1 + ((g * 7 + round * 13 + k * 29) % 700) as usize;
        boxes.push((0..len as u64).map(|j| g ^ round ^ k ^ j).collect());
        strings.push(format!("{g}-{round}-{k}-{}", "x".repeat((k % 50) as usize)));
        if k % 3 == 0 {
            boxes.swap_remove(((k * 5) % boxes.len() as u64) as usize);
        }
    }
    let mut sum = 0u64;
    for b in &boxes {
        let k = b[0] ^ g ^ round;
        for (j, &x) in b.iter().enumerate() {
            if x != g ^ round ^ k ^ j as u64 {
                return Err(format!("green thread {g}: heap data changed"));
            }
        }
        sum = sum.wrapping_add(b.iter().sum::<u64>());
    }
    for (k, s) in strings.iter().enumerate() {
        let want = format!("{g}-{round}-{k}-{}", "x".repeat(k % 50));
        if *s != want {
            return Err(format!("green thread {g}: string changed: {s:?}"));
        }
    }
    Ok(sum)
}

#[test]
fn thread_locals_allocator_and_std_mutex_work_under_preemption() {
    exclusive(|| {
        const THREADS: u64 = 12;
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log2 = log.clone();
        let results: Vec<(u64, u64, u64)> = rt.block_on(move || {
            let hs: Vec<_> = (0..THREADS)
                .map(|g| {
                    let log = log2.clone();
                    greenrt::spawn(move || {
                        let start = Instant::now();
                        let (mut tls, mut allocs, mut logged) = (0u64, 0u64, 0u64);
                        let mut round = 0u64;
                        while start.elapsed() < Duration::from_millis(1500) {
                            match round % 3 {
                                0 => {
                                    tls_round(g, round).unwrap();
                                    tls += 1;
                                }
                                1 => {
                                    alloc_round(g, round).unwrap();
                                    allocs += 1;
                                }
                                _ => {
                                    // A std lock held across CPU work: the
                                    // holder is preempted with it, others
                                    // block on it (and are retaken).
                                    let (payload, sum) = line_payload(g as usize, round as usize);
                                    let mut l = log.lock().unwrap();
                                    l.push(format!("{g}:{round}:{sum}:{payload}"));
                                    spin_tsc(Duration::from_micros(100));
                                    drop(l);
                                    logged += 1;
                                }
                            }
                            round += 1;
                            if round % 8 == 0 {
                                greenrt::yield_now();
                            }
                        }
                        (tls, allocs, logged)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = since(before);
        drop(rt);
        let log = std::mem::take(&mut *log.lock().unwrap());
        let mut per = vec![0u64; THREADS as usize];
        let mut last = vec![None::<u64>; THREADS as usize];
        for e in &log {
            let f: Vec<&str> = e.splitn(4, ':').collect();
            let (g, round): (usize, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            let (payload, sum) = line_payload(g, round as usize);
            assert!(
                f[2] == sum.to_string() && f[3] == payload,
                "corrupted log entry {e:?}"
            );
            assert!(
                last[g] < Some(round) || last[g].is_none(),
                "out of order: {e:?}"
            );
            last[g] = Some(round);
            per[g] += 1;
        }
        let total: (u64, u64, u64) = results
            .iter()
            .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
        println!(
            "std under preemption: {} TLS borrows, {} allocation rounds, {} std-mutex \
             entries; {st:?}",
            total.0, total.1, total.2
        );
        for (g, r) in results.iter().enumerate() {
            assert_eq!(r.2, per[g], "green thread {g}: std-mutex entries lost");
            assert!(
                r.0 > 0 && r.1 > 0 && r.2 > 0,
                "green thread {g} starved: {r:?}"
            );
        }
        assert!(st.preemptions > 0, "nothing was preempted: {st:?}");
    });
}

// ---------------------------------------------------------------------
// 5. Blocking hand-off.
// ---------------------------------------------------------------------

/// On one worker, green thread A runs `block` (which blocks its OS thread
/// for ~500 ms); returns how many 1 ms greenrt sleeps green thread B
/// completed entirely while A was blocked, and how long A blocked.
fn progress_while_blocked(block: impl FnOnce() + Send + 'static) -> (u64, Duration, Stats) {
    let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
    let before = preempt::stats();
    let (n, blocked_for) = rt.block_on(move || {
        let blocked = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let a = {
            let (blocked, done) = (blocked.clone(), done.clone());
            greenrt::spawn(move || {
                blocked.store(true, SeqCst);
                let t = Instant::now();
                block();
                let took = t.elapsed();
                blocked.store(false, SeqCst);
                done.store(true, SeqCst);
                took
            })
        };
        let b = greenrt::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !done.load(SeqCst) && start.elapsed() < Duration::from_secs(10) {
                let during = blocked.load(SeqCst);
                greenrt::sleep(Duration::from_millis(1));
                if during && blocked.load(SeqCst) {
                    n += 1;
                }
            }
            n
        });
        (b.join().unwrap(), a.join().unwrap())
    });
    (n, blocked_for, since(before))
}

#[test]
fn green_thread_blocked_in_std_does_not_stop_its_worker() {
    exclusive(|| {
        // std::thread::sleep while holding a std Mutex.
        let (n, took, st) = progress_while_blocked(|| {
            let m = Mutex::new(0);
            let _g = m.lock().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        println!(
            "hand-off, std::thread::sleep: {n} sleeps of 1 ms done while blocked {:.0} ms; \
             {st:?}",
            ms(took)
        );
        assert!(took >= Duration::from_millis(500));
        assert!(
            n >= 25,
            "only {n} 1 ms sleeps completed on the worker while a green thread blocked in \
             std::thread::sleep for {took:?}: its P was not handed off ({st:?})"
        );
        assert!(st.retakes > 0, "no retake counted: {st:?}");

        // Waiting for a std Mutex that an OS thread holds for 500 ms.
        let m = Arc::new(Mutex::new(0u32));
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = {
            let m = m.clone();
            std::thread::spawn(move || {
                let _g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            })
        };
        locked_rx.recv().unwrap();
        let (n, took, st) = progress_while_blocked(move || {
            *m.lock().unwrap() += 1;
        });
        holder.join().unwrap();
        println!(
            "hand-off, std Mutex: {n} sleeps of 1 ms done while blocked {:.0} ms; {st:?}",
            ms(took)
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(
            n >= 15,
            "only {n} 1 ms sleeps completed on the worker while a green thread waited \
             {took:?} for a std Mutex: its P was not handed off ({st:?})"
        );
    });
}

#[test]
fn blocking_syscall_is_not_interrupted_over_and_over() {
    // A green thread blocked in a system call loses its P once (one
    // SIGURG: one EINTR at most). It must not then be signalled every
    // sysmon round while it stays blocked: poll, select, epoll_wait and
    // nanosleep are never restarted (SA_RESTART or not), and code that
    // retries them with its full timeout would never time out.
    exclusive(|| {
        let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
        let before = preempt::stats();
        let (eintr, took) = rt.block_on(|| {
            greenrt::spawn(|| {
                let t = Instant::now();
                let mut eintr = 0;
                loop {
                    let left = 300 - t.elapsed().as_millis() as i64;
                    if left <= 0 {
                        break;
                    }
                    // SAFETY: no descriptors, just the timeout.
                    let r = unsafe { libc::poll(std::ptr::null_mut(), 0, left as libc::c_int) };
                    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                    {
                        eintr += 1;
                    }
                }
                (eintr, t.elapsed())
            })
            .join()
            .unwrap()
        });
        let st = since(before);
        println!(
            "blocked in poll for {:.0} ms: {eintr} EINTRs; {st:?}",
            ms(took)
        );
        assert!(
            eintr <= 3,
            "a green thread blocked in poll(300 ms) was interrupted {eintr} times ({st:?}): \
             sysmon keeps signalling a thread whose P it has retaken while it stays blocked"
        );
    });
}

// ---------------------------------------------------------------------
// 6. An application's SIGURG handler.
// ---------------------------------------------------------------------

static APP_URGS: AtomicUsize = AtomicUsize::new(0);
static APP_BAD: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel (or greenrt, forwarding) passes a valid siginfo.
    if sig == libc::SIGURG && !info.is_null() && unsafe { (*info).si_signo } == libc::SIGURG {
        APP_URGS.fetch_add(1, SeqCst);
    } else {
        APP_BAD.fetch_add(1, SeqCst);
    }
}

/// Sends one SIGURG with `send` and waits (up to 3 s) for the
/// application's handler to see it. Returns false if it never did.
fn deliver(send: impl FnOnce() -> libc::c_int) -> bool {
    let before = APP_URGS.load(SeqCst);
    assert_eq!(send(), 0, "sending SIGURG failed");
    let start = Instant::now();
    while APP_URGS.load(SeqCst) == before {
        if start.elapsed() > Duration::from_secs(3) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

#[test]
fn application_sigurg_handler_still_receives_foreign_sigurgs() {
    const NAME: &str = "application_sigurg_handler_still_receives_foreign_sigurgs";
    if child_tag().as_deref() != Some("sigurg") {
        let out = child_ok(NAME, "sigurg", &[]);
        for line in out.lines().filter(|l| l.starts_with("sigurg")) {
            println!("{line}");
        }
        return;
    }
    println!(); // after libtest's "test <name> ... "
                // SAFETY: installs a handler that only touches atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = app_on_sigurg as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
    // Default quantum: a green thread that runs for less than 10 ms gets
    // no preemption signal, which could coalesce with the application's
    // (two pending standard signals are one; see the busy hogs below).
    let rt = preemptive(1, preempt::DEFAULT_QUANTUM);
    let (bystander_tx, bystander_rx) = std::sync::mpsc::channel::<()>();
    let bystander = std::thread::spawn(move || {
        let _ = bystander_rx.recv();
    });
    let bystander_id = std::os::unix::thread::JoinHandleExt::as_pthread_t(&bystander);
    // A green thread that, each round, publishes its OS thread and spins
    // (running on the worker) until that thread has been signalled, then
    // yields (a new turn: sysmon starts counting again).
    let worker_thread = Arc::new(AtomicU64::new(0));
    let waiter = {
        let worker_thread = worker_thread.clone();
        rt.spawn(move || {
            let end = Instant::now() + Duration::from_secs(30);
            for _ in 0..4 {
                // SAFETY: pthread_self has no preconditions.
                worker_thread.store(unsafe { libc::pthread_self() } as u64, SeqCst);
                while worker_thread.load(SeqCst) != 0 && Instant::now() < end {
                    std::hint::spin_loop();
                }
                greenrt::yield_now();
            }
        })
    };
    let mut sent = 0;
    let mut lost = Vec::new();
    let mut send = |what: &str, f: &dyn Fn() -> libc::c_int| {
        sent += 1;
        if !deliver(f) {
            lost.push(what.to_string());
        }
    };
    for _ in 0..4 {
        // SAFETY (all): plain signal-sending calls on live threads.
        send("kill(getpid())", &|| unsafe {
            libc::kill(libc::getpid(), libc::SIGURG)
        });
        send("pthread_kill(std thread)", &|| unsafe {
            libc::pthread_kill(bystander_id, libc::SIGURG)
        });
        send("raise (this thread)", &|| unsafe {
            libc::raise(libc::SIGURG)
        });
        send("raise (in a green thread)", &|| {
            rt.spawn(|| unsafe { libc::raise(libc::SIGURG) })
                .join()
                .unwrap()
        });
        let t = loop {
            match worker_thread.load(SeqCst) {
                0 => std::thread::sleep(Duration::from_micros(100)),
                t => break t as libc::pthread_t,
            }
        };
        send("pthread_kill(worker running a green thread)", &|| unsafe {
            libc::pthread_kill(t, libc::SIGURG)
        });
        worker_thread.store(0, SeqCst);
    }
    waiter.join().unwrap();
    drop(bystander_tx);
    bystander.join().unwrap();
    let received = APP_URGS.load(SeqCst);
    println!(
        "sigurg: sent {sent}, the application's handler received {received} (bad {}); lost: \
         {lost:?}",
        APP_BAD.load(SeqCst)
    );
    assert!(
        lost.is_empty(),
        "SIGURGs sent by the application never reached its handler: {lost:?}"
    );
    assert_eq!(received, sent, "the application's handler ran too often");
    assert_eq!(
        APP_BAD.load(SeqCst),
        0,
        "the handler got a bad signal or siginfo"
    );
    drop(rt);

    // Preemption still works with the application's handler installed:
    // two hogs on one worker take turns. Meanwhile SIGURGs sent to their
    // threads still reach the application, except that one sent while a
    // preemption signal is pending for the same thread merges with it in
    // the kernel (standard signals do not queue): greenrt's handler then
    // sees only its own. At a 1 ms quantum that happens now and then.
    let rt = preemptive(1, Duration::from_millis(1));
    let before = preempt::stats();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let hogs: Vec<_> = (0..2)
        .map(|i| {
            let (stop, threads) = (stop.clone(), threads.clone());
            rt.spawn(move || {
                // A green thread that never blocks stays on its OS thread.
                // SAFETY: pthread_self has no preconditions.
                threads[i].store(unsafe { libc::pthread_self() } as u64, SeqCst);
                let t0 = tsc();
                let end = t0 + tsc_ticks(Duration::from_secs(20));
                while !stop.load(SeqCst) && tsc() < end {
                    black_box(add_twos(black_box(1000)));
                }
                (t0, tsc())
            })
        })
        .collect();
    let start = Instant::now();
    while threads.iter().any(|t| t.load(SeqCst) == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the second hog never started: the first one was not preempted, or the second \
             (queued globally: spawned from outside) starved"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut busy_sent = 0;
    let mut busy_lost = 0;
    for _ in 0..4 {
        for t in threads.iter() {
            let t = t.load(SeqCst) as libc::pthread_t;
            busy_sent += 1;
            // SAFETY: a live worker thread.
            if !deliver(|| unsafe { libc::pthread_kill(t, libc::SIGURG) }) {
                busy_lost += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, SeqCst);
    let spans: Vec<(u64, u64)> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    let st = since(before);
    println!(
        "sigurg (busy workers, 1 ms quantum): sent {busy_sent} to the hogs' threads, {busy_lost} \
         merged with a preemption signal; {st:?}"
    );
    assert!(
        busy_lost < busy_sent,
        "no SIGURG sent to a busy worker reached the application's handler"
    );
    assert!(
        st.preemptions > 0 && spans[1].0 < spans[0].1 && spans[0].0 < spans[1].1,
        "preemption stopped working with an application handler installed: two hogs on one \
         worker did not take turns ({spans:?}), {st:?}"
    );
    drop(rt);
    println!("CHILD_OK sigurg");
}

// ---------------------------------------------------------------------
// 7. preempt::disable.
// ---------------------------------------------------------------------

/// On one worker with a 1 ms quantum: a recorder green thread runs (pure
/// main-executable code, timing itself with the TSC) while another spins
/// for 50 ms, under `preempt::disable()` if `guard`. Returns the
/// recorder's running time inside that window (TSC ticks), before it and
/// after it, and the window's length.
fn recorder_inside_window(guard: bool) -> (u64, u64, u64, u64) {
    let rt = preemptive(1, Duration::from_millis(1));
    let gap = tsc_ticks(Duration::from_micros(20));
    let cap = tsc_ticks(Duration::from_secs(10));
    rt.block_on(move || {
        let started = Arc::new(AtomicBool::new(false));
        let window_done = Arc::new(AtomicBool::new(false));
        let recorder = {
            let (started, window_done) = (started.clone(), window_done.clone());
            greenrt::spawn(move || {
                // Running segments: a gap of more than 20 µs between two
                // readings means the recorder was not running.
                let mut segments = Vec::with_capacity(100_000);
                let t0 = tsc();
                let (mut seg_start, mut last) = (t0, t0);
                let mut after = None;
                started.store(true, SeqCst);
                loop {
                    // The flag before the time: a preemption between the
                    // two must not make a stale time count as "after".
                    let done = window_done.load(SeqCst);
                    let t = tsc();
                    if t.saturating_sub(last) > gap && segments.len() < 100_000 {
                        segments.push((seg_start, last));
                        seg_start = t;
                    }
                    last = t;
                    if after.is_none() && done {
                        after = Some(t);
                    }
                    if after.is_some_and(|a| t.saturating_sub(a) > gap * 500)
                        || t.saturating_sub(t0) > cap
                    {
                        break;
                    }
                }
                segments.push((seg_start, last));
                segments
            })
        };
        while !started.load(SeqCst) {
            greenrt::yield_now();
        }
        let spinner = greenrt::spawn(move || {
            let outer = guard.then(preempt::disable);
            let t0 = tsc();
            spin_for(Duration::from_millis(25));
            // Nested guards: dropping the inner one keeps the outer one.
            let inner = guard.then(preempt::disable);
            spin_for(Duration::from_millis(5));
            drop(inner);
            spin_for(Duration::from_millis(20));
            let t1 = tsc();
            drop(outer);
            window_done.store(true, SeqCst);
            (t0, t1)
        });
        let (t0, t1) = spinner.join().unwrap();
        let segments = recorder.join().unwrap();
        let (mut inside, mut before, mut after) = (0, 0, 0);
        for (s, e) in segments {
            inside += e.min(t1).saturating_sub(s.max(t0));
            before += e.min(t0).saturating_sub(s);
            after += e.saturating_sub(s.max(t1));
        }
        (inside, before, after, t1 - t0)
    })
}

#[test]
fn preempt_disable_defers_preemption() {
    exclusive(|| {
        // Outside green threads the guard does nothing (and must not crash).
        drop(preempt::disable());
        let (inside, before, after, window) = recorder_inside_window(true);
        let (c_inside, _, _, c_window) = recorder_inside_window(false);
        println!(
            "disable: window {:.1} ms, recorder ran {:.3} ms inside it ({:.1} ms before, {:.1} \
             ms after); without the guard it ran {:.1} ms of {:.1} ms",
            tsc_to_ms(window),
            tsc_to_ms(inside),
            tsc_to_ms(before),
            tsc_to_ms(after),
            tsc_to_ms(c_inside),
            tsc_to_ms(c_window)
        );
        assert!(tsc_to_ms(window) >= 50.0);
        assert_eq!(
            inside,
            0,
            "another green thread of the (single) worker ran {:.3} ms inside a 50 ms \
             preempt::disable() section",
            tsc_to_ms(inside)
        );
        assert!(
            before > 0 && after > 0,
            "the recorder should run before and after the window"
        );
        assert!(
            tsc_to_ms(c_inside) > 5.0,
            "control: without the guard the recorder should run inside the window (1 ms \
             quantum), it ran {:.3} ms",
            tsc_to_ms(c_inside)
        );
    });
}

// ---------------------------------------------------------------------
// 8. Builder validation.
// ---------------------------------------------------------------------

#[test]
fn builder_validates_quantum_and_honours_greenrt_preempt() {
    const NAME: &str = "builder_validates_quantum_and_honours_greenrt_preempt";
    match child_tag().as_deref() {
        Some("env_off") => {
            assert_eq!(std::env::var("GREENRT_PREEMPT").as_deref(), Ok("off"));
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert_eq!(rt.preempt_quantum(), None, "GREENRT_PREEMPT=off ignored");
            // Functionally off: two hogs on one worker run one after the
            // other, and nothing is signalled.
            let before = preempt::stats();
            let (a, b) = rt.block_on(|| {
                let h = |_| {
                    greenrt::spawn(|| {
                        let t0 = tsc();
                        spin_tsc(Duration::from_millis(30));
                        (t0, tsc())
                    })
                };
                let (x, y) = (h(0), h(1));
                (x.join().unwrap(), y.join().unwrap())
            });
            assert!(a.1 <= b.0 || b.1 <= a.0, "hogs interleaved: {a:?} {b:?}");
            assert_eq!(since(before), Stats::default());
            // An explicit setting wins over the variable.
            let rt = greenrt::Builder::new()
                .workers(1)
                .preemption(true)
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
            println!("CHILD_OK env_off");
        }
        Some("env_default") => {
            assert!(std::env::var("GREENRT_PREEMPT").is_err());
            let rt = greenrt::Builder::new().workers(1).build().unwrap();
            assert_eq!(rt.preempt_quantum(), Some(preempt::DEFAULT_QUANTUM));
            assert_eq!(preempt::DEFAULT_QUANTUM, Duration::from_millis(10));
            let rt = greenrt::Builder::new()
                .workers(1)
                .preempt_quantum(Duration::from_millis(3))
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), Some(Duration::from_millis(3)));
            println!("CHILD_OK env_default");
        }
        Some(other) => panic!("unknown child tag {other}"),
        None => {
            let _serial = serial();
            assert_eq!(preempt::MIN_QUANTUM, Duration::from_micros(100));
            for q in [0, 1, 50, 99] {
                let err = greenrt::Builder::new()
                    .workers(1)
                    .preempt_quantum(Duration::from_micros(q))
                    .build()
                    .expect_err("a quantum below 100 µs must be refused");
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::InvalidInput,
                    "{q} µs: {err}"
                );
            }
            let rt = preemptive(1, Duration::from_micros(100));
            assert_eq!(rt.block_on(|| 7), 7);
            drop(rt);
            let rt = greenrt::Builder::new()
                .workers(1)
                .preemption(false)
                .preempt_quantum(Duration::from_millis(1))
                .build()
                .unwrap();
            assert_eq!(rt.preempt_quantum(), None);
            drop(rt);
            drop(_serial);
            child_ok(NAME, "env_off", &[("GREENRT_PREEMPT", Some("off"))]);
            child_ok(NAME, "env_default", &[("GREENRT_PREEMPT", None)]);
        }
    }
}

// ---------------------------------------------------------------------
// 9. Backtraces after preemption.
// ---------------------------------------------------------------------

/// Recurses `depth` frames, then spins until this green thread has been
/// off its worker at least `times` times (the TSC jumps), stops the
/// competing hog (`stop`) and captures a backtrace.
#[inline(never)]
fn deep_preempted_backtrace(depth: u32, times: u32, stop: &AtomicBool) -> (String, u32) {
    if depth > 0 {
        let (bt, n) = deep_preempted_backtrace(depth - 1, times, stop);
        return (black_box(bt), black_box(n));
    }
    let gap = tsc_ticks(Duration::from_micros(300));
    let end = tsc() + tsc_ticks(Duration::from_secs(5));
    let (mut last, mut gaps) = (tsc(), 0);
    while gaps < times && last < end {
        let t = tsc();
        if t.saturating_sub(last) > gap {
            gaps += 1;
        }
        last = t;
    }
    // Symbolizing takes a while: without competition.
    stop.store(true, SeqCst);
    (std::backtrace::Backtrace::force_capture().to_string(), gaps)
}

#[test]
fn backtrace_of_a_preempted_green_thread_is_whole() {
    exclusive(|| {
        let rt = preemptive(1, Duration::from_millis(1));
        let before = preempt::stats();
        let (bt, gaps) = rt.block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let stop = stop.clone();
                greenrt::spawn(move || {
                    let end = tsc() + tsc_ticks(Duration::from_secs(10));
                    while !stop.load(SeqCst) && tsc() < end {
                        black_box(add_twos(black_box(1000)));
                    }
                })
            };
            let r = greenrt::spawn(move || deep_preempted_backtrace(12, 3, &stop))
                .join()
                .unwrap();
            other.join().unwrap();
            r
        });
        let st = since(before);
        let frames = bt.matches("deep_preempted_backtrace").count();
        println!("backtrace: {frames} recursion frames after {gaps} preemption gaps; {st:?}");
        assert!(
            gaps >= 3 && st.preemptions >= 3,
            "not preempted: {gaps} gaps, {st:?}"
        );
        assert!(
            frames >= 13,
            "recursion frames missing ({frames} of 13):\n{bt}"
        );
        let own = "backtrace_of_a_preempted_green_thread_is_whole";
        let at = bt
            .find(own)
            .unwrap_or_else(|| panic!("the backtrace misses the test's own frame:\n{bt}"));
        assert!(
            bt[at..]
                .lines()
                .any(|l| l.contains("greenrt::scheduler") && !l.contains("g_entry")),
            "the backtrace stops before the scheduler's frames:\n{bt}"
        );
    });
}

// ---------------------------------------------------------------------
// More: greenrt's own locks, the workers bound, shutdown.
// ---------------------------------------------------------------------

#[test]
fn greenrt_mutex_excludes_under_preemption() {
    exclusive(|| {
        let rt = preemptive(2, Duration::from_micros(100));
        let before = preempt::stats();
        let m = Arc::new(greenrt::sync::Mutex::new((0u64, 0u64)));
        let m2 = m.clone();
        let (tx, rx) = greenrt::sync::mpsc::channel::<u64>();
        let sum = rt.block_on(move || {
            let hs: Vec<_> = (0..8u64)
                .map(|g| {
                    let (m, tx) = (m2.clone(), tx.clone());
                    greenrt::spawn(move || {
                        for i in 0..1000 {
                            let mut v = m.lock().unwrap();
                            let seen = v.0;
                            spin_tsc(Duration::from_micros(20));
                            v.0 = seen + 1;
                            v.1 += 1;
                            drop(v);
                            tx.send(g * 1000 + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let sum: u64 = rx.iter().sum();
            for h in hs {
                h.join().unwrap();
            }
            sum
        });
        let st = since(before);
        let v = *m.lock().unwrap();
        println!("greenrt Mutex: {v:?}, {st:?}");
        assert_eq!(v, (8000, 8000), "lost updates under preemption");
        assert_eq!(sum, (0..8000u64).sum::<u64>());
        assert!(st.preemptions > 0, "{st:?}");
    });
}

#[derive(Clone, Copy)]
enum Spin {
    /// TSC-only steps: main-executable code, always preemptible.
    Tsc,
    /// `spin_for` steps: mostly in the vDSO's clock_gettime.
    Clock,
    /// 20 ms in std::thread::sleep first (sysmon retakes the P: the
    /// blocking hand-off), then TSC-only steps.
    BlockedFirst,
}

/// `threads` green threads on ONE worker spin for `run` in short steps
/// and watch for each other: returns how many times one of them saw
/// another run while it ran itself, and the counters.
///
/// Each reads the TSC every few hundred nanoseconds and, after each step,
/// swaps its id into a shared word and stamps the time. Seeing another's
/// id with that one's stamp strictly between my previous stamp and now,
/// while my own readings never paused for more than 3 µs in between
/// (nothing can preempt a thread and run another one that fast), proves
/// that both ran at the same time.
fn simultaneous_runs(spin: Spin, quantum: Duration, threads: u64, run: Duration) -> (u64, Stats) {
    let rt = preemptive(1, quantum);
    let before = preempt::stats();
    let tight = tsc_ticks(Duration::from_micros(3));
    let step = tsc_ticks(Duration::from_micros(5));
    let len = tsc_ticks(run);
    let both = rt.block_on(move || {
        let last = Arc::new(AtomicU64::new(0));
        let stamps: Arc<Vec<AtomicU64>> =
            Arc::new((0..=threads).map(|_| AtomicU64::new(0)).collect());
        let hs: Vec<_> = (1..=threads)
            .map(|me| {
                let (last, stamps) = (last.clone(), stamps.clone());
                greenrt::spawn(move || {
                    if let Spin::BlockedFirst = spin {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let end = tsc() + len;
                    let mut prev = tsc();
                    let mut both = 0u64;
                    loop {
                        let start = tsc();
                        let mut t = start;
                        let mut max_gap = start.saturating_sub(prev);
                        while t.saturating_sub(start) < step {
                            if let Spin::Clock = spin {
                                black_box(Instant::now());
                            }
                            let n = tsc();
                            max_gap = max_gap.max(n.saturating_sub(t));
                            t = n;
                        }
                        let seen = last.swap(me, SeqCst);
                        let now = tsc();
                        stamps[me as usize].store(now, SeqCst);
                        max_gap = max_gap.max(now.saturating_sub(t));
                        if now >= end {
                            break;
                        }
                        if seen != me && seen != 0 && max_gap < tight {
                            let other = stamps[seen as usize].load(SeqCst);
                            if other > prev && other < now {
                                both += 1;
                            }
                        }
                        prev = now;
                    }
                    both
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    (both, since(before))
}

#[test]
fn preemptible_green_threads_are_never_retaken() {
    // Code that is always preemptible (main executable, no blocking) must
    // only ever be preempted: a retake leaves the green thread running on
    // without a P, beside the worker's other green threads.
    exclusive(|| {
        let (both, st) = simultaneous_runs(
            Spin::Tsc,
            Duration::from_micros(100),
            3,
            Duration::from_millis(1500),
        );
        println!("pure spinners, 1 worker, 100 µs quantum: ran together {both} times; {st:?}");
        assert!(st.preemptions > 100, "{st:?}");
        assert_eq!(
            (st.retakes, both),
            (0, 0),
            "always-preemptible green threads were retaken ({} times) and then ran at the same \
             time on a single worker ({both} times): {st:?}",
            st.retakes
        );
    });
}

#[test]
fn one_worker_never_runs_two_clock_spinning_green_threads_at_once() {
    exclusive(|| {
        // Spinning on the clock spends much of its time in the vDSO, where
        // the handler cannot preempt. Such a green thread must still be
        // preempted (when a signal lands in its own code), not have its P
        // retaken and then run on without one.
        let (both, st) = simultaneous_runs(
            Spin::Clock,
            Duration::from_millis(1),
            2,
            Duration::from_millis(800),
        );
        println!("clock spinners, 1 worker, 1 ms quantum: ran together {both} times; {st:?}");
        assert!(
            st.preemptions >= 100,
            "two CPU-bound green threads on one worker for 800 ms at a 1 ms quantum, but \
             only {} preemptions: they escaped the scheduler ({st:?})",
            st.preemptions
        );
        assert_eq!(
            both, 0,
            "two green threads spinning on Instant::now ran at the same time on a single \
             worker ({both} times): a retaken green thread keeps running without a P, no \
             longer preempted ({st:?})"
        );
    });
}

#[test]
fn green_thread_back_from_a_blocking_hand_off_is_preempted_again() {
    exclusive(|| {
        // Each blocks in std::thread::sleep first: sysmon hands the P to
        // another M. Back from it, a green thread computes without a P
        // until sysmon catches it (a request every quantum/5) and queues
        // it for one: a short overlap is unavoidable (greenrt cannot hook
        // the return from a std call), but it must end promptly — a
        // retaken green thread must not stay unsupervised.
        let (both, st) = simultaneous_runs(
            Spin::BlockedFirst,
            Duration::from_millis(1),
            2,
            Duration::from_millis(500),
        );
        // Each overlapping 5 µs step is seen by both green threads.
        let overlap = Duration::from_micros(5) * both as u32 / 2;
        println!(
            "blocked first, then spinning, 1 worker: ran together {both} times (~{:.1} ms of \
             500 ms); {st:?}",
            ms(overlap)
        );
        assert!(st.retakes > 0, "no blocking hand-off happened: {st:?}");
        // Two CPU-bound green threads on one worker for 500 ms at a 1 ms
        // quantum: the worker can only share it by preempting them.
        assert!(
            st.preemptions >= 50,
            "after a blocking hand-off the green threads were no longer preempted: {st:?}"
        );
        assert!(
            overlap < Duration::from_millis(25),
            "after a blocking hand-off two green threads ran at the same time on a single \
             worker for ~{overlap:?} of 500 ms ({both} overlapping steps): a green thread \
             whose P was retaken keeps running without one ({st:?})"
        );
    });
}

#[test]
fn global_queue_is_not_starved_by_preempted_hogs() {
    // A green thread spawned from outside the runtime goes to the global
    // queue; it must run within a few quanta even while every worker runs
    // a CPU-bound green thread that keeps being preempted.
    exclusive(|| {
        for workers in [1, 2] {
            let rt = preemptive(workers, Duration::from_millis(1));
            let stop = Arc::new(AtomicBool::new(false));
            let hogs: Vec<_> = (0..workers)
                .map(|_| {
                    let stop = stop.clone();
                    rt.spawn(move || {
                        let end = tsc() + tsc_ticks(Duration::from_secs(2));
                        while !stop.load(SeqCst) && tsc() < end {
                            black_box(add_twos(black_box(1000)));
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let before = preempt::stats();
            let t = Instant::now();
            let stop2 = stop.clone();
            rt.spawn(move || stop2.store(true, SeqCst)).join().unwrap();
            let took = t.elapsed();
            let st = since(before);
            for h in hogs {
                h.join().unwrap();
            }
            println!(
                "global queue, {workers} worker(s) with hogs: a green thread spawned from outside \
                 ran after {:.1} ms; {st:?}",
                ms(took)
            );
            assert!(
                took < Duration::from_millis(500),
                "{workers} worker(s): a green thread spawned from outside the runtime waited \
                 {took:?} while preempted hogs ran ({st:?}): preempted green threads are always \
                 resumed before the global queue is looked at"
            );
        }
    });
}

/// The scheduling policy of thread `tid` of this process (field 41 of
/// /proc/self/task/<tid>/stat: 0 SCHED_OTHER, 1 SCHED_FIFO, ...).
fn thread_policy(tid: libc::pid_t) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after "(comm)" start at field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(41 - 3)?.parse().ok()
}

fn thread_named(name: &str) -> Option<libc::pid_t> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
        let e = e.ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| e.file_name().to_str()?.parse().ok())?
    })
}

#[test]
fn green_threads_never_run_at_sysmons_scheduling_class() {
    // sysmon raises itself (SCHED_FIFO when allowed) and starts the spare
    // Ms that preempted green threads' Ps go to; threads inherit their
    // creator's policy, so every M must drop it before running green code.
    exclusive(|| {
        let rt = greenrt::Builder::new()
            .thread_name("pt-class")
            .workers(2)
            .preempt_quantum(Duration::from_millis(1))
            .build()
            .unwrap();
        let before = preempt::stats();
        let seen: Vec<(u32, u64)> = rt.block_on(|| {
            let hogs: Vec<_> = (0..6)
                .map(|_| {
                    greenrt::spawn(|| {
                        let mut seen = Vec::new();
                        let end = tsc() + tsc_ticks(Duration::from_millis(300));
                        while tsc() < end {
                            black_box(add_twos(black_box(20_000)));
                            // SAFETY: gettid has no preconditions.
                            let tid = unsafe { libc::gettid() };
                            let _no_preempt = preempt::disable();
                            if let Some(policy) = thread_policy(tid) {
                                seen.push((policy, tid as u64));
                            }
                        }
                        seen
                    })
                })
                .collect();
            hogs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let sysmon = thread_named("pt-class-sysmon").and_then(thread_policy);
        let st = since(before);
        let tids: std::collections::HashSet<u64> = seen.iter().map(|s| s.1).collect();
        println!(
            "sysmon policy {sysmon:?}; green threads observed on {} OS threads, policies {:?}; \
             {st:?}",
            tids.len(),
            seen.iter()
                .map(|s| s.0)
                .collect::<std::collections::BTreeSet<_>>()
        );
        assert!(st.preemptions > 10, "too few preemptions to test: {st:?}");
        assert!(
            seen.iter()
                .all(|&(policy, _)| policy == libc::SCHED_OTHER as u32),
            "a green thread ran at a real-time policy inherited from sysmon"
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                sysmon,
                Some(libc::SCHED_FIFO as u32),
                "running as root, sysmon should have raised itself to SCHED_FIFO"
            );
        }
    });
}
