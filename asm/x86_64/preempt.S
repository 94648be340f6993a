/*
 * greenrt async-preemption trampoline (x86-64 System V, AT&T syntax,
 * included by src/preempt/ through global_asm!).
 *
 * The SIGURG handler makes the interrupted green thread look as if it had
 * called this function: it leaves the 128-byte red zone below the
 * interrupted rsp (R) untouched, stores the interrupted rip at R-136 and
 * resumes the thread here with rsp = R-136. We save everything the
 * interrupted code could be using, call greenrt_preempt_park (Rust), then
 * restore it all and return to the interrupted instruction with rsp = R
 * through `ret $128`, which pops rip and then skips the red zone.
 *
 * Frame, with E = R - 136 (the rsp we are entered with):
 *   E+0      interrupted rip
 *   E-8      rflags
 *   E-16 ..  rax rbx rcx rdx rsi rdi rbp r8 .. r15  (15 registers)
 *   E-128    lowest GPR slot (r15); rbx keeps this address while the
 *            stack below is realigned for the XSAVE area.
 * CFA = E + 136 = R, so unwinders see the interrupted frame as the caller,
 * with its rip at CFA-136; `.cfi_signal_frame` tells them that rip is an
 * interrupted instruction, not a return address (no "minus one" lookup).
 */

    .text
    .globl  greenrt_preempt_trampoline
    .hidden greenrt_preempt_trampoline
    .type   greenrt_preempt_trampoline,@function
    .p2align 4
    nop     /* a lookup at (start - 1) still lands in this FDE */
greenrt_preempt_trampoline:
    .cfi_startproc
    .cfi_signal_frame
    .cfi_def_cfa %rsp, 136
    .cfi_offset %rip, -136

    /* Save flags and every general-purpose register. */
    pushfq
    .cfi_adjust_cfa_offset 8
    pushq   %rax
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %rcx
    .cfi_adjust_cfa_offset 8
    pushq   %rdx
    .cfi_adjust_cfa_offset 8
    pushq   %rsi
    .cfi_adjust_cfa_offset 8
    pushq   %rdi
    .cfi_adjust_cfa_offset 8
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %r8
    .cfi_adjust_cfa_offset 8
    pushq   %r9
    .cfi_adjust_cfa_offset 8
    pushq   %r10
    .cfi_adjust_cfa_offset 8
    pushq   %r11
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0

    /* Keep the GPR frame's address in rbx (callee-saved, already saved)
     * and describe the CFA from it: rsp is about to be realigned. */
    movq    %rsp, %rbx
    .cfi_def_cfa_register %rbx

    /* Carve a 64-byte aligned XSAVE area of greenrt_xsave_size bytes and
     * zero its 64-byte header, which XRSTOR requires to be well formed. */
    subq    greenrt_xsave_size(%rip), %rsp
    andq    $-64, %rsp
    xorl    %eax, %eax
    movq    %rax, 512(%rsp)
    movq    %rax, 520(%rsp)
    movq    %rax, 528(%rsp)
    movq    %rax, 536(%rsp)
    movq    %rax, 544(%rsp)
    movq    %rax, 552(%rsp)
    movq    %rax, 560(%rsp)
    movq    %rax, 568(%rsp)

    /* Save the full extended state: x87, SSE (with MXCSR), AVX, AVX-512
     * and whatever else XCR0 enables (edx:eax = all components). */
    movl    $-1, %eax
    movl    $-1, %edx
    xsave   (%rsp)

    /* Enter the runtime. rsp is 64-byte aligned, so 16-byte aligned at
     * the call as the ABI requires. Returns when the green thread is
     * scheduled again, on this same OS thread. */
    cld
    callq   greenrt_preempt_park

    /* Restore the extended state, then the GPRs and flags. */
    movl    $-1, %eax
    movl    $-1, %edx
    xrstor  (%rsp)
    movq    %rbx, %rsp
    .cfi_def_cfa_register %rsp
    popq    %r15
    .cfi_adjust_cfa_offset -8
    popq    %r14
    .cfi_adjust_cfa_offset -8
    popq    %r13
    .cfi_adjust_cfa_offset -8
    popq    %r12
    .cfi_adjust_cfa_offset -8
    popq    %r11
    .cfi_adjust_cfa_offset -8
    popq    %r10
    .cfi_adjust_cfa_offset -8
    popq    %r9
    .cfi_adjust_cfa_offset -8
    popq    %r8
    .cfi_adjust_cfa_offset -8
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    popq    %rdi
    .cfi_adjust_cfa_offset -8
    popq    %rsi
    .cfi_adjust_cfa_offset -8
    popq    %rdx
    .cfi_adjust_cfa_offset -8
    popq    %rcx
    .cfi_adjust_cfa_offset -8
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    popq    %rax
    .cfi_adjust_cfa_offset -8
    popfq
    .cfi_adjust_cfa_offset -8

    /* Back to the interrupted instruction; skip the red zone so rsp is
     * exactly the interrupted rsp. */
    ret     $128
    .cfi_endproc
    .size   greenrt_preempt_trampoline, .-greenrt_preempt_trampoline

/* End of the trampoline, so the handler can tell it is already inside. */
    .globl  greenrt_preempt_trampoline_end
    .hidden greenrt_preempt_trampoline_end
greenrt_preempt_trampoline_end:
    nop
