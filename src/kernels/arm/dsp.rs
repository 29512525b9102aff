//! Arm DSP-extension kernel: `SXTB16` sign-extends bytes 0 and 2 (or, rotated, 1 and 3) of a
//! word into two halfwords, `SMLAD` adds both halfword products to an accumulator, so one word
//! of 4 int8 values costs 2 extends and 2 multiply-accumulates per operand pair. CMSIS-NN's s8
//! kernels use the same pair of instructions.
//!
//! Per row of A, the k-groups are sign-extended once into `scratch` (two words per group);
//! then each block of 4 output columns reads one 16-byte strip of every 64-byte weight group
//! (4 columns x 4 k) and keeps 4 accumulators in registers: per 16 MACs, 2 loads of A, 4 loads
//! of W, 8 extends and 8 `SMLAD`s. Exact i32 arithmetic (wrapping like the scalar reference's
//! `wrapping_add`), so bit-identical to it.

use alloc::vec::Vec;
use core::arch::asm;

use super::super::{GemmArgs, GROUP_BYTES, KGROUP, PANEL};

/// Output columns per accumulator block.
const COLUMNS: usize = 4;

/// Halfwords (bytes 0 and 2 of `x`, sign-extended).
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r;
    // SAFETY: register-only instruction of the DSP extension, which this module is built for.
    unsafe { asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags)) };
    r
}

/// Halfwords (bytes 1 and 3 of `x`, sign-extended).
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r;
    // SAFETY: as `sxtb16`.
    unsafe { asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags)) };
    r
}

/// `acc + x.lo * y.lo + x.hi * y.hi` (signed halfwords; the 32-bit sum wraps, setting only the
/// sticky Q flag, which nothing here reads).
#[inline(always)]
fn smlad(x: u32, y: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: as `sxtb16`; writes only `r` (and APSR.Q, hence no `preserves_flags`).
    unsafe { asm!("smlad {r}, {x}, {y}, {acc}", r = lateout(reg) r, x = in(reg) x, y = in(reg) y, acc = in(reg) acc, options(pure, nomem, nostack)) };
    r
}

pub(crate) fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let groups = p.k4;
    let panel_bytes = groups * GROUP_BYTES;
    // The packed weights of columns [n_begin, ceil16(n_end)) exist (the caller checked
    // packed_len), so every 4-column strip of every group read below lies inside `p.w`.
    let panels = (p.n_begin / PANEL)..p.n_end.div_ceil(PANEL);
    assert!(panels.end * panel_bytes <= p.w.len());
    // Sign-extended A row: (even, odd) halfword pairs per k-group, as words.
    if scratch.len() < groups * 8 + 4 {
        scratch.resize(groups * 8 + 4, 0);
    }
    let offset = scratch.as_ptr().align_offset(4).min(4);
    let pairs: &mut [u32] = bytemuck::cast_slice_mut(&mut scratch[offset..offset + groups * 8]);
    for i in 0..p.m {
        let row = &p.a[i * p.a_stride..i * p.a_stride + p.k];
        for (g, pair) in pairs.chunks_exact_mut(2).enumerate() {
            let mut word = [0u8; KGROUP];
            let bytes = &row[g * KGROUP..(g * KGROUP + KGROUP).min(p.k)];
            word[..bytes.len()].copy_from_slice(bytemuck::cast_slice(bytes));
            let word = u32::from_le_bytes(word);
            pair[0] = sxtb16(word);
            pair[1] = sxtb16_ror8(word);
        }
        let out_row = &mut out[i * p.out_stride..];
        for j0 in (p.n_begin..p.n_end).step_by(COLUMNS) {
            let strip = (j0 / PANEL) * panel_bytes + (j0 % PANEL) * KGROUP;
            // Four named accumulators, unrolled by hand: firmware builds at opt-level "s",
            // which would keep an array of them in memory.
            let (mut acc0, mut acc1, mut acc2, mut acc3) = (0i32, 0i32, 0i32, 0i32);
            let w = p.w[strip..].as_ptr();
            for (g, pair) in pairs.chunks_exact(2).enumerate() {
                let (even, odd) = (pair[0], pair[1]);
                // SAFETY: the 16 bytes at `strip + g * 64` are columns j0..j0 + 4 of group g:
                // `strip + g * 64 + 16 <= (j0 / 16 + 1) * panel_bytes` (j0 % 16 <= 12,
                // g < groups), inside `p.w` by the assert above.
                let [w0, w1, w2, w3] = unsafe { w.add(g * GROUP_BYTES).cast::<[u32; COLUMNS]>().read_unaligned() };
                acc0 = smlad(odd, sxtb16_ror8(w0), smlad(even, sxtb16(w0), acc0));
                acc1 = smlad(odd, sxtb16_ror8(w1), smlad(even, sxtb16(w1), acc1));
                acc2 = smlad(odd, sxtb16_ror8(w2), smlad(even, sxtb16(w2), acc2));
                acc3 = smlad(odd, sxtb16_ror8(w3), smlad(even, sxtb16(w3), acc3));
            }
            let acc = [acc0, acc1, acc2, acc3];
            let cols = (p.n_end - j0).min(COLUMNS);
            out_row[j0..j0 + cols].copy_from_slice(&acc[..cols]);
        }
    }
}
