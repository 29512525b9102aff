//! AMX-INT8 kernel: `tdpbssd` (s8 x s8 -> i32, wrapping like every other kernel) on tiles of
//! 16 rows x 64 bytes.
//!
//! The P16K4 weight layout already is AMX's B-tile layout: 16 consecutive k-groups of one panel
//! are 16 rows of 64 bytes (16 columns x 4 k), contiguous, so weights load straight from the
//! model file. A is packed per block of rows into `[tile row][chunk][16 rows][64 B]`, zero
//! padded to whole tiles and 64-byte chunks, so every tile is a full 16 x 64 load with stride 64
//! and one tile configuration serves the whole call. Four accumulator tiles hold a 32 x 32
//! block of the output (2 A tiles x 2 B tiles per 64 k). Signed x signed needs neither the
//! +128 activation offset nor the weight sums of the VNNI kernels.
//!
//! Stable Rust has no AMX intrinsics yet, so the tile instructions are `asm!` with fixed tile
//! registers: tmm0-3 accumulators, tmm4-5 A, tmm6-7 B. Nothing else in the program uses tiles.

use core::arch::asm;

use alloc::vec::Vec;

use super::super::{aligned_scratch, GemmArgs, PANEL};

/// Rows of one tile (and of one A or C tile row).
const TILE_ROWS: usize = 16;
/// Bytes of one full tile (16 rows x 64 bytes).
const TILE_BYTES: usize = 1024;
/// Packed A block budget: half of a 2 MiB L2, the weights stream through the rest.
const A_BLOCK_BYTES: usize = 1 << 20;

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
/// checked by `Kernel::gemm_i8_with_scratch` (k > 0, m > 0, non-empty column range).
pub(crate) unsafe fn gemm(p: &GemmArgs<'_>, out: &mut [i32], scratch: &mut Vec<u8>) {
    let chunks = p.k.div_ceil(64);
    let tile_row_bytes = chunks * TILE_BYTES; // one packed A tile row: 16 rows x all chunks
    let mc_max = ((A_BLOCK_BYTES / tile_row_bytes / 2).max(1) * 2 * TILE_ROWS).min(p.m.div_ceil(TILE_ROWS) * TILE_ROWS);
    // Groups in the last chunk of each panel; when short, that chunk is copied into zeroed
    // scratch so a tile load never reads past the panel's end (the last panel ends `w`).
    let tail_groups = p.k4 % 16;
    let buf = aligned_scratch(scratch, mc_max.div_ceil(TILE_ROWS) * tile_row_bytes + 2 * TILE_BYTES);
    let (abuf, btail) = buf.split_at_mut(mc_max.div_ceil(TILE_ROWS) * tile_row_bytes);
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
        pack_a(p, i0, mc, chunks, abuf);
        let mut j = p.n_begin;
        while j < p.n_end {
            let panels = (p.n_end - j).div_ceil(PANEL).min(2);
            let w_strip = &p.w[(j / PANEL) * wps..];
            if tail_groups != 0 {
                for q in 0..panels {
                    let src = &w_strip[q * wps + (chunks - 1) * TILE_BYTES..][..tail_groups * 64];
                    let dst = &mut btail[q * TILE_BYTES..(q + 1) * TILE_BYTES];
                    dst[..src.len()].copy_from_slice(src);
                    dst[src.len()..].fill(0);
                }
            }
            let b_chunk = |q: usize, c: usize| -> *const u8 {
                if tail_groups != 0 && c == chunks - 1 {
                    btail[q * TILE_BYTES..].as_ptr()
                } else {
                    w_strip[q * wps + c * TILE_BYTES..][..TILE_BYTES].as_ptr()
                }
            };
            let mut t = 0;
            while t < tile_rows {
                let two_rows = t + 1 < tile_rows;
                let a0 = abuf[t * tile_row_bytes..].as_ptr();
                let a1 = abuf[(t + 1).min(tile_rows - 1) * tile_row_bytes..].as_ptr();
                // SAFETY: AMX is configured; every load reads one full tile inside `abuf`
                // (tile rows t, t+1 < tile_rows, chunk c < chunks) or inside one panel's groups
                // of `w` / `btail` (b_chunk); stores go to `staging` or, for full tiles, to
                // 16 rows x 16 columns of `out` that the caller's bounds cover.
                unsafe {
                    tilezero!("0");
                    tilezero!("1");
                    tilezero!("2");
                    tilezero!("3");
                    for c in 0..chunks {
                        tileload!("4", a0.add(c * TILE_BYTES), 64usize);
                        tileload!("6", b_chunk(0, c), 64usize);
                        tdpbssd!("0", "4", "6");
                        if two_rows {
                            tileload!("5", a1.add(c * TILE_BYTES), 64usize);
                            tdpbssd!("2", "5", "6");
                        }
                        if panels == 2 {
                            tileload!("7", b_chunk(1, c), 64usize);
                            tdpbssd!("1", "4", "7");
                            if two_rows {
                                tdpbssd!("3", "5", "7");
                            }
                        }
                    }
                }
                for (rt, q) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    if (rt == 1 && !two_rows) || q >= panels {
                        continue;
                    }
                    let r0 = (t + rt) * TILE_ROWS; // within the block
                    let rows = (mc - r0).min(TILE_ROWS);
                    let col = j + q * PANEL;
                    let cols = (p.n_end - col).min(PANEL);
                    let o = (i0 + r0) * p.out_stride + col;
                    if rows == TILE_ROWS && cols == PANEL {
                        let dst = out[o..o + (TILE_ROWS - 1) * p.out_stride + PANEL].as_mut_ptr();
                        // SAFETY: 16 rows of 16 i32 at stride out_stride lie in the slice above.
                        unsafe { store_tile(rt * 2 + q, dst, p.out_stride * 4) };
                    } else {
                        // SAFETY: `staging` is 16 rows x 64 bytes.
                        unsafe { store_tile(rt * 2 + q, staging.0.as_mut_ptr(), PANEL * 4) };
                        for r in 0..rows {
                            let dst = o + r * p.out_stride;
                            out[dst..dst + cols].copy_from_slice(&staging.0[r * PANEL..r * PANEL + cols]);
                        }
                    }
                }
                t += 2;
            }
            j += 2 * PANEL;
        }
        i0 += mc;
    }
    // SAFETY: releases this thread's tile state (AMX available, fn contract).
    unsafe { asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
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

/// Packs rows `i0..i0 + mc` of A into `[tile row][chunk][16 rows][64 B]`, zero padded (rows up
/// to whole tiles, bytes up to whole chunks). Reads only the `k` real bytes of each row.
fn pack_a(p: &GemmArgs<'_>, i0: usize, mc: usize, chunks: usize, dst: &mut [u8]) {
    let tile_rows = mc.div_ceil(TILE_ROWS);
    for r in 0..tile_rows * TILE_ROWS {
        let (t, rr) = (r / TILE_ROWS, r % TILE_ROWS);
        let row = (r < mc).then(|| &p.a[(i0 + r) * p.a_stride..(i0 + r) * p.a_stride + p.k]);
        for c in 0..chunks {
            let d = &mut dst[(t * chunks + c) * TILE_BYTES + rr * 64..][..64];
            match row {
                Some(row) => {
                    let src = &row[c * 64..row.len().min(c * 64 + 64)];
                    for (d, &s) in d.iter_mut().zip(src) {
                        *d = s as u8;
                    }
                    d[src.len()..].fill(0);
                }
                None => d.fill(0),
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
