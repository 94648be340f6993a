//! The SIMD kernels: SSE2 and AVX2 in intrinsics, AVX-512F (with the
//! opmask registers) in assembly.

use std::arch::global_asm;
use std::arch::x86_64::*;

use super::seeds;

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
pub(super) unsafe fn sse_kernel(iterations: u64, seed: u64) -> Vec<u64> {
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
pub(super) unsafe fn avx2_kernel(iterations: u64, seed: u64) -> Vec<u64> {
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
pub(super) unsafe fn avx512_kernel(iterations: u64, seed: u64) -> Vec<u64> {
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
