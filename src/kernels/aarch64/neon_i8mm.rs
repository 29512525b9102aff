//! Int8 matrix-multiply tier (FEAT_I8MM, ARMv8.6: Neoverse V1/N2/V2 = Graviton 3/4, Apple M2+).
//!
//! `smmla vd.4s, vn.16b, vm.16b` adds the 2x2 product of two 2x8 int8 matrices:
//! `d[2i+j] += sum_{k<8} n[8i+k] * m[8j+k]`, 32 multiply-adds per instruction. Its second operand
//! must hold two output columns x 8 consecutive k, while a P16K4 group holds 4 k per column. The
//! file format stays the contract (a `.q8b` is the same on every machine), so instead of a second
//! layout on disk, each 16-column strip of weights (at most 256 groups, 16 KiB) is regrouped per
//! call into a scratch strip by `zip1`/`zip2` of two consecutive groups, and reused by every row
//! tile of the m block. That costs ~3 instructions per 16 weight bytes once per m block, against
//! m/2 `smmla` per 16 weight bytes (docs/ARM64.md).
//!
//! Micro tile: 10 rows x 8 columns = 5 row pairs x 4 column pairs = 20 accumulators (with the 5
//! A operands and 2 W operands in flight: 27 of the 32 registers; 12 rows spilled); per 8 k it
//! loads 80 bytes of A and 64 bytes of regrouped W and issues 20 `smmla`s. A 16-column panel is
//! two such tiles (the A block stays in L1 between them).

use core::arch::aarch64::*;
use core::arch::asm;

use super::{OutTile, Tier, PANEL};

pub(crate) struct NeonI8mm;

/// `acc += n * m^T` over 2x8 int8 matrices (rows of 8 bytes), int32 2x2 result: one `smmla`.
#[target_feature(enable = "neon,i8mm")]
#[inline]
pub(crate) fn smmla(acc: int32x4_t, n: int8x16_t, m: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only arithmetic; FEAT_I8MM is enabled for this function and callers
    // can only run it where it was detected.
    unsafe {
        asm!("smmla {acc:v}.4s, {n:v}.16b, {m:v}.16b",
             acc = inout(vreg) acc, n = in(vreg) n, m = in(vreg) m,
             options(pure, nomem, nostack, preserves_flags));
    }
    acc
}

/// Regroups one panel's `kg` P16K4 groups into `smmla` operands: `[half][kg/2][4][16 bytes]`,
/// operand (half h, step t, pair q) = columns `8h+2q`, `8h+2q+1` x k `8t..8t+8` (rows of 8
/// bytes). For odd `kg` the last step's second group is zero.
///
/// # Safety
/// `w` points to `kg * 64` readable bytes; `buf` holds `kg.div_ceil(2) * 128` bytes.
#[target_feature(enable = "neon,i8mm")]
unsafe fn regroup(w: *const u8, kg: usize, buf: &mut [u8]) -> *const u8 {
    let steps = kg.div_ceil(2);
    assert!(buf.len() >= steps * 128);
    let (w, dst) = (w.cast::<i8>(), buf.as_mut_ptr().cast::<i8>());
    for t in 0..steps {
        // SAFETY: groups 2t and 2t+1 < kg are inside `w`; the stores are inside `buf` (asserted).
        unsafe {
            let g0 = vld1q_s8_x4(w.add(2 * t * 64));
            let g1 = if 2 * t + 1 < kg { vld1q_s8_x4(w.add((2 * t + 1) * 64)) } else { int8x16x4_t(vdupq_n_s8(0), vdupq_n_s8(0), vdupq_n_s8(0), vdupq_n_s8(0)) };
            // Register c of a group holds columns 4c..4c+3 x 4 k; zipping its 32-bit lanes with
            // the next group's gives columns (4c, 4c+1) and (4c+2, 4c+3) x 8 k.
            let pair = |a: int8x16_t, b: int8x16_t| {
                let (a, b) = (vreinterpretq_s32_s8(a), vreinterpretq_s32_s8(b));
                (vreinterpretq_s8_s32(vzip1q_s32(a, b)), vreinterpretq_s8_s32(vzip2q_s32(a, b)))
            };
            let (p0, p1) = pair(g0.0, g1.0);
            let (p2, p3) = pair(g0.1, g1.1);
            let (p4, p5) = pair(g0.2, g1.2);
            let (p6, p7) = pair(g0.3, g1.3);
            vst1q_s8_x4(dst.add(t * 64), int8x16x4_t(p0, p1, p2, p3));
            vst1q_s8_x4(dst.add((steps + t) * 64), int8x16x4_t(p4, p5, p6, p7));
        }
    }
    buf.as_ptr()
}

/// One 8-column half of the full-height tile (10 rows = 5 row pairs x 4 column pairs) over
/// `steps` steps of 8 k, as one assembly loop: the compiled intrinsics loop loads with 32-byte
/// `ldp`s and adds its pointers by hand (0.78 of `smmla`'s ideal, docs/ARM64.md); here each step
/// is three post-indexed loads (`ld1` of four registers = 64 bytes of A, 64 bytes of W; `ldr` of
/// the fifth A register) and 20 `smmla`, four steps per iteration: 80 `smmla` of 94 instructions.
/// Accumulator (row pair rp, column pair q) lives in v(8 + 4 rp + q); A in v0-v4, W in v28-v31.
///
/// # Safety
/// FEAT_I8MM; `a` holds `steps * 80` readable bytes, `w` `steps * 64`.
#[target_feature(enable = "neon,i8mm")]
unsafe fn half_10x8(a: *const i8, w: *const i8, steps: usize) -> [[int32x4_t; 4]; 5] {
    macro_rules! step {
        () => {
            concat!(
            "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{a}], #64\n",
            "ld1 {{v28.16b, v29.16b, v30.16b, v31.16b}}, [{w}], #64\n",
            "ldr q4, [{a}], #16\n",
            "smmla v8.4s, v0.16b, v28.16b\n",
            "smmla v12.4s, v1.16b, v28.16b\n",
            "smmla v16.4s, v2.16b, v28.16b\n",
            "smmla v20.4s, v3.16b, v28.16b\n",
            "smmla v24.4s, v4.16b, v28.16b\n",
            "smmla v9.4s, v0.16b, v29.16b\n",
            "smmla v13.4s, v1.16b, v29.16b\n",
            "smmla v17.4s, v2.16b, v29.16b\n",
            "smmla v21.4s, v3.16b, v29.16b\n",
            "smmla v25.4s, v4.16b, v29.16b\n",
            "smmla v10.4s, v0.16b, v30.16b\n",
            "smmla v14.4s, v1.16b, v30.16b\n",
            "smmla v18.4s, v2.16b, v30.16b\n",
            "smmla v22.4s, v3.16b, v30.16b\n",
            "smmla v26.4s, v4.16b, v30.16b\n",
            "smmla v11.4s, v0.16b, v31.16b\n",
            "smmla v15.4s, v1.16b, v31.16b\n",
            "smmla v19.4s, v2.16b, v31.16b\n",
            "smmla v23.4s, v3.16b, v31.16b\n",
            "smmla v27.4s, v4.16b, v31.16b\n")
        };
    }
    let mut acc = [[vdupq_n_s32(0); 4]; 5];
    // SAFETY: reads `steps` steps of 80 bytes from `a` and 64 from `w` (the caller's promise),
    // post-incrementing private copies of the pointers; writes only registers named here (the
    // compiler saves the callee-saved v8-v15 it is told are outputs); `subs` sets the flags.
    unsafe {
        asm!(
            "movi v8.4s, #0", "movi v9.4s, #0", "movi v10.4s, #0", "movi v11.4s, #0",
            "movi v12.4s, #0", "movi v13.4s, #0", "movi v14.4s, #0", "movi v15.4s, #0",
            "movi v16.4s, #0", "movi v17.4s, #0", "movi v18.4s, #0", "movi v19.4s, #0",
            "movi v20.4s, #0", "movi v21.4s, #0", "movi v22.4s, #0", "movi v23.4s, #0",
            "movi v24.4s, #0", "movi v25.4s, #0", "movi v26.4s, #0", "movi v27.4s, #0",
            "cbz {n4}, 2f",
            "1:",
            step!(), step!(), step!(), step!(),
            "subs {n4}, {n4}, #1",
            "b.ne 1b",
            "2:",
            "cbz {n1}, 4f",
            "3:",
            step!(),
            "subs {n1}, {n1}, #1",
            "b.ne 3b",
            "4:",
            a = inout(reg) a => _,
            w = inout(reg) w => _,
            n4 = inout(reg) steps / 4 => _,
            n1 = inout(reg) steps % 4 => _,
            out("v8") acc[0][0],
            out("v9") acc[0][1],
            out("v10") acc[0][2],
            out("v11") acc[0][3],
            out("v12") acc[1][0],
            out("v13") acc[1][1],
            out("v14") acc[1][2],
            out("v15") acc[1][3],
            out("v16") acc[2][0],
            out("v17") acc[2][1],
            out("v18") acc[2][2],
            out("v19") acc[2][3],
            out("v20") acc[3][0],
            out("v21") acc[3][1],
            out("v22") acc[3][2],
            out("v23") acc[3][3],
            out("v24") acc[4][0],
            out("v25") acc[4][1],
            out("v26") acc[4][2],
            out("v27") acc[4][3],
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack, readonly),
        );
    }
    acc
}

/// 2*RP rows x 16 columns (two 8-column halves) over `steps` steps of 8 k.
/// A: `[steps][RP][2 rows x 8 bytes]`; W: from [`regroup`].
///
/// # Safety
/// FEAT_I8MM; `a` holds `steps * RP * 16` bytes, `w` `steps * 128`; `t` in bounds, t.rows
/// <= 2*RP rows.
#[target_feature(enable = "neon,i8mm")]
unsafe fn micro<const RP: usize>(a: *const u8, w: *const u8, steps: usize, t: &OutTile) {
    let mut rows = [[[0i32; PANEL]; 2]; RP];
    for h in 0..2 {
        if RP == 5 {
            // SAFETY: the full-height tile: `a` holds steps * 80 bytes, this half of `w` steps * 64.
            let full = unsafe { half_10x8(a.cast::<i8>(), w.cast::<i8>().add(h * steps * 64), steps) };
            store_half(&mut rows, &core::array::from_fn(|rp| full[rp]), h);
            continue;
        }
        let mut acc = [[vdupq_n_s32(0); 4]; RP];
        // SAFETY (loads): per step RP*16 bytes of A and 64 bytes of this half's W, within the
        // sizes promised by the caller.
        let (mut ap, mut wp) = (a.cast::<i8>(), unsafe { w.cast::<i8>().add(h * steps * 64) });
        // One step: the RP A operands stay in registers while each pair of W operands is
        // loaded and used by every row pair.
        let step = |acc: &mut [[int32x4_t; 4]; RP], ap: *const i8, wp: *const i8| {
            let av: [int8x16_t; RP] = core::array::from_fn(|rp| unsafe { vld1q_s8(ap.add(rp * 16)) });
            for q in [0, 2] {
                let (w0, w1) = unsafe { (vld1q_s8(wp.add(q * 16)), vld1q_s8(wp.add(q * 16 + 16))) };
                for (acc, &av) in acc.iter_mut().zip(&av) {
                    acc[q] = smmla(acc[q], av, w0);
                    acc[q + 1] = smmla(acc[q + 1], av, w1);
                }
            }
        };
        // Four steps per iteration (the loop's subs/b.ne/adds over 16 * RP smmla), then the rest.
        for _ in 0..steps / 4 {
            // SAFETY: steps i..i+4 are inside the sizes (steps / 4 whole groups of four).
            unsafe {
                step(&mut acc, ap, wp);
                step(&mut acc, ap.add(RP * 16), wp.add(64));
                step(&mut acc, ap.add(2 * RP * 16), wp.add(128));
                step(&mut acc, ap.add(3 * RP * 16), wp.add(192));
                ap = ap.add(4 * RP * 16);
                wp = wp.add(256);
            }
        }
        for _ in 0..steps % 4 {
            step(&mut acc, ap, wp);
            // SAFETY: advancing by what was read; at most one past the end.
            unsafe {
                ap = ap.add(RP * 16);
                wp = wp.add(64);
            }
        }
        store_half(&mut rows, &acc, h);
    }
    for r in 0..t.rows {
        // SAFETY: r < t.rows; the caller promises the tile is in bounds.
        unsafe { t.put_row(r, &rows[r / 2][r % 2]) };
    }
}

/// acc[rp][q] = [r0 c0, r0 c1, r1 c0, r1 c1] for rows 2rp, 2rp+1, columns 8h+2q, +1.
#[target_feature(enable = "neon,i8mm")]
fn store_half<const RP: usize>(rows: &mut [[[i32; PANEL]; 2]; RP], acc: &[[int32x4_t; 4]; RP], h: usize) {
    for (rp, acc) in acc.iter().enumerate() {
        for (q, &v) in acc.iter().enumerate() {
            let mut l = [0i32; 4];
            // SAFETY: `l` has 4 lanes.
            unsafe { vst1q_s32(l.as_mut_ptr(), v) };
            let c = 8 * h + 2 * q;
            rows[rp][0][c..c + 2].copy_from_slice(&l[..2]);
            rows[rp][1][c..c + 2].copy_from_slice(&l[2..]);
        }
    }
}

impl Tier for NeonI8mm {
    const MR: usize = 10;
    const TAILS: &'static [usize] = &[8, 6, 4, 2, 1];
    const KB: usize = 8;
    const ROW_ALIGN: usize = 2;
    fn w_scratch(kg: usize) -> usize {
        kg.div_ceil(2) * 128
    }
    #[target_feature(enable = "neon,i8mm")]
    unsafe fn prep_w(w: *const u8, kg: usize, buf: &mut [u8]) -> *const u8 {
        // SAFETY: forwarded from the caller (w has kg groups, buf w_scratch(kg) bytes).
        unsafe { regroup(w, kg, buf) }
    }
    #[target_feature(enable = "neon,i8mm")]
    unsafe fn micro(a: *const u8, w: *const u8, kg: usize, t: &OutTile) {
        let steps = kg.div_ceil(2);
        // SAFETY: forwarded from the caller; odd row counts were padded with a zero row.
        unsafe {
            match t.rows.div_ceil(2) {
                5 => micro::<5>(a, w, steps, t),
                4 => micro::<4>(a, w, steps, t),
                3 => micro::<3>(a, w, steps, t),
                2 => micro::<2>(a, w, steps, t),
                1 => micro::<1>(a, w, steps, t),
                r => unreachable!("row pair tile {r}"),
            }
        }
    }
}

/// # Safety
/// FEAT_I8MM available; `p` and `out` as checked by `Kernel::gemm_i8_in`.
pub(crate) unsafe fn gemm(p: &super::GemmArgs<'_>, out: &mut [i32], scratch: &mut alloc::vec::Vec<u8>) {
    // SAFETY: forwarded.
    unsafe { super::gemm::<NeonI8mm>(p, out, scratch) }
}
