//! fp32 tiles of attention: scores of a few query rows against a tile of keys, and the
//! probability-weighted sum of value rows. Every implementation sums in the same order with fused
//! multiply-adds (one rounding each), so all kernels give the same bits as this reference.

use crate::ops::math::fused_mul_add;

/// Query rows computed together (K^T and V rows are loaded once per tile of rows).
pub const QUERY_ROWS: usize = 4;
/// Keys per scores tile (four 16-float vectors).
pub const KEY_TILE: usize = 64;
/// Keys per narrow scores tile (one 16-float vector): short sequences' keys are padded to whole
/// narrow tiles rather than to whole 64-key tiles (see `bert::padded_keys`).
pub const KEY_TILE_NARROW: usize = 16;
/// Value features per weighted-values tile: four 16-float vectors (a whole 64-wide head, so each
/// probability broadcast feeds four multiply-adds), or [`VALUE_TILE_HALF`] for 32-wide heads.
pub const VALUE_TILE: usize = 64;
/// The narrower weighted-values tile (two 16-float vectors).
pub const VALUE_TILE_HALF: usize = 32;

/// `out[r][l] = sum_{d < dh} q[r*dh + d] * kt[d*kt_stride + l]`, summed in d order from 0.0,
/// each step a fused multiply-add.
///
/// `W` (the keys per tile) is [`KEY_TILE`] or [`KEY_TILE_NARROW`]. Panics unless `q` holds
/// `QUERY_ROWS * dh` values and `kt` `(dh-1)*kt_stride + W`.
pub fn scores_tile_reference<const W: usize>(q: &[f32], dh: usize, kt: &[f32], kt_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_scores::<W>(q, dh, kt, kt_stride);
    *out = [[0.0; W]; QUERY_ROWS];
    for d in 0..dh {
        let k = &kt[d * kt_stride..d * kt_stride + W];
        for (r, acc) in out.iter_mut().enumerate() {
            let qd = q[r * dh + d];
            for (a, &kv) in acc.iter_mut().zip(k) {
                *a = fused_mul_add(qd, kv, *a);
            }
        }
    }
}

/// `out[r][l] = sum_{j < len} p[r*p_stride + j] * v[j*v_stride + l]`, summed in j order from 0.0,
/// each step a fused multiply-add.
///
/// `W` (the features per tile) is [`VALUE_TILE`] or [`VALUE_TILE_HALF`]. Panics unless `p`
/// holds `(QUERY_ROWS-1)*p_stride + len` values and `v` `(len-1)*v_stride + W`.
pub fn values_tile_reference<const W: usize>(p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_values::<W>(p, p_stride, len, v, v_stride);
    *out = [[0.0; W]; QUERY_ROWS];
    for j in 0..len {
        let vj = &v[j * v_stride..j * v_stride + W];
        for (r, acc) in out.iter_mut().enumerate() {
            let pj = p[r * p_stride + j];
            for (a, &vv) in acc.iter_mut().zip(vj) {
                *a = fused_mul_add(pj, vv, *a);
            }
        }
    }
}

/// Side of the square blocks [`transpose_block_reference`] transposes (one 16-float vector).
pub const TRANSPOSE_BLOCK: usize = 16;

/// `dst[c*dst_stride + r] = src[r*src_stride + c]` for `r, c < TRANSPOSE_BLOCK`: a plain copy,
/// so every kernel's version gives these bits. Attention's keys go into K^T this way.
///
/// Panics unless both strides are at least `TRANSPOSE_BLOCK` and both slices hold
/// `TRANSPOSE_BLOCK` rows of their stride (the last row `TRANSPOSE_BLOCK` long).
pub fn transpose_block_reference(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    check_transpose(src.len(), src_stride, dst.len(), dst_stride);
    for r in 0..TRANSPOSE_BLOCK {
        for c in 0..TRANSPOSE_BLOCK {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
}

pub(crate) fn check_transpose(src_len: usize, src_stride: usize, dst_len: usize, dst_stride: usize) {
    const N: usize = TRANSPOSE_BLOCK;
    assert!(src_stride >= N && dst_stride >= N, "transpose block: strides {src_stride}/{dst_stride}");
    assert!(src_len >= (N - 1) * src_stride + N, "transpose block: src has {src_len} values");
    assert!(dst_len >= (N - 1) * dst_stride + N, "transpose block: dst has {dst_len} values");
}

pub(crate) fn check_scores<const W: usize>(q: &[f32], dh: usize, kt: &[f32], kt_stride: usize) {
    const { assert!(W == KEY_TILE || W == KEY_TILE_NARROW) };
    assert!(dh > 0 && kt_stride >= W, "scores tile: dh {dh}, stride {kt_stride}");
    assert!(q.len() >= QUERY_ROWS * dh, "scores tile: q has {} values", q.len());
    assert!(kt.len() >= (dh - 1) * kt_stride + W, "scores tile: kt has {} values", kt.len());
}

pub(crate) fn check_values<const W: usize>(p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize) {
    const { assert!(W == VALUE_TILE || W == VALUE_TILE_HALF) };
    assert!(len > 0 && p_stride >= len && v_stride >= W, "values tile: len {len}, strides {p_stride}/{v_stride}");
    assert!(p.len() >= (QUERY_ROWS - 1) * p_stride + len, "values tile: p has {} values", p.len());
    assert!(v.len() >= (len - 1) * v_stride + W, "values tile: v has {} values", v.len());
}
