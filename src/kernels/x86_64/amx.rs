//! AMX-INT8 kernel: `tdpbssd` (s8 x s8 -> i32, wrapping like every other kernel) on tiles of
//! 16 rows x 64 bytes.
//!
//! The P16K4 weight layout already is AMX's B-tile layout: 16 consecutive k-groups of one panel
//! are 16 rows of 64 bytes (16 columns x 4 k), contiguous, so weights load straight from the
//! model file, and A tiles load in place (16 rows at A's row stride); only the edges (a last
//! partial tile row, a k tail short of 64 bytes) are copied into zero-padded scratch tiles, so
//! every tile is a full 16 x 64 load and one tile configuration serves the whole call. Four accumulator tiles hold a 32 x 32
//! block of the output (2 A tiles x 2 B tiles per 64 k). Signed x signed needs neither the
//! +128 activation offset nor the weight sums of the VNNI kernels.
//!
//! Stable Rust has no AMX intrinsics yet, so the tile instructions are `asm!` with fixed tile
//! registers: tmm0-3 accumulators, tmm4-5 A, tmm6-7 B. Nothing else in the program uses tiles.

use core::arch::asm;
use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};

use alloc::vec::Vec;

use super::super::{aligned_scratch, GemmArgs, PANEL};

/// Rows of one tile (and of one A or C tile row).
const TILE_ROWS: usize = 16;
/// Bytes of one full tile (16 rows x 64 bytes).
const TILE_BYTES: usize = 1024;
/// A block budget: half of a 2 MiB L2.
const A_BLOCK_BYTES: usize = 1 << 20;
/// Chunks (64 k each) per k block: BERT's whole K (up to 3072), so partial sums never go back
/// through memory (12 chunks, an L1-sized A slice, was 0.8x as fast at K = 3072).
const KC_MAX_CHUNKS: usize = 48;
/// Weights of a column block: in L2 beside A, the accumulators, and the next block, which is
/// prefetched while this one is multiplied.
const W_BLOCK_BYTES: usize = 384 << 10;
/// Panels per column block at most (bounds the weight-tail scratch at 128 KiB).
const NB_MAX_PANELS: usize = 128;

/// `ldtilecfg` operand: palette 1, all eight tiles 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const FULL: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64; // bytes per row (u16, little endian)
            c[48 + t] = TILE_ROWS as u8; // rows
            t += 1;
        }
        TileConfig(c)
    };
}

/// Zeroes tile `$t`.
macro_rules! tilezero {
    ($t:literal) => {
        asm!(concat!("tilezero tmm", $t), options(nostack, nomem, preserves_flags))
    };
}
/// Loads tile `$t` from 16 rows of 64 bytes at `$ptr`, `$stride` bytes apart.
macro_rules! tileload {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride,
            options(nostack, readonly, preserves_flags))
    };
}
/// Stores tile `$t` to 16 rows of 64 bytes at `$ptr`, `$stride` bytes apart.
macro_rules! tilestore {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $ptr, s = in(reg) $stride,
            options(nostack, preserves_flags))
    };
}
/// `tmm$c += tmm$a (16 x 64 s8) * tmm$b (16 groups x 16 columns x 4 s8)`.
macro_rules! tdpbssd {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem, preserves_flags))
    };
}

/// # Safety
/// The CPU must support AMX-TILE and AMX-INT8 and the OS must have granted this process the
/// tile data state (checked by `detect::amx_int8`). `p` and `out` must satisfy the bounds
/// checked by `Kernel::gemm_i8_in` (k > 0, m > 0, non-empty column range).
pub(crate) unsafe fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let chunks = p.k.div_ceil(64);
    let full_chunks = p.k / 64;
    // Loop nest: M block (A in L2) > k block > column block (its weights in L2) > tile-row
    // pair (its A slice in L1, reused by every strip) > 32-column strip > chunk. Tile loads
    // straight from L2 leave the tile unit waiting; from L1 they keep up.
    let mc_max = ((A_BLOCK_BYTES / p.k / (2 * TILE_ROWS)).max(1) * 2 * TILE_ROWS).min(p.m.div_ceil(TILE_ROWS) * TILE_ROWS);
    let kc_max = KC_MAX_CHUNKS.min(chunks);
    let nb_panels = (W_BLOCK_BYTES / (kc_max * TILE_BYTES)).clamp(2, NB_MAX_PANELS) & !1;
    // Groups in the last chunk of each panel; when short, that chunk is copied into zeroed
    // scratch so a tile load never reads past the panel's end (the last panel ends `w`).
    let tail_groups = p.k4 % 16;
    // Scratch: the k-tail chunk of each tile row of a block, the partial last tile row (all
    // chunks), and the weight tail chunks of a column block. The rest loads in place. At most
    // (m + 16) x 64-padded k bytes plus 64 per column (bert::working_memory counts on it).
    let tails_len = mc_max / TILE_ROWS * TILE_BYTES;
    let partial_len = chunks * TILE_BYTES;
    let btail_len = if tail_groups != 0 { nb_panels.min((p.n_end - p.n_begin).div_ceil(PANEL)) * TILE_BYTES } else { 0 };
    let buf = aligned_scratch(scratch, tails_len + partial_len + btail_len);
    let (a_tails, rest) = buf.split_at_mut(tails_len);
    let (a_partial, btail) = rest.split_at_mut(partial_len);
    let wps = p.k4 * 64; // bytes between consecutive panels
    debug_assert!(p.w.len() >= p.n_end.div_ceil(PANEL) * wps);
    debug_assert!(out.len() >= (p.m - 1) * p.out_stride + p.n_end);
    let mut staging = Staging([0; TILE_ROWS * PANEL]);

    // SAFETY: AMX is available (fn contract); the config is 64 aligned bytes.
    unsafe { asm!("ldtilecfg [{c}]", c = in(reg) TileConfig::FULL.0.as_ptr(), options(nostack, readonly, preserves_flags)) };
    let mut i0 = 0;
    while i0 < p.m {
        let mc = (p.m - i0).min(mc_max);
        let tile_rows = mc.div_ceil(TILE_ROWS);
        let full_rows = mc / TILE_ROWS;
        pack_edges(p, i0, mc, a_tails, a_partial);
        let (a_tails, a_partial) = (&*a_tails, &*a_partial);
        // A tile (tile row t of the block, chunk c): base pointer and row stride.
        let a_tile = |t: usize, c: usize| -> (*const u8, usize) {
            if t >= full_rows {
                (a_partial[c * TILE_BYTES..][..TILE_BYTES].as_ptr(), 64)
            } else if c >= full_chunks {
                (a_tails[t * TILE_BYTES..][..TILE_BYTES].as_ptr(), 64)
            } else {
                // 16 whole rows (i0 + 16t + 15 < m) and 64 bytes below k <= a_stride.
                let first = (i0 + t * TILE_ROWS) * p.a_stride + c * 64;
                (p.a[first..first + (TILE_ROWS - 1) * p.a_stride + 64].as_ptr().cast(), p.a_stride)
            }
        };
        let mut c0 = 0;
        while c0 < chunks {
            let c1 = (c0 + kc_max).min(chunks);
            let first_k = c0 == 0;
            let mut jb = p.n_begin;
            while jb < p.n_end {
                let je = (jb + nb_panels * PANEL).min(p.n_end);
                let w_block = &p.w[(jb / PANEL) * wps..];
                let with_tail = tail_groups != 0 && c1 == chunks;
                if with_tail {
                    for q in 0..(je - jb).div_ceil(PANEL) {
                        let src = &w_block[q * wps + (chunks - 1) * TILE_BYTES..][..tail_groups * 64];
                        let dst = &mut btail[q * TILE_BYTES..(q + 1) * TILE_BYTES];
                        dst[..src.len()].copy_from_slice(src);
                        dst[src.len()..].fill(0);
                    }
                }
                let btail = &*btail;
                // Prefetch (into L2) the weights the next column block will read, spread over
                // this block's chunk steps: a block streams from memory while the previous one
                // is multiplied from L2.
                // (Only when the k block is all of K: then a block's weights are contiguous.)
                let next_block = if je < p.n_end && c1 - c0 == chunks {
                    let ne = (je + nb_panels * PANEL).min(p.n_end);
                    (je / PANEL) * wps..ne.div_ceil(PANEL) * wps
                } else {
                    0..0
                };
                let pf_all = next_block.len() / 64;
                let steps = tile_rows.div_ceil(2) * (je - jb).div_ceil(2 * PANEL) * (c1 - c0);
                let pf_per_step = pf_all.div_ceil(steps.max(1));
                let mut pf_next = 0usize;
                // B tile: panel q of the column block, chunk c.
                let b_tile = |q: usize, c: usize| -> *const u8 {
                    if with_tail && c == chunks - 1 {
                        btail[q * TILE_BYTES..][..TILE_BYTES].as_ptr()
                    } else {
                        w_block[q * wps + c * TILE_BYTES..][..TILE_BYTES].as_ptr()
                    }
                };
                let mut t = 0;
                while t < tile_rows {
                    let two_rows = t + 1 < tile_rows;
                    let mut j = jb;
                    while j < je {
                        let panels = (je - j).div_ceil(PANEL).min(2);
                        let q0 = (j - jb) / PANEL;
                        let tiles = Tiles { i0, t, two_rows, mc, j, panels };
                        if first_k {
                            // SAFETY: AMX is configured.
                            unsafe {
                                tilezero!("0");
                                tilezero!("1");
                                tilezero!("2");
                                tilezero!("3");
                            }
                        } else {
                            tiles.load(p, out, &mut staging);
                        }
                        // SAFETY: AMX is configured; every load reads one whole tile that
                        // `a_tile` / `b_tile` took from a bounds-checked slice.
                        unsafe {
                            for c in c0..c1 {
                                let pf_end = (pf_next + pf_per_step).min(pf_all);
                                while pf_next < pf_end {
                                    // A hint: any address is allowed; this one is inside `w`.
                                    _mm_prefetch::<_MM_HINT_T1>(p.w[next_block.start + pf_next * 64..].as_ptr().cast());
                                    pf_next += 1;
                                }
                                // This order frees tmm4 (the next chunk's first load) after
                                // the second product, so that load overlaps the last two.
                                let (a0, sa0) = a_tile(t, c);
                                tileload!("4", a0, sa0);
                                tileload!("6", b_tile(q0, c), 64usize);
                                tdpbssd!("0", "4", "6");
                                if panels == 2 {
                                    tileload!("7", b_tile(q0 + 1, c), 64usize);
                                    tdpbssd!("1", "4", "7");
                                }
                                if two_rows {
                                    let (a1, sa1) = a_tile(t + 1, c);
                                    tileload!("5", a1, sa1);
                                    tdpbssd!("2", "5", "6");
                                    if panels == 2 {
                                        tdpbssd!("3", "5", "7");
                                    }
                                }
                            }
                        }
                        tiles.store(p, out, &mut staging);
                        j += 2 * PANEL;
                    }
                    t += 2;
                }
                jb = je;
            }
            c0 = c1;
        }
        i0 += mc;
    }
    // SAFETY: releases this thread's tile state (AMX available, fn contract).
    unsafe { asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
}

/// The (up to) 2 x 2 output tiles of one tile-row pair and strip, in tmm0-3 (row-major).
struct Tiles {
    i0: usize,
    /// First tile row of the pair, within the M block.
    t: usize,
    two_rows: bool,
    /// Rows of the M block.
    mc: usize,
    /// First column of the strip.
    j: usize,
    panels: usize,
}

impl Tiles {
    /// Calls `f(tile, first out index, rows, cols)` for each tile that exists.
    fn each(&self, p: &GemmArgs<'_>, mut f: impl FnMut(usize, usize, usize, usize)) {
        for (rt, q) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            if (rt == 1 && !self.two_rows) || q >= self.panels {
                continue;
            }
            let r0 = (self.t + rt) * TILE_ROWS;
            let col = self.j + q * PANEL;
            f(rt * 2 + q, (self.i0 + r0) * p.out_stride + col, (self.mc - r0).min(TILE_ROWS), (p.n_end - col).min(PANEL));
        }
    }

    /// tmm0-3 <- the partial sums in `out`.
    fn load(&self, p: &GemmArgs<'_>, out: &[i32], staging: &mut Staging) {
        self.each(p, |tile, o, rows, cols| {
            if rows == TILE_ROWS && cols == PANEL {
                let src = out[o..o + (TILE_ROWS - 1) * p.out_stride + PANEL].as_ptr();
                // SAFETY: AMX configured; 16 rows of 16 i32 at stride out_stride lie in `src`'s slice.
                unsafe { load_tile(tile, src, p.out_stride * 4) };
            } else {
                staging.0.fill(0);
                for r in 0..rows {
                    staging.0[r * PANEL..r * PANEL + cols].copy_from_slice(&out[o + r * p.out_stride..][..cols]);
                }
                // SAFETY: AMX configured; `staging` is 16 rows x 64 bytes.
                unsafe { load_tile(tile, staging.0.as_ptr(), PANEL * 4) };
            }
        });
    }

    /// `out` <- tmm0-3 (only the real rows and columns).
    fn store(&self, p: &GemmArgs<'_>, out: &mut [i32], staging: &mut Staging) {
        self.each(p, |tile, o, rows, cols| {
            if rows == TILE_ROWS && cols == PANEL {
                let dst = out[o..o + (TILE_ROWS - 1) * p.out_stride + PANEL].as_mut_ptr();
                // SAFETY: 16 rows of 16 i32 at stride out_stride lie in the slice above.
                unsafe { store_tile(tile, dst, p.out_stride * 4) };
            } else {
                // SAFETY: `staging` is 16 rows x 64 bytes.
                unsafe { store_tile(tile, staging.0.as_mut_ptr(), PANEL * 4) };
                for r in 0..rows {
                    out[o + r * p.out_stride..][..cols].copy_from_slice(&staging.0[r * PANEL..r * PANEL + cols]);
                }
            }
        });
    }
}

/// Loads accumulator tile `t` (0-3).
///
/// # Safety
/// AMX configured; `src` valid for 16 rows of 64 bytes at `stride` bytes.
#[inline(always)]
unsafe fn load_tile(t: usize, src: *const i32, stride: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match t {
            0 => tileload!("0", src, stride),
            1 => tileload!("1", src, stride),
            2 => tileload!("2", src, stride),
            _ => tileload!("3", src, stride),
        }
    }
}

/// One output tile in memory.
#[repr(C, align(64))]
struct Staging([i32; TILE_ROWS * PANEL]);

/// Stores accumulator tile `t` (0-3).
///
/// # Safety
/// AMX configured; `dst` valid for 16 rows of 64 bytes at `stride` bytes.
#[inline(always)]
unsafe fn store_tile(t: usize, dst: *mut i32, stride: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match t {
            0 => tilestore!("0", dst, stride),
            1 => tilestore!("1", dst, stride),
            2 => tilestore!("2", dst, stride),
            _ => tilestore!("3", dst, stride),
        }
    }
}

/// Packs the parts of rows `i0..i0 + mc` of A that cannot be loaded in place, zero padded to
/// whole 16 x 64-byte tiles: the k-tail chunk (`k % 64` bytes) of each whole tile row into
/// `tails[t]`, and every chunk of a last, partial tile row into `partial[c]`. Reads only the
/// `k` real bytes of each row.
fn pack_edges(p: &GemmArgs<'_>, i0: usize, mc: usize, tails: &mut [u8], partial: &mut [u8]) {
    let full_rows = mc / TILE_ROWS;
    let full_chunks = p.k / 64;
    let row = |r: usize| &p.a[(i0 + r) * p.a_stride..(i0 + r) * p.a_stride + p.k];
    let put = |d: &mut [u8], src: &[i8]| {
        for (d, &s) in d.iter_mut().zip(src) {
            *d = s as u8;
        }
        d[src.len()..].fill(0);
    };
    if full_chunks < p.k.div_ceil(64) {
        for r in 0..full_rows * TILE_ROWS {
            let d = &mut tails[(r / TILE_ROWS) * TILE_BYTES + (r % TILE_ROWS) * 64..][..64];
            put(d, &row(r)[full_chunks * 64..]);
        }
    }
    if !mc.is_multiple_of(TILE_ROWS) {
        for rr in 0..TILE_ROWS {
            let r = full_rows * TILE_ROWS + rr;
            for c in 0..p.k.div_ceil(64) {
                let d = &mut partial[c * TILE_BYTES + rr * 64..][..64];
                if r < mc {
                    put(d, &row(r)[c * 64..p.k.min(c * 64 + 64)]);
                } else {
                    d.fill(0);
                }
            }
        }
    }
}

/// Peak probe: `tdpbssd` into 6 independent accumulator tiles, register operands only.
/// Returns int8 ops executed (2 per MAC; 16 x 16 x 64 MACs per instruction).
///
/// # Safety
/// As for [`gemm`]: AMX-TILE/INT8 present and permitted.
pub(crate) unsafe fn probe(iters: u64) -> u64 {
    const UNROLL: u64 = 6;
    // SAFETY: AMX available (fn contract); tiles 6 and 7 are zeroed operands.
    unsafe {
        asm!("ldtilecfg [{c}]", c = in(reg) TileConfig::FULL.0.as_ptr(), options(nostack, readonly, preserves_flags));
        tilezero!("6");
        tilezero!("7");
        for _ in 0..core::hint::black_box(iters) {
            tdpbssd!("0", "6", "7");
            tdpbssd!("1", "6", "7");
            tdpbssd!("2", "6", "7");
            tdpbssd!("3", "6", "7");
            tdpbssd!("4", "6", "7");
            tdpbssd!("5", "6", "7");
        }
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
    iters * UNROLL * (TILE_ROWS * PANEL * 64 * 2) as u64
}
