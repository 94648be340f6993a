//! The kernels of `interrupted_register_and_fpu_state_survives_preemption`:
//! deterministic loops that keep their state in registers across many
//! iterations (general registers, RFLAGS and the red zone; xmm, ymm, zmm
//! and opmask registers; MXCSR), so a preemption that loses or corrupts
//! any of it changes the result.

use std::arch::asm;
use std::hint::black_box;

#[path = "gpr_kernels.rs"]
mod gpr;
#[path = "simd_kernels.rs"]
mod simd;
use gpr::{compare_kernel, gpr_kernel};
use simd::{avx2_kernel, avx512_kernel, sse_kernel};

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
