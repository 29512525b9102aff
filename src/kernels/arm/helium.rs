//! Arm Helium (M-profile Vector Extension, Cortex-M55/M85) kernel: `VMLADAVA.S8` multiplies 16
//! int8 pairs and adds all 16 products to a scalar accumulator in one instruction.
//!
//! In the P16K4 layout a column's 16 consecutive k are 4 words 64 bytes apart, which one
//! gather load (`VLDRW.U32 Q, [Qaddr, #256]!`, the address vector stepping itself) fetches;
//! the row's 16 A bytes are one contiguous `VLDRB.U8`. Per 32 MACs (2 columns): 1 A load,
//! 2 gathers, 2 `VMLADAVA` and the loop's count and branch. Rust has no `mve` target feature to test, so
//! the kernel is built when the firmware says so: `-C target-feature=+mve,+dsp --cfg
//! q8bert_helium` (docs/EMBEDDED.md).
//!
//! The k tail that does not fill 16 bytes of A is summed in scalar code; weights that are not
//! 4-byte aligned (gathers of words need it) take the DSP kernel instead.

use alloc::vec::Vec;
use core::arch::asm;

use super::super::{GemmArgs, GROUP_BYTES, KGROUP, PANEL};

pub(crate) fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    if p.w.as_ptr() as usize % 4 != 0 {
        return super::dsp::gemm(p, out, scratch);
    }
    let panel_bytes = p.k4 * GROUP_BYTES;
    let chunks = p.k / 16; // full 16-byte chunks of A (= 4 k-groups of W)
    let panels = (p.n_begin / PANEL)..p.n_end.div_ceil(PANEL);
    assert!(panels.end * panel_bytes <= p.w.len());
    for i in 0..p.m {
        let row = &p.a[i * p.a_stride..i * p.a_stride + p.k];
        let out_row = &mut out[i * p.out_stride..];
        for j0 in (p.n_begin..p.n_end).step_by(2) {
            let strip = (j0 / PANEL) * panel_bytes + (j0 % PANEL) * KGROUP;
            let (mut acc0, mut acc1) = (0i32, 0i32);
            if chunks > 0 {
                // The address vector starts one step (256 bytes) early: the gather pre-increments.
                let start = p.w[strip..].as_ptr().wrapping_sub(4 * GROUP_BYTES);
                // SAFETY: reads 16 bytes of `row` per chunk (chunks * 16 <= k), and per chunk two
                // gathers of words at strip + 256 c + {0, 64, 128, 192} (+ 4): columns j0, j0 + 1
                // (j0 even, so j0 % 16 + 1 < 16) of groups 4c..4c + 4 < k4, inside the panel of j0,
                // which is inside `p.w` by the assert above; all word-aligned (p.w is, and panel,
                // group and column offsets are multiples of 4). Writes r0/r2 (the accumulators,
                // even registers as VMLADAV needs), r1/r3/r12, q0-q3 and flags.
                unsafe {
                    asm!(
                        "vidup.u32 q1, r12, #1",   // 0, 1, 2, 3
                        "vshl.i32 q1, q1, #6",     // 0, 64, 128, 192
                        "vadd.i32 q1, q1, r4",    // column j0, one step early
                        "movs r12, #4",
                        "vadd.i32 q2, q1, r12",    // column j0 + 1
                        "2:",
                        "vldrb.u8 q0, [r1], #16",
                        "vldrw.u32 q3, [q1, #256]!",
                        "vmladava.s8 r0, q0, q3",
                        "vldrw.u32 q3, [q2, #256]!",
                        "vmladava.s8 r2, q0, q3",
                        "subs r3, #1",
                        "bne 2b",
                        in("r4") start,
                        inout("r1") row.as_ptr() => _,
                        inout("r3") chunks => _,
                        inout("r12") 0u32 => _,
                        inout("r0") acc0,
                        inout("r2") acc1,
                        // q0-q3 (Rust's `qreg` operands need NEON; MVE shares the registers).
                        out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                        out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                        options(readonly, nostack),
                    )
                };
            }
            // The k tail (< 16 values), straight from the packed layout.
            for (k, &a) in row.iter().enumerate().skip(chunks * 16) {
                let at = strip + (k / KGROUP) * GROUP_BYTES + k % KGROUP;
                acc0 = acc0.wrapping_add(a as i32 * p.w[at] as i8 as i32);
                acc1 = acc1.wrapping_add(a as i32 * p.w[at + KGROUP] as i8 as i32);
            }
            let acc = [acc0, acc1];
            let cols = (p.n_end - j0).min(2);
            out_row[j0..j0 + cols].copy_from_slice(&acc[..cols]);
        }
    }
}
