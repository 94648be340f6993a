//! The kernels of `interrupted_register_and_fpu_state_survives_preemption`:
//! deterministic loops that keep their state in registers across many
//! iterations (general registers, RFLAGS and the red zone; xmm, ymm, zmm
//! and opmask registers; MXCSR), so a preemption that loses or corrupts
//! any of it changes the result.

use std::arch::x86_64::*;
use std::arch::{asm, global_asm};
use std::hint::black_box;

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

pub const MXCSR_DEFAULT: u32 = 0x1F80;
/// All exceptions masked, round toward zero.
pub const MXCSR_TOWARD_ZERO: u32 = 0x7F80;

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
pub enum Kernel {
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
    pub fn run(self, iterations: u64, seed: u64, green: bool) -> Vec<u64> {
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
pub fn kernels() -> Vec<Kernel> {
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
