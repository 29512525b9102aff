//! Dot-product tier (FEAT_DotProd, ARMv8.2+: Cortex-A55/A76/A78, Neoverse N1, Apple M1+).
//!
//! `sdot vd.4s, vn.16b, vm.4b[l]` adds, to each int32 lane i, the dot product of bytes
//! 4i..4i+3 of `vn` with bytes 4l..4l+3 of `vm`. One 16-byte slice of a P16K4 group is
//! 4 columns x 4 k, so the stored weights are `sdot`'s first operand as they are, and 16 bytes
//! of a packed A row (4 k groups) are its second operand for four steps, one lane each.
//!
//! Micro tile: 4 rows x 16 columns = 16 accumulators; per 4 k groups it loads 4 x 64 bytes of
//! W and 4 x 16 bytes of A and issues 64 `sdot`s (see docs/ARM64.md for the disassembly).

use core::arch::aarch64::*;
use core::arch::asm;

use super::{OutTile, Tier, PANEL};

pub(crate) struct NeonDotprod;

/// `acc[i] += sum_{j<4} w[4i+j] * a[4L+j]` (s8 x s8 -> s32): one `sdot` by element.
#[target_feature(enable = "neon,dotprod")]
#[inline]
pub(crate) fn sdot_lane<const L: usize>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    macro_rules! sdot {
        ($lane:literal) => {
            // SAFETY: register-only arithmetic; FEAT_DotProd is enabled for this function and
            // callers can only run it where it was detected.
            unsafe {
                asm!(concat!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[", $lane, "]"),
                     acc = inout(vreg) acc, w = in(vreg) w, a = in(vreg) a,
                     options(pure, nomem, nostack, preserves_flags))
            }
        };
    }
    match L {
        0 => sdot!(0),
        1 => sdot!(1),
        2 => sdot!(2),
        _ => sdot!(3),
    }
    acc
}

/// One k group (lane `L` of the A registers): 4 weight registers x R rows.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn step<const L: usize, const R: usize>(acc: &mut [[int32x4_t; 4]; R], a: &[int8x16_t; R], w: int8x16x4_t) {
    for (acc, &a) in acc.iter_mut().zip(a) {
        acc[0] = sdot_lane::<L>(acc[0], w.0, a);
        acc[1] = sdot_lane::<L>(acc[1], w.1, a);
        acc[2] = sdot_lane::<L>(acc[2], w.2, a);
        acc[3] = sdot_lane::<L>(acc[3], w.3, a);
    }
}

/// R rows x 16 columns over `kg` groups. A: `[kg/4][R][16]`; W: P16K4 groups of one panel.
///
/// # Safety
/// FEAT_DotProd; `a` holds `ceil(kg/4) * R * 16` bytes, `w` `kg * 64`; `t` in bounds, R rows.
#[target_feature(enable = "neon,dotprod")]
unsafe fn micro<const R: usize>(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    let (mut ap, mut wp) = (a.cast::<i8>(), w.cast::<i8>());
    // SAFETY (loads below): each step reads 16 bytes per row of A and 64 bytes per group of W
    // inside the sizes promised by the caller; the pointers advance by exactly what was read.
    for _ in 0..kg / 4 {
        let av: [int8x16_t; R] = core::array::from_fn(|r| unsafe { vld1q_s8(ap.add(r * 16)) });
        unsafe {
            step::<0, R>(&mut acc, &av, vld1q_s8_x4(wp));
            step::<1, R>(&mut acc, &av, vld1q_s8_x4(wp.add(64)));
            step::<2, R>(&mut acc, &av, vld1q_s8_x4(wp.add(128)));
            step::<3, R>(&mut acc, &av, vld1q_s8_x4(wp.add(192)));
            ap = ap.add(R * 16);
            wp = wp.add(256);
        }
    }
    // The last 1..3 groups: A is zero padded, but W past `kg` groups is never read.
    let tail = kg % 4;
    if tail > 0 {
        let av: [int8x16_t; R] = core::array::from_fn(|r| unsafe { vld1q_s8(ap.add(r * 16)) });
        unsafe {
            step::<0, R>(&mut acc, &av, vld1q_s8_x4(wp));
            if tail > 1 {
                step::<1, R>(&mut acc, &av, vld1q_s8_x4(wp.add(64)));
            }
            if tail > 2 {
                step::<2, R>(&mut acc, &av, vld1q_s8_x4(wp.add(128)));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut row = [0i32; PANEL];
        for (c, &v) in acc.iter().enumerate() {
            // SAFETY: 4 lanes into row[4c..4c+4], c < 4.
            unsafe { vst1q_s32(row.as_mut_ptr().add(4 * c), v) };
        }
        // SAFETY: r < R = t.rows; the caller promises the tile is in bounds.
        unsafe { t.put_row(r, &row) };
    }
}

impl Tier for NeonDotprod {
    const MR: usize = 4;
    const TAILS: &'static [usize] = &[3, 2, 1];
    const KB: usize = 16;
    const ROW_ALIGN: usize = 1;
    fn w_scratch(_kg: usize) -> usize {
        0
    }
    unsafe fn prep_w(w: *const u8, _kg: usize, _buf: &mut [u8]) -> *const u8 {
        w
    }
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn micro(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
        // SAFETY: forwarded from the caller; `rows` is one of MR/TAILS.
        unsafe {
            match t.rows {
                4 => micro::<4>(a, w, kg, t),
                3 => micro::<3>(a, w, kg, t),
                2 => micro::<2>(a, w, kg, t),
                1 => micro::<1>(a, w, kg, t),
                r => unreachable!("row tile {r}"),
            }
        }
    }
}

/// # Safety
/// FEAT_DotProd available; `p` and `out` as checked by `Kernel::gemm_i8_in`.
pub(crate) unsafe fn gemm(p: &super::GemmArgs<'_>, out: &mut [i32], scratch: &mut alloc::vec::Vec<u8>) {
    // SAFETY: forwarded.
    unsafe { super::gemm::<NeonDotprod>(p, out, scratch) }
}
