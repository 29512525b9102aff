//! AVX512-VNNI kernel: zmm `vpdpbusd`, u8 (A + 128) x s8 (W), minus 128 * wsum.
//!
//! Blocking: for each block of rows (A block within `A_BLOCK_BYTES`, L2) and of up to
//! `KC_MAX_GROUPS` k-groups, A is packed (XOR 0x80) into scratch; then for each strip of `NR`
//! panels every `MR`-row tile runs the microkernel over the k block. The W strip is streamed
//! from L2 (prefetched there during the previous strip): measured faster for K = 3072 than
//! L1-sized k blocks, whose extra passes re-load and re-store the output tiles.

use core::arch::x86_64::*;

use alloc::vec::Vec;

use super::super::{
    aligned_scratch, k_block_groups, m_block_rows, pack_a_block, row_blocks, GemmArgs, PANEL,
};

/// Rows per microkernel tile (one broadcast register each).
pub(crate) const MR: usize = 12;
/// Panels (16 columns, one zmm) per microkernel tile; MR * NR accumulators + NR weights.
const NR: usize = 2;
/// Row tail tiles, greedy; must end in 1.
const TAILS: [usize; 4] = [8, 4, 2, 1];
/// Max k-groups per block: K <= 3072 runs in one pass.
const KC_MAX_GROUPS: usize = 768;
/// Packed A block budget (L2 is 2 MiB on current AVX-512 server cores).
const A_BLOCK_BYTES: usize = 1 << 20;

/// # Safety
/// CPU must support AVX512F/BW/VNNI. `p` and `out` must satisfy the bounds checked by
/// `Kernel::gemm_i8_in` (k > 0, m > 0, non-empty column range).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let kcg = k_block_groups(p.k4, KC_MAX_GROUPS);
    let mc_max = m_block_rows(p.m, kcg * 4, A_BLOCK_BYTES, MR);
    let buf = aligned_scratch(scratch, mc_max * kcg * 4);
    let mut blocks = Vec::with_capacity(mc_max / MR + TAILS.len() * 2);
    let wps = p.k4 * 64; // bytes between consecutive panels
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
            let first = g0 == 0;
            let mut j = p.n_begin;
            while j < p.n_end {
                let cols = (p.n_end - j).min(NR * PANEL);
                let mut masks = [0 as __mmask16; NR];
                for (q, m) in masks.iter_mut().enumerate() {
                    let c = cols.saturating_sub(q * PANEL).min(PANEL);
                    *m = ((1u32 << c) - 1) as __mmask16;
                }
                let t = Tile {
                    // SAFETY: panel j/16 < ceil(n_end/16) <= ceil(n/16) and group g0 < k4,
                    // so the offset is inside `w` (length checked by the caller).
                    w: unsafe { p.w.as_ptr().add((j / PANEL) * wps + g0 * 64) },
                    wps,
                    kg,
                    // SAFETY: j < n_end <= wsum.len().
                    wsum: unsafe { p.wsum.as_ptr().add(j) },
                    // SAFETY: row i0 < m and column j < n_end lie inside `out`.
                    out: unsafe { out_ptr.add(i0 * p.out_stride + j) },
                    os: p.out_stride,
                    masks,
                    first,
                };
                let two = cols > PANEL;
                // The next strip's weights come from L3/RAM; spread their L2 prefetch over
                // this strip's tiles (each group of a panel is one 64-byte line).
                let jn = j + NR * PANEL;
                let pf_np = if jn < p.n_end { (p.n_end - jn).min(NR * PANEL).div_ceil(PANEL) } else { 0 };
                let pf_base = p.w.as_ptr().wrapping_add((jn / PANEL) * wps + g0 * 64);
                let ntiles = blocks.len();
                for (ti, &(r0, rows)) in blocks.iter().enumerate() {
                    debug_assert!((r0 + rows) * kc_pad <= buf.len());
                    let (lo, hi) = (ti * kg / ntiles, (ti + 1) * kg / ntiles);
                    let pf = Prefetch { base: pf_base.wrapping_add(lo * 64), groups: hi - lo, panels: pf_np };
                    // SAFETY: row block r0..r0+rows was packed at r0 * kc_pad, kc_pad covers kg
                    // groups; rows i0+r0.. < m; the target features are enabled here.
                    unsafe {
                        let a = buf.as_ptr().add(r0 * kc_pad);
                        let o = t.out.add(r0 * p.out_stride);
                        match (rows, two) {
                            (12, true) => micro::<12, 2>(a, &t, o, pf),
                            (12, false) => micro::<12, 1>(a, &t, o, pf),
                            (8, true) => micro::<8, 2>(a, &t, o, pf),
                            (8, false) => micro::<8, 1>(a, &t, o, pf),
                            (4, true) => micro::<4, 2>(a, &t, o, pf),
                            (4, false) => micro::<4, 1>(a, &t, o, pf),
                            (2, true) => micro::<2, 2>(a, &t, o, pf),
                            (2, false) => micro::<2, 1>(a, &t, o, pf),
                            (1, true) => micro::<1, 2>(a, &t, o, pf),
                            (1, false) => micro::<1, 1>(a, &t, o, pf),
                            _ => unreachable!("row tile {rows} not in MR/TAILS"),
                        }
                    }
                }
                j += NR * PANEL;
            }
            g0 += kg;
        }
        i0 += mc;
    }
}

/// One strip of up to NR panels over one k block.
struct Tile {
    /// First panel of the strip at the block's first group; panel q at `w + q * wps`.
    w: *const u8,
    wps: usize,
    /// k-groups in this block.
    kg: usize,
    /// wsum at the strip's first column.
    wsum: *const i32,
    /// out at (tile row 0 of the M block, strip column 0).
    out: *mut i32,
    os: usize,
    /// Valid columns of each panel.
    masks: [__mmask16; NR],
    /// First k block: start from -128 * wsum, else accumulate into `out`.
    first: bool,
}

/// Lines to prefetch into L2 during one tile: `groups` lines from `base` in each of `panels`
/// panels (stride `Tile::wps`). Prefetches never fault, but all addresses are inside `w`.
#[derive(Clone, Copy)]
struct Prefetch {
    base: *const u8,
    groups: usize,
    panels: usize,
}

/// R x P microkernel: R rows of packed A ([chunk][R][64 B]) times P panels, over `t.kg` groups.
///
/// # Safety
/// AVX512F/BW/VNNI available; `a` holds R rows x ceil(kg/16) chunks; `t.w` has P panels of
/// `kg` groups; `o` is valid for R rows of stride `t.os` under `t.masks`; `t.wsum` likewise.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn micro<const R: usize, const P: usize>(a: *const u8, t: &Tile, o: *mut i32, pf: Prefetch) {
    let mut acc = [[_mm512_setzero_si512(); P]; R];
    if t.first {
        for q in 0..P {
            // SAFETY: masked lanes are the strip's valid columns (< n_end <= wsum.len()).
            let ws = unsafe { _mm512_maskz_loadu_epi32(t.masks[q], t.wsum.add(q * PANEL)) };
            let c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(ws));
            for row in acc.iter_mut() {
                row[q] = c;
            }
        }
    } else {
        for (r, row) in acc.iter_mut().enumerate() {
            for (q, x) in row.iter_mut().enumerate() {
                // SAFETY: row r < R and valid columns of panel q are inside `out`.
                *x = unsafe { _mm512_maskz_loadu_epi32(t.masks[q], o.add(r * t.os + q * PANEL)) };
            }
        }
    }

    // One k-group: P weight loads, R broadcasts, R*P dpbusd.
    macro_rules! step {
        ($ap:expr, $wp:expr) => {{
            let mut wv = [_mm512_setzero_si512(); P];
            for (q, w) in wv.iter_mut().enumerate() {
                // SAFETY: group inside panel q of the strip (see fn contract).
                *w = unsafe { _mm512_loadu_si512($wp.add(q * t.wps).cast()) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: 4 bytes of row r in the current chunk of packed A.
                let b = _mm512_set1_epi32(unsafe { $ap.add(r * 64).cast::<i32>().read_unaligned() });
                for (x, w) in row.iter_mut().zip(wv.iter()) {
                    *x = _mm512_dpbusd_epi32(*x, b, *w);
                }
            }
        }};
    }

    let mut ap = a;
    let mut wp = t.w;
    let chunks = t.kg / 16;
    let pf_step = if chunks == 0 { 0 } else { pf.groups.div_ceil(chunks) };
    for c in 0..chunks {
        for q in 0..pf.panels {
            for g in c * pf_step..((c + 1) * pf_step).min(pf.groups) {
                let line = pf.base.wrapping_add(q * t.wps + g * 64);
                _mm_prefetch::<_MM_HINT_T1>(line.cast());
            }
        }
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
        for (q, x) in row.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm512_mask_storeu_epi32(o.add(r * t.os + q * PANEL), t.masks[q], *x) };
        }
    }
}
