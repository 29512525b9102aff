//! AVX-VNNI kernel: ymm `vpdpbusd` (VEX form), u8 (A + 128) x s8 (W), minus 128 * wsum.
//! Same blocking as the AVX-512 kernel; a tile is MR rows x one panel (two ymm halves),
//! sized for 16 ymm registers (12 accumulators + 2 weights + 1 broadcast).

use core::arch::x86_64::*;

use alloc::vec::Vec;

use super::super::{
    aligned_scratch, k_block_groups, m_block_rows, pack_a_block, row_blocks, GemmArgs, PANEL,
};

pub(crate) const MR: usize = 6;
const TAILS: [usize; 3] = [4, 2, 1];
/// One panel per strip: 64 B per group, 384 groups = 24 KiB of L1.
const KC_MAX_GROUPS: usize = 384;
/// Packed A block budget (L2).
const A_BLOCK_BYTES: usize = 1 << 19;

/// # Safety
/// CPU must support AVX2 + AVX-VNNI. `p` and `out` must satisfy the bounds checked by
/// `Kernel::gemm_i8_in` (k > 0, m > 0, non-empty column range).
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let kcg = k_block_groups(p.k4, KC_MAX_GROUPS);
    let mc_max = m_block_rows(p.m, kcg * 4, A_BLOCK_BYTES, MR);
    let buf = aligned_scratch(scratch, mc_max * kcg * 4);
    let mut blocks = Vec::with_capacity(mc_max / MR + TAILS.len() * 2);
    let wps = p.k4 * 64;
    debug_assert!(p.w.len() >= p.n_end.div_ceil(PANEL) * wps);
    debug_assert!(p.wsum.len() >= p.n_end);
    debug_assert!(out.len() >= (p.m - 1) * p.out_stride + p.n_end);
    let out_ptr = out.as_mut_ptr();

    let mut i0 = 0;
    while i0 < p.m {
        let mc = (p.m - i0).min(mc_max);
        row_blocks(mc, MR, &TAILS, &mut blocks);
        let mut g0 = 0;
        while g0 < p.k4 {
            let kg = (p.k4 - g0).min(kcg);
            let kc_pad = kg.div_ceil(16) * 64;
            pack_a_block(p, i0, &blocks, g0 * 4, kc_pad, 0x80, buf);
            let mut j = p.n_begin;
            while j < p.n_end {
                let t = Tile {
                    // SAFETY: panel j/16 < ceil(n_end/16), group g0 < k4: inside `w`.
                    w: unsafe { p.w.as_ptr().add((j / PANEL) * wps + g0 * 64) },
                    kg,
                    // SAFETY: j < n_end <= wsum.len().
                    wsum: unsafe { p.wsum.as_ptr().add(j) },
                    os: p.out_stride,
                    cols: (p.n_end - j).min(PANEL),
                    first: g0 == 0,
                };
                // SAFETY: row i0 < m, col j < n_end: inside `out`.
                let o0 = unsafe { out_ptr.add(i0 * p.out_stride + j) };
                for &(r0, rows) in &blocks {
                    debug_assert!((r0 + rows) * kc_pad <= buf.len());
                    // SAFETY: block r0 packed at r0 * kc_pad with kg groups; rows < m;
                    // target features enabled here.
                    unsafe {
                        let a = buf.as_ptr().add(r0 * kc_pad);
                        let o = o0.add(r0 * p.out_stride);
                        match rows {
                            6 => micro::<6>(a, &t, o),
                            4 => micro::<4>(a, &t, o),
                            2 => micro::<2>(a, &t, o),
                            1 => micro::<1>(a, &t, o),
                            _ => unreachable!("row tile {rows} not in MR/TAILS"),
                        }
                    }
                }
                j += PANEL;
            }
            g0 += kg;
        }
        i0 += mc;
    }
}

/// One panel over one k block.
struct Tile {
    w: *const u8,
    kg: usize,
    wsum: *const i32,
    os: usize,
    /// Valid columns in the panel (1..=16).
    cols: usize,
    first: bool,
}

/// Lane masks for vpmaskmovd: lanes < cols of each ymm half.
#[target_feature(enable = "avx2")]
fn half_masks(cols: usize) -> [__m256i; 2] {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let c = cols as i32;
    [_mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx), _mm256_cmpgt_epi32(_mm256_set1_epi32(c - 8), idx)]
}

/// Loads 16 i32 (two halves) from `p`, only the first `cols` when partial.
///
/// # Safety
/// `p..p+cols` readable.
#[target_feature(enable = "avx2")]
unsafe fn load16(p: *const i32, cols: usize, m: &[__m256i; 2]) -> [__m256i; 2] {
    // SAFETY: full loads only when all 16 lanes are valid; vpmaskmovd suppresses faults.
    unsafe {
        if cols == PANEL {
            [_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(8).cast())]
        } else {
            [_mm256_maskload_epi32(p, m[0]), _mm256_maskload_epi32(p.add(8), m[1])]
        }
    }
}

/// # Safety
/// `p..p+cols` writable.
#[target_feature(enable = "avx2")]
unsafe fn store16(p: *mut i32, cols: usize, m: &[__m256i; 2], v: [__m256i; 2]) {
    // SAFETY: as for `load16`.
    unsafe {
        if cols == PANEL {
            _mm256_storeu_si256(p.cast(), v[0]);
            _mm256_storeu_si256(p.add(8).cast(), v[1]);
        } else {
            _mm256_maskstore_epi32(p, m[0], v[0]);
            _mm256_maskstore_epi32(p.add(8), m[1], v[1]);
        }
    }
}

/// R rows x one panel microkernel.
///
/// # Safety
/// AVX2 + AVX-VNNI available; `a` holds R rows x ceil(kg/16) chunks; `t.w` has `kg` groups;
/// `o` valid for R rows of stride `t.os`, `t.cols` columns; `t.wsum` for `t.cols`.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn micro<const R: usize>(a: *const u8, t: &Tile, o: *mut i32) {
    let masks = half_masks(t.cols);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    if t.first {
        // SAFETY: t.cols entries of wsum are in bounds.
        let ws = unsafe { load16(t.wsum, t.cols, &masks) };
        let c = ws.map(|v| _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(v)));
        for row in acc.iter_mut() {
            *row = c;
        }
    } else {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: row r < R of the tile, t.cols columns.
            *row = unsafe { load16(o.add(r * t.os), t.cols, &masks) };
        }
    }

    macro_rules! step {
        ($ap:expr, $wp:expr) => {{
            // SAFETY: one 64-byte group of the panel.
            let (w0, w1) =
                unsafe { (_mm256_loadu_si256($wp.cast()), _mm256_loadu_si256($wp.add(32).cast())) };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: 4 bytes of row r in the current chunk of packed A.
                let b = _mm256_set1_epi32(unsafe { $ap.add(r * 64).cast::<i32>().read_unaligned() });
                row[0] = _mm256_dpbusd_avx_epi32(row[0], b, w0);
                row[1] = _mm256_dpbusd_avx_epi32(row[1], b, w1);
            }
        }};
    }

    let mut ap = a;
    let mut wp = t.w;
    for _ in 0..t.kg / 16 {
        for g in 0..16 {
            // g < 16 stays inside this chunk / these 16 groups.
            step!(ap.wrapping_add(g * 4), wp.wrapping_add(g * 64));
        }
        // Next chunk (R rows x 64 B) and 16 groups; at most one past the end.
        ap = ap.wrapping_add(R * 64);
        wp = wp.wrapping_add(16 * 64);
    }
    for g in 0..t.kg % 16 {
        // The last, partial chunk holds kg % 16 groups.
        step!(ap.wrapping_add(g * 4), wp.wrapping_add(g * 64));
    }

    for (r, row) in acc.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { store16(o.add(r * t.os), t.cols, &masks, *row) };
    }
}
