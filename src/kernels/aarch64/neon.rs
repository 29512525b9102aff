//! Baseline tier: plain NEON (every ARMv8-A core: Cortex-A53/A57/A72, Raspberry Pi 3/4).
//!
//! Without a dot-product instruction, int8 products are formed 8 at a time into int16 lanes:
//! `smull` (k group g) then `smlal` (group g+1) leaves each int16 lane a sum of two products,
//! `|sum| <= 2 * 127 * 127 = 32258` for the kernels' [-127, 127] contract (the same bound the
//! AVX2 kernel relies on), then `sadalp` adds adjacent int16 pairs into int32 accumulators.
//! The A bytes of one row and group are replicated across a register (`ld1r`), so a stored
//! 16-byte weight slice (4 columns x 4 k) is used as it is.
//!
//! Micro tile: 2 rows x 16 columns = 16 int32 accumulators (each holds, per column, the sums of
//! k mod 4 in {0,1} and {2,3}; one `addp` per 4 columns at the end gives the totals).

use core::arch::aarch64::*;

use super::{OutTile, Tier, PANEL};

pub(crate) struct Neon;

/// Row r's 4 A bytes of one group, replicated to 16 bytes.
///
/// # Safety
/// `p` points to 4 readable bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn dup4(p: *const i8) -> int8x16_t {
    // SAFETY: 4 readable bytes; `vld1q_dup_s32` has no alignment requirement beyond 1 for
    // NEON element loads on aarch64 (unaligned accesses are architecturally allowed).
    unsafe { vreinterpretq_s8_s32(vld1q_dup_s32(p.cast())) }
}

/// Two groups (or one, with `w1 = None`) for R rows into the accumulators.
#[target_feature(enable = "neon")]
#[inline]
fn pair<const R: usize>(acc: &mut [[int32x4_t; 8]; R], a0: &[int8x16_t; R], a1: Option<&[int8x16_t; R]>, w0: int8x16x4_t, w1: int8x16x4_t) {
    let w0 = [w0.0, w0.1, w0.2, w0.3];
    let w1 = [w1.0, w1.1, w1.2, w1.3];
    for r in 0..R {
        for c in 0..4 {
            let mut lo = vmull_s8(vget_low_s8(w0[c]), vget_low_s8(a0[r]));
            let mut hi = vmull_high_s8(w0[c], a0[r]);
            if let Some(a1) = a1 {
                lo = vmlal_s8(lo, vget_low_s8(w1[c]), vget_low_s8(a1[r]));
                hi = vmlal_high_s8(hi, w1[c], a1[r]);
            }
            acc[r][2 * c] = vpadalq_s16(acc[r][2 * c], lo);
            acc[r][2 * c + 1] = vpadalq_s16(acc[r][2 * c + 1], hi);
        }
    }
}

/// R rows x 16 columns over `kg` groups. A: `[kg/4][R][16]`; W: P16K4 groups of one panel.
///
/// # Safety
/// `a` holds `ceil(kg/4) * R * 16` bytes, `w` `kg * 64`; `t` in bounds with R rows.
#[target_feature(enable = "neon")]
unsafe fn micro<const R: usize>(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
    let mut acc = [[vdupq_n_s32(0); 8]; R];
    let (a, w) = (a.cast::<i8>(), w.cast::<i8>());
    // Group g of row r sits at A step g/4, lane g%4.
    // SAFETY (all loads): g < kg, so W group g and A step g/4 are inside the caller's sizes.
    let ag = |g: usize| -> [int8x16_t; R] { core::array::from_fn(|r| unsafe { dup4(a.add(((g / 4) * R + r) * 16 + (g % 4) * 4)) }) };
    let wg = |g: usize| unsafe { vld1q_s8_x4(w.add(g * 64)) };
    let mut g = 0;
    while g + 2 <= kg {
        pair::<R>(&mut acc, &ag(g), Some(&ag(g + 1)), wg(g), wg(g + 1));
        g += 2;
    }
    if g < kg {
        let w0 = wg(g);
        pair::<R>(&mut acc, &ag(g), None, w0, w0);
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut row = [0i32; PANEL];
        for c in 0..4 {
            // Lanes of acc[2c]: (col 4c: k%4<2, k%4>=2), (col 4c+1: ...); acc[2c+1]: 4c+2, 4c+3.
            let v = vpaddq_s32(acc[2 * c], acc[2 * c + 1]);
            // SAFETY: 4 lanes into row[4c..4c+4].
            unsafe { vst1q_s32(row.as_mut_ptr().add(4 * c), v) };
        }
        // SAFETY: r < R = t.rows; the caller promises the tile is in bounds.
        unsafe { t.put_row(r, &row) };
    }
}

impl Tier for Neon {
    const MR: usize = 2;
    const TAILS: &'static [usize] = &[1];
    const KB: usize = 16;
    const ROW_ALIGN: usize = 1;
    fn w_scratch(_kg: usize) -> usize {
        0
    }
    unsafe fn prep_w(w: *const u8, _kg: usize, _buf: &mut [u8]) -> *const u8 {
        w
    }
    unsafe fn micro(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
        // SAFETY: forwarded from the caller; `rows` is one of MR/TAILS.
        unsafe {
            match t.rows {
                2 => micro::<2>(a, w, kg, t),
                1 => micro::<1>(a, w, kg, t),
                r => unreachable!("row tile {r}"),
            }
        }
    }
}

/// NEON is part of every aarch64 CPU, so this is safe to call; `p` and `out` as checked by
/// `Kernel::gemm_i8_with_scratch`.
pub(crate) fn gemm(p: &super::GemmArgs<'_>, out: &mut [i32], scratch: &mut alloc::vec::Vec<u8>) {
    // SAFETY: the Neon tier needs no feature beyond the aarch64 baseline; the bounds were
    // checked by the caller and are asserted again in the driver.
    unsafe { super::gemm::<Neon>(p, out, scratch) }
}
