//! The reference kernel: deliberately naive, reads the same packed bytes as the fast kernels.

use super::packed_index;

#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_i8(
    a: &[i8],
    a_stride: usize,
    m: usize,
    w_packed: &[u8],
    _n: usize,
    k: usize,
    n_begin: usize,
    n_end: usize,
    out: &mut [i32],
    out_stride: usize,
) {
    for i in 0..m {
        let row = &a[i * a_stride..i * a_stride + k];
        for j in n_begin..n_end {
            let mut acc = 0i32;
            for (kk, &x) in row.iter().enumerate() {
                acc += x as i32 * w_packed[packed_index(j, kk, k)] as i8 as i32;
            }
            out[i * out_stride + j] = acc;
        }
    }
}
