//! NEON attention tiles: the reference's sums ([`attention`]) in the same order, one fused
//! multiply-add (`fmla`, a single rounding like `f32::mul_add`) per step, 4 floats per register.
//! Each output element's sum runs over d (or j) from 0.0 exactly as in the reference; only which
//! elements are computed together changes, so the bits are the same.
//!
//! Tiles: 4 query rows x 16 outputs = 16 accumulator registers per pass (the x86 AVX-512 tile is
//! 4 x 64 in 16 zmm); 32 NEON registers hold one such quarter plus its operands.

use core::arch::aarch64::*;

use super::super::attention::{self, QUERY_ROWS};

/// Same as [`attention::scores_tile_reference`].
#[target_feature(enable = "neon")]
pub(crate) fn scores_tile<const W: usize>(q: &[f32], dh: usize, kt: &[f32], kt_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    attention::check_scores::<W>(q, dh, kt, kt_stride);
    for l0 in (0..W).step_by(16) {
        let mut acc = [[vdupq_n_f32(0.0); 4]; QUERY_ROWS];
        for d in 0..dh {
            let row = &kt[d * kt_stride + l0..d * kt_stride + l0 + 16];
            // SAFETY: `row` has 16 floats (checked above through check_scores' bounds).
            let k = unsafe { vld1q_f32_x4(row.as_ptr()) };
            for (r, acc) in acc.iter_mut().enumerate() {
                let qd = vdupq_n_f32(q[r * dh + d]);
                acc[0] = vfmaq_f32(acc[0], qd, k.0);
                acc[1] = vfmaq_f32(acc[1], qd, k.1);
                acc[2] = vfmaq_f32(acc[2], qd, k.2);
                acc[3] = vfmaq_f32(acc[3], qd, k.3);
            }
        }
        for (o, acc) in out.iter_mut().zip(&acc) {
            // SAFETY: 16 writable floats at o[l0..].
            unsafe { vst1q_f32_x4(o[l0..l0 + 16].as_mut_ptr(), float32x4x4_t(acc[0], acc[1], acc[2], acc[3])) };
        }
    }
}

/// Same as [`attention::values_tile_reference`].
#[target_feature(enable = "neon")]
pub(crate) fn values_tile<const W: usize>(p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    attention::check_values::<W>(p, p_stride, len, v, v_stride);
    for l0 in (0..W).step_by(16) {
        let mut acc = [[vdupq_n_f32(0.0); 4]; QUERY_ROWS];
        for j in 0..len {
            let row = &v[j * v_stride + l0..j * v_stride + l0 + 16];
            // SAFETY: `row` has 16 floats.
            let x = unsafe { vld1q_f32_x4(row.as_ptr()) };
            for (r, acc) in acc.iter_mut().enumerate() {
                let pj = vdupq_n_f32(p[r * p_stride + j]);
                acc[0] = vfmaq_f32(acc[0], pj, x.0);
                acc[1] = vfmaq_f32(acc[1], pj, x.1);
                acc[2] = vfmaq_f32(acc[2], pj, x.2);
                acc[3] = vfmaq_f32(acc[3], pj, x.3);
            }
        }
        for (o, acc) in out.iter_mut().zip(&acc) {
            // SAFETY: 16 writable floats at o[l0..].
            unsafe { vst1q_f32_x4(o[l0..l0 + 16].as_mut_ptr(), float32x4x4_t(acc[0], acc[1], acc[2], acc[3])) };
        }
    }
}
