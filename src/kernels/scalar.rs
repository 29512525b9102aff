//! Naive reference kernel: reads the packed weights byte by byte. Ground truth for tests.

use super::{GemmArgs, GROUP_BYTES, KGROUP, PANEL};

pub(crate) fn gemm(p: &GemmArgs<'_>, out: &mut [i32]) {
    for i in 0..p.m {
        let row = &p.a[i * p.a_stride..i * p.a_stride + p.k];
        for j in p.n_begin..p.n_end {
            let panel = (j / PANEL) * p.k4 * GROUP_BYTES + (j % PANEL) * KGROUP;
            let mut acc: i32 = 0;
            for (kk, &av) in row.iter().enumerate() {
                let wv = p.w[panel + (kk / KGROUP) * GROUP_BYTES + kk % KGROUP] as i8;
                acc = acc.wrapping_add(av as i32 * wv as i32);
            }
            out[i * p.out_stride + j] = acc;
        }
    }
}
