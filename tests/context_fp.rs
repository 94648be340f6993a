//! The floating-point control state (MXCSR's rounding mode and masks, the
//! x87 control word) is callee-saved in the x86-64 ABI: each green thread
//! keeps its own across switches, whatever the others on its worker set.

use std::arch::asm;

const MXCSR_DEFAULT: u32 = 0x1F80;
/// Round toward zero (bits 13-14 = 11), all exceptions masked.
const MXCSR_TOWARD_ZERO: u32 = 0x7F80;
/// Exception flags (bits 0-5): caller-saved, so not compared.
const MXCSR_FLAGS: u32 = 0x3F;
const FPCW_DEFAULT: u16 = 0x037F;
/// Round toward zero in the x87 control word (bits 10-11 = 11).
const FPCW_TOWARD_ZERO: u16 = 0x0F7F;

fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores MXCSR into a local we own.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v & !MXCSR_FLAGS
}

fn set_mxcsr(v: u32) {
    // SAFETY: loads a valid MXCSR value (reserved bits clear) from a local.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags)) };
}

fn fpcw() -> u16 {
    let mut v = 0u16;
    // SAFETY: stores the x87 control word into a local we own.
    unsafe { asm!("fnstcw [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

fn set_fpcw(v: u16) {
    // SAFETY: loads a valid x87 control word from a local.
    unsafe { asm!("fldcw [{}]", in(reg) &v, options(nostack, preserves_flags)) };
}

/// Two green threads on one worker, one with round-toward-zero in both
/// units and one with the defaults, switch back and forth (by yielding
/// and over a rendezvous channel); each sees only its own state. A
/// switch that skips restoring an unchanged state must still restore a
/// changed one, in both directions.
#[test]
fn each_green_thread_keeps_its_own_fp_control_state_across_switches() {
    let rt = greenrt::Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = greenrt::sync::mpsc::sync_channel::<u32>(0);
        let changed = greenrt::spawn(move || {
            set_mxcsr(MXCSR_TOWARD_ZERO);
            set_fpcw(FPCW_TOWARD_ZERO);
            for i in 0..1000 {
                if i % 2 == 0 {
                    greenrt::yield_now();
                } else {
                    tx.send(i).unwrap();
                }
                assert_eq!(mxcsr(), MXCSR_TOWARD_ZERO, "round {i}");
                assert_eq!(fpcw(), FPCW_TOWARD_ZERO, "round {i}");
            }
            // Leave the worker's thread as we found it.
            set_mxcsr(MXCSR_DEFAULT);
            set_fpcw(FPCW_DEFAULT);
        });
        let plain = greenrt::spawn(move || {
            let mut rounds = 0;
            while let Ok(i) = rx.recv() {
                assert_eq!(mxcsr(), MXCSR_DEFAULT, "message {i}");
                assert_eq!(fpcw(), FPCW_DEFAULT, "message {i}");
                greenrt::yield_now();
                assert_eq!(mxcsr(), MXCSR_DEFAULT, "message {i}");
                rounds += 1;
            }
            rounds
        });
        changed.join().unwrap();
        assert_eq!(plain.join().unwrap(), 500);
    });
}
