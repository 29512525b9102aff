//! Baseline tier: plain NEON (every ARMv8-A core: Cortex-A53/A57/A72, Raspberry Pi 3/4).
//!
//! Without a dot-product instruction, int8 products are formed 8 at a time into int16 lanes:
//! `smull` (k group g) then `smlal` (group g+1) leaves each int16 lane a sum of two products,
//! `|sum| <= 2 * 127 * 127 = 32258` for the kernels' [-127, 127] contract (the same bound the
//! AVX2 kernel relies on), then `sadalp` adds adjacent int16 pairs into int32 accumulators.
//! The A bytes of one row and group are replicated across a register (`dup` of one 32-bit lane
//! of the row's 16-byte A step), so a stored 16-byte weight slice (4 columns x 4 k) is used as
//! it is.
//!
//! Micro tile: 2 rows x 16 columns = 16 int32 accumulators (each holds, per column, the sums of
//! k mod 4 in {0,1} and {2,3}; one `addp` per 4 columns at the end gives the totals).

use core::arch::aarch64::*;

use super::{OutTile, Tier, PANEL};

pub(crate) struct Neon;

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

/// Lane `L` (one k group's 4 bytes) of each row's A register, replicated (`dup v.4s, v.s[L]`).
#[target_feature(enable = "neon")]
#[inline]
fn dup_lane<const L: i32, const R: usize>(a: &[int8x16_t; R]) -> [int8x16_t; R] {
    core::array::from_fn(|r| vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(a[r]))))
}

/// R rows x 16 columns over `kg` groups. A: `[kg/4][R][16]`; W: P16K4 groups of one panel.
///
/// # Safety
/// `a` holds `ceil(kg/4) * R * 16` bytes, `w` `kg * 64`; `t` in bounds with R rows.
#[target_feature(enable = "neon")]
unsafe fn micro<const R: usize>(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
    let mut acc = [[vdupq_n_s32(0); 8]; R];
    let (mut ap, mut wp) = (a.cast::<i8>(), w.cast::<i8>());
    // SAFETY (all loads): one A step (16 bytes per row = 4 groups) and the W groups below kg,
    // inside the sizes promised by the caller; the pointers advance by what was read.
    for _ in 0..kg / 4 {
        let av: [int8x16_t; R] = core::array::from_fn(|r| unsafe { vld1q_s8(ap.add(r * 16)) });
        unsafe {
            pair::<R>(&mut acc, &dup_lane::<0, R>(&av), Some(&dup_lane::<1, R>(&av)), vld1q_s8_x4(wp), vld1q_s8_x4(wp.add(64)));
            pair::<R>(&mut acc, &dup_lane::<2, R>(&av), Some(&dup_lane::<3, R>(&av)), vld1q_s8_x4(wp.add(128)), vld1q_s8_x4(wp.add(192)));
            ap = ap.add(R * 16);
            wp = wp.add(256);
        }
    }
    let tail = kg % 4;
    if tail > 0 {
        let av: [int8x16_t; R] = core::array::from_fn(|r| unsafe { vld1q_s8(ap.add(r * 16)) });
        // SAFETY: groups below kg only (tail = 1..3 of them).
        unsafe {
            let w0 = vld1q_s8_x4(wp);
            if tail == 1 {
                pair::<R>(&mut acc, &dup_lane::<0, R>(&av), None, w0, w0);
            } else {
                pair::<R>(&mut acc, &dup_lane::<0, R>(&av), Some(&dup_lane::<1, R>(&av)), w0, vld1q_s8_x4(wp.add(64)));
                if tail == 3 {
                    let w2 = vld1q_s8_x4(wp.add(128));
                    pair::<R>(&mut acc, &dup_lane::<2, R>(&av), None, w2, w2);
                }
            }
        }
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
/// `Kernel::gemm_i8_in`.
pub(crate) fn gemm(p: &super::GemmArgs<'_>, out: &mut [i32], scratch: &mut alloc::vec::Vec<u8>) {
    // SAFETY: the Neon tier needs no feature beyond the aarch64 baseline; the bounds were
    // checked by the caller and are asserted again in the driver.
    unsafe { super::gemm::<Neon>(p, out, scratch) }
}
