//! Portable blocked kernel for cores with no int8 SIMD (RV32IMAC, Cortex-M0+): plain Rust,
//! no `unsafe`. Per row of A and block of 4 output columns, each k-group reads 4 bytes of A
//! once and the 16-byte strip of the 4 columns in the 64-byte weight group, into 4 register
//! accumulators: 16 multiply-adds per 20 byte loads, with no per-element index arithmetic
//! (the scalar reference recomputes the packed offset of every weight byte). Exact i32
//! arithmetic, so it gives the reference's bits.

use super::{GemmArgs, GROUP_BYTES, KGROUP, PANEL};

const COLUMNS: usize = 4;

pub(crate) fn gemm(p: &GemmArgs<'_>, out: &mut [i32]) {
    let panel_bytes = p.k4 * GROUP_BYTES;
    for i in 0..p.m {
        let row = &p.a[i * p.a_stride..i * p.a_stride + p.k];
        let out_row = &mut out[i * p.out_stride..];
        for j0 in (p.n_begin..p.n_end).step_by(COLUMNS) {
            let strip = (j0 / PANEL) * panel_bytes + (j0 % PANEL) * KGROUP;
            // Group g's 16 bytes of these columns are at g * 64 + 0..16 of `w`.
            let w = &p.w[strip..strip + (p.k4 - 1) * GROUP_BYTES + COLUMNS * KGROUP];
            let (mut acc0, mut acc1, mut acc2, mut acc3) = (0i32, 0i32, 0i32, 0i32);
            let mut quads = row.chunks_exact(KGROUP);
            for (quad, group) in (&mut quads).zip(w.chunks(GROUP_BYTES)) {
                let group: &[u8; COLUMNS * KGROUP] = group[..COLUMNS * KGROUP].try_into().unwrap();
                for (t, &a) in quad.iter().enumerate() {
                    let a = a as i32;
                    acc0 = acc0.wrapping_add(a * group[t] as i8 as i32);
                    acc1 = acc1.wrapping_add(a * group[KGROUP + t] as i8 as i32);
                    acc2 = acc2.wrapping_add(a * group[2 * KGROUP + t] as i8 as i32);
                    acc3 = acc3.wrapping_add(a * group[3 * KGROUP + t] as i8 as i32);
                }
            }
            // The k tail (< 4 values) is the last group's first bytes.
            let g = p.k / KGROUP;
            for (t, &a) in quads.remainder().iter().enumerate() {
                let (a, at) = (a as i32, g * GROUP_BYTES + t);
                acc0 = acc0.wrapping_add(a * w[at] as i8 as i32);
                acc1 = acc1.wrapping_add(a * w[at + KGROUP] as i8 as i32);
                acc2 = acc2.wrapping_add(a * w[at + 2 * KGROUP] as i8 as i32);
                acc3 = acc3.wrapping_add(a * w[at + 3 * KGROUP] as i8 as i32);
            }
            let acc = [acc0, acc1, acc2, acc3];
            let cols = (p.n_end - j0).min(COLUMNS);
            out_row[j0..j0 + cols].copy_from_slice(&acc[..cols]);
        }
    }
}
