//! AVX2 + FMA versions of the attention tiles in `kernels::attention`, for the AVX2 and AVX-VNNI
//! kernels (without them the reference's `mul_add` is a libm call per element there). A tile's
//! 64 columns need 32 ymm accumulators for its 4 rows, twice the register file, so each pass
//! covers 16 columns (8 accumulators); every output element is still one chain of fused
//! multiply-adds in the reference's order, so the bits equal the reference's.

use core::arch::x86_64::*;

use crate::kernels::attention::{check_scores, check_values, QUERY_ROWS};

/// Columns per pass: two ymm vectors.
const STRIP: usize = 16;

/// See `scores_tile_reference`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn scores_tile<const W: usize>(q: &[f32], dh: usize, kt: &[f32], kt_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_scores::<W>(q, dh, kt, kt_stride);
    for c0 in (0..W).step_by(STRIP) {
        let mut acc = [[_mm256_setzero_ps(); 2]; QUERY_ROWS];
        for d in 0..dh {
            // SAFETY: check_scores guarantees d*kt_stride + W <= kt.len() for d < dh,
            // and c0 + STRIP <= W.
            let k = unsafe {
                let p = kt.as_ptr().add(d * kt_stride + c0);
                [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
            };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let qd = _mm256_set1_ps(q[r * dh + d]);
                for (a, &kv) in acc_r.iter_mut().zip(&k) {
                    *a = _mm256_fmadd_ps(qd, kv, *a);
                }
            }
        }
        for (o, acc_r) in out.iter_mut().zip(&acc) {
            // SAFETY: c0 + 16 <= W, the row's length.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr().add(c0), acc_r[0]);
                _mm256_storeu_ps(o.as_mut_ptr().add(c0 + 8), acc_r[1]);
            }
        }
    }
}

/// See `values_tile_reference`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn values_tile<const W: usize>(p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize, out: &mut [[f32; W]; QUERY_ROWS]) {
    check_values::<W>(p, p_stride, len, v, v_stride);
    for c0 in (0..W).step_by(STRIP) {
        let mut acc = [[_mm256_setzero_ps(); 2]; QUERY_ROWS];
        for j in 0..len {
            // SAFETY: check_values guarantees j*v_stride + W <= v.len() for j < len, and
            // c0 + STRIP <= W.
            let vj = unsafe {
                let x = v.as_ptr().add(j * v_stride + c0);
                [_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))]
            };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pj = _mm256_set1_ps(p[r * p_stride + j]);
                for (a, &vv) in acc_r.iter_mut().zip(&vj) {
                    *a = _mm256_fmadd_ps(pj, vv, *a);
                }
            }
        }
        for (o, acc_r) in out.iter_mut().zip(&acc) {
            // SAFETY: c0 + 16 <= W, the row's length.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr().add(c0), acc_r[0]);
                _mm256_storeu_ps(o.as_mut_ptr().add(c0 + 8), acc_r[1]);
            }
        }
    }
}
