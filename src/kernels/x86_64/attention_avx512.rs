//! AVX-512 versions of the attention tiles in `kernels::attention`: the accumulators of a whole
//! tile stay in registers (16 zmm each). FMA in the reference's order, so
//! the bits equal the reference's (which rounds each multiply-add once too).

use core::arch::x86_64::*;

use crate::kernels::attention::{check_scores, check_transpose, check_values, KEY_TILE, QUERY_ROWS, TRANSPOSE_BLOCK, VALUE_TILE};


/// See `scores_tile_reference`.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn scores_tile<const W: usize>(q: &[f32], dh: usize, kt: &[f32], kt_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_scores::<W>(q, dh, kt, kt_stride);
    // W / 16 vectors per row (4 or 1); the unused accumulators are compiled away.
    let vecs = W / 16;
    let mut acc = [[_mm512_setzero_ps(); KEY_TILE / 16]; QUERY_ROWS];
    for d in 0..dh {
        let mut k = [_mm512_setzero_ps(); KEY_TILE / 16];
        for (c, x) in k.iter_mut().enumerate().take(vecs) {
            // SAFETY: check_scores guarantees d*kt_stride + W <= kt.len() for d < dh.
            *x = unsafe { _mm512_loadu_ps(kt.as_ptr().add(d * kt_stride + 16 * c)) };
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let qd = _mm512_set1_ps(q[r * dh + d]);
            for (a, &kv) in acc_r.iter_mut().zip(&k).take(vecs) {
                *a = _mm512_fmadd_ps(qd, kv, *a);
            }
        }
    }
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        for (c, &a) in acc_r.iter().enumerate().take(vecs) {
            // SAFETY: W / 16 vectors of 16 floats fill the W-float row exactly.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * c), a) };
        }
    }
}

/// See `values_tile_reference`.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn values_tile<const W: usize>(p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_values::<W>(p, p_stride, len, v, v_stride);
    // W / 16 vectors per row (4 or 2); the unused accumulators are compiled away.
    let vecs = W / 16;
    let mut acc = [[_mm512_setzero_ps(); VALUE_TILE / 16]; QUERY_ROWS];
    for j in 0..len {
        let mut vj = [_mm512_setzero_ps(); VALUE_TILE / 16];
        for (c, x) in vj.iter_mut().enumerate().take(vecs) {
            // SAFETY: check_values guarantees j*v_stride + W <= v.len() for j < len.
            *x = unsafe { _mm512_loadu_ps(v.as_ptr().add(j * v_stride + 16 * c)) };
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let pj = _mm512_set1_ps(p[r * p_stride + j]);
            for (a, &vv) in acc_r.iter_mut().zip(&vj).take(vecs) {
                *a = _mm512_fmadd_ps(pj, vv, *a);
            }
        }
    }
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        for (c, &a) in acc_r.iter().enumerate().take(vecs) {
            // SAFETY: W / 16 vectors of 16 floats fill the W-float row exactly.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * c), a) };
        }
    }
}

/// See `transpose_block_reference`: 16 row loads, four rounds of 16 shuffles, 16 row stores
/// (the scalar copy reads one float per instruction from rows 3H floats apart).
///
/// # Safety
/// The CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_block(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    check_transpose(src.len(), src_stride, dst.len(), dst_stride);
    let mut r = [_mm512_setzero_ps(); TRANSPOSE_BLOCK];
    for (i, x) in r.iter_mut().enumerate() {
        // SAFETY: check_transpose guarantees i*src_stride + 16 <= src.len() for i < 16.
        *x = unsafe { _mm512_loadu_ps(src.as_ptr().add(i * src_stride)) };
    }
    let mut t = [_mm512_setzero_ps(); TRANSPOSE_BLOCK];
    // Pairs of rows interleaved by element, then by element pair: each 128-bit lane l of
    // r[4g + i] holds column 4l + i of rows 4g..4g+3.
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for g in 0..4 {
        let (a, b, c, d) = (_mm512_castps_pd(t[4 * g]), _mm512_castps_pd(t[4 * g + 1]), _mm512_castps_pd(t[4 * g + 2]), _mm512_castps_pd(t[4 * g + 3]));
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // Then the 128-bit lanes: even lanes of two groups, odd lanes, twice.
    for h in 0..2 {
        for i in 0..4 {
            t[8 * h + i] = _mm512_shuffle_f32x4::<0x88>(r[8 * h + i], r[8 * h + 4 + i]);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(r[8 * h + i], r[8 * h + 4 + i]);
        }
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
    for (c, &x) in r.iter().enumerate() {
        // SAFETY: check_transpose guarantees c*dst_stride + 16 <= dst.len() for c < 16.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(c * dst_stride), x) };
    }
}
