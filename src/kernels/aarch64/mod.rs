//! aarch64 kernels, one file per tier (ruy's `Path::kNeon` / `kNeonDotprod` split, plus i8mm):
//! `neon` (every ARMv8-A core), `neon_dotprod` (`sdot`, FEAT_DotProd) and `neon_i8mm`
//! (`smmla`, FEAT_I8MM). All read the file's P16K4 weight layout as stored (a `.q8b` file is the
//! same on every machine); `neon_i8mm` regroups each weight panel into `smmla` operands in a
//! small per-call scratch strip. No +128 offset is needed: every tier multiplies s8 x s8.
//!
//! `sdot`/`smmla` are not stable intrinsics yet, so each is one `asm!` statement in one tiny
//! function (`neon_dotprod::sdot_lane`, `neon_i8mm::smmla`), tested through the kernels against
//! the scalar reference like everything else.

use alloc::vec::Vec;

use super::{aligned_scratch, k_block_groups, m_block_rows, row_blocks, GemmArgs, PANEL};

pub(crate) mod attention_neon;
pub(crate) mod neon;
pub(crate) mod neon_dotprod;
pub(crate) mod neon_i8mm;
pub(crate) mod probe;

/// CPU feature checks: run time with `std` (`getauxval` HWCAPs), compile time without.
pub(crate) mod detect {
    #[cfg(feature = "std")]
    pub(crate) fn dotprod() -> bool {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(feature = "std")]
    pub(crate) fn i8mm() -> bool {
        std::arch::is_aarch64_feature_detected!("i8mm")
    }
    #[cfg(not(feature = "std"))]
    pub(crate) fn dotprod() -> bool {
        cfg!(target_feature = "dotprod")
    }
    #[cfg(not(feature = "std"))]
    pub(crate) fn i8mm() -> bool {
        cfg!(target_feature = "i8mm")
    }
}

/// Packs `rows` rows of A starting at row `i0` for k bytes `[k0, k0 + kc)` (clipped at `k`)
/// as `[k / kb][row][kb bytes]`, so one load of `kb` bytes per row steps through k. Rows
/// `rows..rows_pad` and bytes past `k` are zero (their weights are zero or never read, and a
/// zero row's results are never stored). Only real A bytes are read.
///
/// Returns the bytes written: `kc.div_ceil(kb) * rows_pad * kb`.
#[inline]
pub(crate) fn pack_a_rows(p: &GemmArgs<'_>, i0: usize, rows: usize, rows_pad: usize, k0: usize, kc: usize, kb: usize, dst: &mut [u8]) -> usize {
    let steps = kc.div_ceil(kb);
    let len = steps * rows_pad * kb;
    let dst = &mut dst[..len];
    for r in 0..rows_pad {
        for s in 0..steps {
            let d = &mut dst[(s * rows_pad + r) * kb..(s * rows_pad + r + 1) * kb];
            let ks = k0 + s * kb;
            let n = if r < rows { p.k.saturating_sub(ks).min(kb).min(k0 + kc - ks) } else { 0 };
            if n > 0 {
                let row = &p.a[(i0 + r) * p.a_stride + ks..(i0 + r) * p.a_stride + ks + n];
                for (d, &s) in d.iter_mut().zip(row) {
                    *d = s as u8;
                }
            }
            d[n..].fill(0);
        }
    }
    len
}

/// Where one micro tile writes: `rows` x `cols` int32 at `o` with row stride `os`, either
/// overwriting (first k block) or adding to what is there (later k blocks).
pub(crate) struct OutTile {
    pub o: *mut i32,
    pub os: usize,
    pub rows: usize,
    /// Valid columns, 1..=16 (a partial last panel).
    pub cols: usize,
    pub first: bool,
}

impl OutTile {
    /// Writes (or adds) one row of up to 16 results.
    ///
    /// # Safety
    /// `r < self.rows`; `o + r*os .. + cols` is inside the output and not aliased.
    #[inline(always)]
    pub(crate) unsafe fn put_row(&self, r: usize, v: &[i32; PANEL]) {
        // SAFETY: the caller guarantees row r's `cols` elements are in bounds.
        let dst = unsafe { core::slice::from_raw_parts_mut(self.o.add(r * self.os), self.cols) };
        if self.first {
            dst.copy_from_slice(&v[..self.cols]);
        } else {
            for (d, &x) in dst.iter_mut().zip(v) {
                *d = d.wrapping_add(x);
            }
        }
    }
}

/// k groups per k block: a 16-column panel strip of 256 groups is 16 KiB, half the L1 data
/// cache of the smallest cores targeted (Cortex-A53/A55: 32 KiB; A76/N1/V1: 64 KiB).
const KC_MAX_GROUPS: usize = 256;
/// Packed A block budget: 256 KiB, the L2 of a Cortex-A76/Neoverse N1 core (A55: 64-256 KiB).
const A_BLOCK_BYTES: usize = 1 << 18;

/// One aarch64 tier: its micro tile and how it wants A (and W) laid out.
pub(crate) trait Tier {
    /// Rows per full micro tile, and the smaller tiles for the rest (descending, ending in 1).
    const MR: usize;
    const TAILS: &'static [usize];
    /// A bytes per row per load step ([`pack_a_rows`]'s `kb`).
    const KB: usize;
    /// Row blocks are padded (with zero rows) to a multiple of this.
    const ROW_ALIGN: usize;
    /// Scratch bytes [`Tier::prep_w`] needs for a strip of `kg` groups (0: uses `w` as is).
    fn w_scratch(kg: usize) -> usize;
    /// Turns one panel's strip of `kg` P16K4 groups at `w` into what `micro` reads; returns it.
    ///
    /// # Safety
    /// The CPU has the tier's features; `w` points to `kg` readable 64-byte groups; `buf` holds
    /// `w_scratch(kg)` bytes.
    unsafe fn prep_w(w: *const u8, kg: usize, buf: &mut [u8]) -> *const u8;
    /// `rows` (<= MR, one of MR/TAILS) x 16 columns over `kg` groups.
    ///
    /// # Safety
    /// The CPU has the tier's features; `a` is a block packed by [`pack_a_rows`] with this
    /// tier's `KB` for `rows` (padded) rows and `kg * 4` k bytes; `w` came from `prep_w`;
    /// `t` describes an in-bounds output tile of `rows` rows.
    unsafe fn micro(a: *const u8, w: *const u8, kg: usize, t: &OutTile);
}

/// The blocked driver shared by the tiers: m blocks of packed A (L2), k blocks of one panel
/// strip (L1), micro tiles of `T::MR` rows x 16 columns.
///
/// # Safety
/// The CPU has `T`'s features. `p` and `out` satisfy the bounds checked by
/// `Kernel::gemm_i8_in` (k > 0, m > 0, non-empty column range).
pub(crate) unsafe fn gemm<T: Tier>(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let kcg = k_block_groups(p.k4, KC_MAX_GROUPS);
    let a_row_max = (kcg * 4).next_multiple_of(T::KB);
    let mc_max = m_block_rows(p.m, a_row_max, A_BLOCK_BYTES, T::MR);
    // One extra row for a padded odd tail block; W strip after A, 64-byte aligned.
    let a_len = ((mc_max + T::ROW_ALIGN) * a_row_max).next_multiple_of(64);
    let buf = aligned_scratch(scratch, a_len + T::w_scratch(kcg));
    let (abuf, wbuf) = buf.split_at_mut(a_len);
    let mut blocks = Vec::with_capacity(mc_max / T::MR + T::TAILS.len() * 2);
    let mut offsets = Vec::with_capacity(blocks.capacity());
    let wps = p.k4 * 64;
    assert!(p.w.len() >= p.n_end.div_ceil(PANEL) * wps && p.wsum.len() >= p.n_end);
    assert!(out.len() >= (p.m - 1) * p.out_stride + p.n_end);
    let out_ptr = out.as_mut_ptr();

    let mut i0 = 0;
    while i0 < p.m {
        let mc = (p.m - i0).min(mc_max);
        row_blocks(mc, T::MR, T::TAILS, &mut blocks);
        let mut g0 = 0;
        while g0 < p.k4 {
            let kg = (p.k4 - g0).min(kcg);
            offsets.clear();
            let mut off = 0;
            for &(r0, rows) in &blocks {
                offsets.push(off);
                off += pack_a_rows(p, i0 + r0, rows, rows.next_multiple_of(T::ROW_ALIGN), g0 * 4, kg * 4, T::KB, &mut abuf[off..]);
            }
            let mut j = p.n_begin;
            while j < p.n_end {
                // SAFETY: panel j/16 < ceil(n_end/16) and groups g0..g0+kg < k4: inside `w`
                // (asserted above); the tier's features are the caller's promise.
                let w = unsafe { T::prep_w(p.w.as_ptr().add((j / PANEL) * wps + g0 * 64), kg, wbuf) };
                for (&(r0, rows), &off) in blocks.iter().zip(&offsets) {
                    let t = OutTile {
                        // SAFETY: row i0 + r0 < m and column j < n_end: inside `out`.
                        o: unsafe { out_ptr.add((i0 + r0) * p.out_stride + j) },
                        os: p.out_stride,
                        rows,
                        cols: (p.n_end - j).min(PANEL),
                        first: g0 == 0,
                    };
                    // SAFETY: the block was packed at `off` for `rows` rows and kg groups; the
                    // tile's rows and columns are inside `out` (asserted above).
                    unsafe { T::micro(abuf.as_ptr().add(off), w, kg, &t) };
                }
                j += PANEL;
            }
            g0 += kg;
        }
        i0 += mc;
    }
}
