//! AVX2 kernel for CPUs without VNNI, exact in two forms (`vpmaddwd` by 1 then widens the
//! 16-bit pair sums to i32 sums of 4 in both). Tile: MR rows x one panel (two ymm halves).
//! - Any weights: s8 x s8 via the sign trick, no +128 offset: vpmaddubsw(|a|, sign(w, a))
//!   gives a*w pairs (|sum| <= 2*127*127 fits i16, no saturation). The packed A block is
//!   followed by a copy holding |a|, made once per block, so the inner step does not take the
//!   absolute value of each broadcast again for every panel. Four instructions per 32 MACs.
//! - Narrow weights (all in -63..=63, [`WeightRange::Narrow`]): vpmaddubsw(a + 128, w) as
//!   the VNNI kernels do, minus 128 * wsum; the pair sums are at most 2*255*63 = 32130, so
//!   they cannot saturate either. Three instructions per 32 MACs, and no |a| copy.

use core::arch::x86_64::*;

use alloc::vec::Vec;

use super::super::{
    aligned_scratch, k_block_groups, m_block_rows, pack_a_block, row_blocks, GemmArgs, WeightRange, PANEL,
};

pub(crate) const MR: usize = 4;
const TAILS: [usize; 2] = [2, 1];
/// One panel per strip: 64 B per group, 384 groups = 24 KiB of L1.
const KC_MAX_GROUPS: usize = 384;
/// Packed A block budget; its |a| copy doubles the footprint (so 1 MiB, twice a Zen 3 core's
/// L2: half this budget measured slower there, the weights' panel being what must stay close).
const A_BLOCK_BYTES: usize = 1 << 19;

/// # Safety
/// CPU must support AVX2. `p` and `out` must satisfy the bounds checked by
/// `Kernel::gemm_i8_in` (k > 0, m > 0, non-empty column range).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    // SAFETY: forwarded from the caller.
    match p.range {
        WeightRange::Full => unsafe { gemm_in::<false>(p, out, scratch) },
        WeightRange::Narrow => unsafe { gemm_in::<true>(p, out, scratch) },
    }
}

/// [`gemm`] for full-range weights (sign trick) or, with `NARROW`, weights in -63..=63 (wider
/// ones give wrong sums, `vpmaddubsw` saturating, but nothing unsafe).
///
/// # Safety
/// As for [`gemm`].
#[target_feature(enable = "avx2")]
unsafe fn gemm_in<const NARROW: bool>(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let kcg = k_block_groups(p.k4, KC_MAX_GROUPS);
    let mc_max = m_block_rows(p.m, kcg * 4, A_BLOCK_BYTES, MR);
    let block_len = mc_max * kcg.div_ceil(16) * 64;
    // The sign trick's |a| copy follows the packed block.
    let buf = aligned_scratch(scratch, if NARROW { block_len } else { 2 * block_len });
    let mut blocks = Vec::with_capacity(mc_max / MR + TAILS.len() * 2);
    let wps = p.k4 * 64;
    debug_assert!(p.w.len() >= p.n_end.div_ceil(PANEL) * wps);
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
            let (packed, packed_abs) = buf.split_at_mut(block_len);
            pack_a_block(p, i0, &blocks, g0 * 4, kc_pad, if NARROW { 0x80 } else { 0 }, packed);
            if !NARROW {
                // Only the rows of this block: mc rows of kc_pad bytes from offset 0.
                abs_bytes(&packed[..mc * kc_pad], &mut packed_abs[..mc * kc_pad]);
            }
            let mut j = p.n_begin;
            while j < p.n_end {
                let t = Tile {
                    // SAFETY: panel j/16 < ceil(n_end/16), group g0 < k4: inside `w`.
                    w: unsafe { p.w.as_ptr().add((j / PANEL) * wps + g0 * 64) },
                    // SAFETY: j < n_end <= wsum.len().
                    wsum: unsafe { p.wsum.as_ptr().add(j) },
                    kg,
                    os: p.out_stride,
                    cols: (p.n_end - j).min(PANEL),
                    first: g0 == 0,
                };
                // SAFETY: row i0 < m, col j < n_end: inside `out`.
                let o0 = unsafe { out_ptr.add(i0 * p.out_stride + j) };
                for &(r0, rows) in &blocks {
                    debug_assert!((r0 + rows) * kc_pad <= block_len);
                    // SAFETY: block r0 packed at r0 * kc_pad with kg groups, its |a| copy (sign
                    // trick only) at the same offset of the second half; rows < m; target
                    // features enabled here.
                    unsafe {
                        let a = buf.as_ptr().add(r0 * kc_pad);
                        let a_abs = a.wrapping_add(block_len);
                        let o = o0.add(r0 * p.out_stride);
                        match rows {
                            4 => micro::<4, NARROW>(a, a_abs, &t, o),
                            2 => micro::<2, NARROW>(a, a_abs, &t, o),
                            1 => micro::<1, NARROW>(a, a_abs, &t, o),
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

/// `dst[i] = |src[i]|` as unsigned bytes (-128 gives 128, as `vpabsb` does).
#[target_feature(enable = "avx2")]
fn abs_bytes(src: &[u8], dst: &mut [u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (s as i8).unsigned_abs();
    }
}

/// One panel over one k block.
struct Tile {
    w: *const u8,
    /// The panel's weight sums (narrow form: its +128 offset is undone with them).
    wsum: *const i32,
    kg: usize,
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
/// AVX2 available; `a` and (sign trick only) `a_abs` hold R rows x ceil(kg/16) chunks
/// (`a_abs` the bytes' absolute values, `a` the bytes + 128 with `NARROW`); `t.w` has `kg`
/// groups, all in -63..=63 with `NARROW`; `o` valid for R rows of stride `t.os`, `t.cols`
/// columns; `t.wsum` for `t.cols`.
#[target_feature(enable = "avx2")]
unsafe fn micro<const R: usize, const NARROW: bool>(a: *const u8, a_abs: *const u8, t: &Tile, o: *mut i32) {
    let masks = half_masks(t.cols);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    if NARROW && t.first {
        // sum (a + 128) w = sum a w + 128 wsum: start from -128 wsum.
        // SAFETY: t.cols entries of wsum are in bounds.
        let ws = unsafe { load16(t.wsum, t.cols, &masks) };
        let c = ws.map(|v| _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(v)));
        for row in acc.iter_mut() {
            *row = c;
        }
    } else if !t.first {
        // (The sign trick has no offset: its first k block starts from zero.)
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: row r < R of the tile, t.cols columns.
            *row = unsafe { load16(o.add(r * t.os), t.cols, &masks) };
        }
    }

    let ones = _mm256_set1_epi16(1);
    macro_rules! step {
        ($ap:expr, $aap:expr, $wp:expr) => {{
            // SAFETY: one 64-byte group of the panel.
            let w = unsafe { [_mm256_loadu_si256($wp.cast()), _mm256_loadu_si256($wp.add(32).cast())] };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: 4 bytes of row r in the current chunk of packed A and (sign trick)
                // of its |a| copy.
                let b = _mm256_set1_epi32(unsafe { $ap.add(r * 64).cast::<i32>().read_unaligned() });
                if NARROW {
                    for (x, w) in row.iter_mut().zip(w) {
                        let prod16 = _mm256_maddubs_epi16(b, w);
                        *x = _mm256_add_epi32(*x, _mm256_madd_epi16(prod16, ones));
                    }
                } else {
                    let babs = _mm256_set1_epi32(unsafe { $aap.add(r * 64).cast::<i32>().read_unaligned() });
                    for (x, w) in row.iter_mut().zip(w) {
                        let prod16 = _mm256_maddubs_epi16(babs, _mm256_sign_epi8(w, b));
                        *x = _mm256_add_epi32(*x, _mm256_madd_epi16(prod16, ones));
                    }
                }
            }
        }};
    }

    let (mut ap, mut aap) = (a, a_abs);
    let mut wp = t.w;
    for _ in 0..t.kg / 16 {
        for g in 0..16 {
            // g < 16 stays inside this chunk / these 16 groups.
            step!(ap.wrapping_add(g * 4), aap.wrapping_add(g * 4), wp.wrapping_add(g * 64));
        }
        // Next chunk (R rows x 64 B) and 16 groups; at most one past the end.
        ap = ap.wrapping_add(R * 64);
        aap = aap.wrapping_add(R * 64);
        wp = wp.wrapping_add(16 * 64);
    }
    for g in 0..t.kg % 16 {
        // The last, partial chunk holds kg % 16 groups.
        step!(ap.wrapping_add(g * 4), aap.wrapping_add(g * 4), wp.wrapping_add(g * 64));
    }

    for (r, row) in acc.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { store16(o.add(r * t.os), t.cols, &masks, *row) };
    }
}
