/*
 * greenrt context switch for x86-64 System V (AT&T syntax, included by
 * src/context/mod.rs through global_asm!).
 *
 * A suspended context is a stack pointer S pointing at this frame:
 *
 *     S+56  return address (where the context resumes)
 *     S+48  rbp
 *     S+40  rbx
 *     S+32  r12
 *     S+24  r13
 *     S+16  r14
 *     S+8   r15
 *     S+0   MXCSR (low 4 bytes) | x87 control word (bytes 4..6)
 *
 * so the caller's CFA is S+64. Only callee-saved state is kept: the
 * switch is an ordinary call, so the compiler has already saved every
 * caller-saved register it still needs.
 */

    .text

/* void greenrt_switch(void **save_sp, void *next_sp)
 *   rdi: where to store the current context's stack pointer
 *   rsi: stack pointer of the context to resume
 */
    .globl  greenrt_switch
    .hidden greenrt_switch
    .type   greenrt_switch,@function
    .p2align 4
greenrt_switch:
    .cfi_startproc
    /* Push the callee-saved GPRs; CFI tracks each slot so a debugger can
     * unwind through a context that is in the middle of switching. */
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
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

    /* Save the floating-point control state (rounding mode, exception
     * masks), which the ABI also makes callee-saved, and keep our values
     * for the comparison below: MXCSR without its six exception flags
     * (bits 0-5, which the ABI leaves caller-saved) in eax, the x87
     * control word in ecx. */
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movl    (%rsp), %eax
    andl    $0xffffffc0, %eax
    movzwl  4(%rsp), %ecx

    /* Publish our stack pointer, then adopt the other context's. The
     * frame layouts are identical, so the CFI above stays valid. */
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp

    /* Restore the other context's floating-point control state, but only
     * where it differs from ours: ldmxcsr and fldcw are microcoded and
     * serialise the floating-point unit (they cost more than the rest of
     * the switch), while green threads almost always share one state. */
    movl    (%rsp), %edx
    andl    $0xffffffc0, %edx
    cmpl    %edx, %eax
    je      1f
    ldmxcsr (%rsp)
1:
    cmpw    4(%rsp), %cx
    je      2f
    fldcw   4(%rsp)
2:
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8

    /* Restore its callee-saved GPRs and return into it. */
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
    .cfi_endproc
    .size   greenrt_switch, .-greenrt_switch

/* First code a new green thread runs, reached by the `ret` of
 * greenrt_switch on a freshly prepared stack (src/context/mod.rs):
 *   rbx: argument for the entry function
 *   r12: entry function, `extern "C" fn(*mut u8) -> !`
 *   rsp: stack top - 16 (16-byte aligned); the word at rsp+8 is the
 *        "parent slot": the address of the cell where the M running this
 *        green thread keeps the scheduler's (g0's) saved stack pointer
 *        (the scheduler rewrites the slot when the green thread moves to
 *        another M; src/scheduler/g.rs, `link_parent`).
 *
 * The CFI describes this frame as a call from the scheduler: the CFA is
 * the parent's saved stack pointer plus the 64-byte switch frame, and the
 * parent's return address and callee-saved registers sit in that frame.
 * gdb and std::backtrace therefore walk from a green thread's frames into
 * the scheduler loop that runs it.
 */
    .globl  greenrt_start
    .hidden greenrt_start
    .type   greenrt_start,@function
    .p2align 4
    nop     /* keeps return-address-minus-one lookups inside this FDE */
greenrt_start:
    .cfi_startproc
    /* DW_CFA_def_cfa_expression: CFA = **(rsp + 8) + 64
     *   0x77 0x08  DW_OP_breg7 (rsp) + 8: the parent slot
     *   0x06       DW_OP_deref: the M's cell
     *   0x06       DW_OP_deref: the scheduler's saved stack pointer
     *   0x23 0x40  DW_OP_plus_uconst 64: above its switch frame */
    .cfi_escape 0x0f, 0x06, 0x77, 0x08, 0x06, 0x06, 0x23, 0x40
    .cfi_offset %rip, -8
    .cfi_offset %rbp, -16
    .cfi_offset %rbx, -24
    .cfi_offset %r12, -32
    .cfi_offset %r13, -40
    .cfi_offset %r14, -48
    .cfi_offset %r15, -56
    /* Call entry(arg). rsp is 16-byte aligned here, as the ABI wants at
     * a call. The entry function never returns: it switches away for the
     * last time when the green thread exits. */
    movq    %rbx, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   greenrt_start, .-greenrt_start

