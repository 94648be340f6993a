//! The general-register kernels: all 15 general registers, RFLAGS and
//! the red zone in an assembly loop, and compiled flag-using code.

use std::arch::global_asm;

use super::seeds;

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

pub(super) fn gpr_kernel(iterations: u64, seed: u64) -> Vec<u64> {
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
pub(super) fn compare_kernel(iterations: u64, seed: u64) -> Vec<u64> {
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
