//! Self-attention over packed sequences: K transposed (fp32) or quantized and packed (int8),
//! V packed for int8 P·V, and softmax(QKᵀ/√d)·V per sequence and head in blocks of query rows.

use super::*;
use crate::kernels::attention::TRANSPOSE_BLOCK;
use crate::model::AttentionScales;

/// K of every sequence and head transposed to [dh][len_p] (keys padded to whole tiles, padding
/// zero), so q.K^T is a sum over d of q[d] * row d: a fixed order for every key, vectorized
/// across keys rather than reduced per key. Once per layer, shared by all query blocks.
pub(super) fn transpose_keys(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: &[f32], key_t: &mut [f32]) {
    // One task per (sequence, head): (first key row, keys, padded keys, head).
    let mut tasks = Vec::new();
    let mut pieces = Vec::new();
    let mut rest = key_t;
    for w in seq_start.windows(2) {
        let (a, len) = (w[0], w[1] - w[0]);
        let len_p = padded_keys(len);
        for hd in 0..heads {
            let (piece, tail) = core::mem::take(&mut rest).split_at_mut(dh * len_p);
            pieces.push(Slot::holding(piece));
            rest = tail;
            tasks.push((a, len, len_p, hd));
        }
    }
    cx.par.for_each(tasks.len(), &|i| timed!(Op::AttentionKeyTranspose, {
        let kt = pieces[i].take();
        let (a, len, len_p, hd) = tasks[i];
        let ko = h + hd * dh;
        // 16 keys at a time, so each K^T row gets one whole cache line per block: square
        // blocks through the kernel's transpose, the rest (the last keys, features past a
        // multiple of 16) one float at a time.
        const BLOCK: usize = TRANSPOSE_BLOCK;
        for j0 in (0..len).step_by(BLOCK) {
            let keys = (len - j0).min(BLOCK);
            let square = if keys == BLOCK { dh - dh % BLOCK } else { 0 };
            for d0 in (0..square).step_by(BLOCK) {
                let src = &qkv[(a + j0) * 3 * h + ko + d0..];
                cx.kernel.transpose_block(src, 3 * h, &mut kt[d0 * len_p + j0..], len_p);
            }
            for d in square..dh {
                let dst = &mut kt[d * len_p + j0..d * len_p + j0 + keys];
                for (jj, out) in dst.iter_mut().enumerate() {
                    *out = qkv[(a + j0 + jj) * 3 * h + ko + d];
                }
            }
        }
        for d in 0..dh {
            kt[d * len_p + len..(d + 1) * len_p].fill(0.0);
        }
    }));
}

/// Fixed-size copies where they vectorize (x86-64, aarch64); the MCU targets keep one generic
/// loop per packing, for code size (docs/EMBEDDED.md).
const WIDE_PACKING: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// One piece of `packed` and of `sums` per (sequence, head), back to back, sized by
/// `sizes(keys) = (bytes, sums)`, as task slots of consecutive heads of one sequence (each slot
/// the heads' pieces together, head by head), with each task's (first key row, keys, first
/// head, heads). A sequence's heads go to one task, or on more threads than sequences to
/// several, so every thread has work.
#[allow(clippy::type_complexity)]
#[inline(never)]
fn per_head_pieces<'a>(
    seq_start: &[usize],
    heads: usize,
    threads: usize,
    packed: &'a mut [u8],
    sums: &'a mut [i32],
    sizes: &dyn Fn(usize) -> (usize, usize),
) -> (Vec<Slot<(&'a mut [u8], &'a mut [i32])>>, Vec<(usize, usize, usize, usize)>) {
    let sequences = seq_start.len() - 1;
    let groups = (2 * threads).div_ceil(sequences).clamp(1, heads);
    let per_group = heads.div_ceil(groups);
    let (mut tasks, mut slots) = (Vec::new(), Vec::new());
    let (mut rest, mut rest_sums) = (packed, sums);
    for w in seq_start.windows(2) {
        let (a, len) = (w[0], w[1] - w[0]);
        let (bytes, n_sums) = sizes(len);
        for hd0 in (0..heads).step_by(per_group) {
            let n = per_group.min(heads - hd0);
            let (piece, tail) = core::mem::take(&mut rest).split_at_mut(n * bytes);
            let (piece_sums, tail_sums) = core::mem::take(&mut rest_sums).split_at_mut(n * n_sums);
            (rest, rest_sums) = (tail, tail_sums);
            slots.push(Slot::holding((piece, piece_sums)));
            tasks.push((a, len, hd0, n));
        }
    }
    (slots, tasks)
}

/// max|x| of each row's Q, K and V in each head ([row][3 x heads], as the QKV epilogue wrote
/// them): what dynamic int8 attention's scales come from.
#[derive(Clone, Copy)]
pub(super) struct HeadMax<'a> {
    pub(super) max: &'a [f32],
    pub(super) heads: usize,
}

impl HeadMax<'_> {
    /// max|x| of row `r` in group `g` (Q heads, then K heads, then V heads).
    #[inline(always)]
    fn row(&self, r: usize, g: usize) -> f32 {
        self.max[r * 3 * self.heads + g]
    }
}

/// The scale of one row's Q, K or V in one head (group `g` of [`HeadMax`]): the layer's static
/// one, or (dynamic) 127 / max|x| of that row.
#[inline(always)]
fn row_scale(fixed: Option<f32>, ranges: Option<HeadMax>, r: usize, g: usize) -> f32 {
    match (fixed, ranges) {
        (Some(s), _) => s,
        (None, Some(m)) => ops::per_row_scale(m.row(r, g)),
        (None, None) => unreachable!("dynamic scales come with the QKV epilogue's ranges"),
    }
}

/// K of every sequence and head as int8 (fp32 rows quantized with the static `key_scale`, or
/// rows the QKV epilogue already quantized, dynamic int8 attention's each with its own scale)
/// packed as the weight matrix of a scores GEMM (keys as output columns, dh as the inner
/// dimension), plus each key's sum for the kernels' +128 activation offset. Once per layer,
/// shared by all query blocks.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_keys(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, key_scale: Option<f32>, packed: &mut [u8], sums: &mut [i32]) {
    let (slots, tasks) = per_head_pieces(seq_start, heads, cx.par.threads(), packed, sums, &|len| (packed_len(len, dh), len));
    let k4 = dh.div_ceil(crate::kernels::KGROUP);
    cx.par.for_each(tasks.len(), &|i| cx.kernel.with_fp32_simd(#[inline(always)] || timed!(Op::AttentionKeyTranspose, {
        let (pieces, pieces_sums) = slots[i].take();
        let (a, len, hd0, n) = tasks[i];
        let (bytes, n_sums) = (pieces.len() / n, pieces_sums.len() / n);
        // Padding (keys past `len` in the last panel, k past dh) stays zero.
        pieces.fill(0);
        let mut row = if WIDE_PACKING { alloc::vec![0i8; dh] } else { Vec::new() };
        // Key by key, each key's heads in turn: a token's row is read front to back. Head by
        // head, every key is one cache line 3H bytes past the last, fetched at memory latency.
        for j in 0..len {
            for hi in 0..n {
                let (piece, piece_sums) = (&mut pieces[hi * bytes..(hi + 1) * bytes], &mut pieces_sums[hi * n_sums..(hi + 1) * n_sums]);
                let hd = hd0 + hi;
                let ko = h + hd * dh;
                // Key j is column j % 16 of panel j / 16: 4 consecutive k per 64-byte group.
                let base = (j / crate::kernels::PANEL) * k4 * 64 + (j % crate::kernels::PANEL) * 4;
                if !WIDE_PACKING {
                    // One scatter loop: the smallest code for the MCU targets, the same bytes.
                    let mut sum = 0;
                    for d in 0..dh {
                        let q = match qkv {
                            Qkv::I8(x) => x[(a + j) * 3 * h + ko + d],
                            Qkv::F32(x) => math::quantize(x[(a + j) * 3 * h + ko + d], key_scale.expect("fp32 K comes with a static S_k")),
                        };
                        piece[base + (d / crate::kernels::KGROUP) * 64 + d % crate::kernels::KGROUP] = q as u8;
                        sum += q as i32;
                    }
                    piece_sums[j] = sum;
                    continue;
                }
                // Already int8 (requantized by the QKV epilogue): read in place.
                let row: &[i8] = match qkv {
                    Qkv::I8(x) => &x[(a + j) * 3 * h + ko..(a + j) * 3 * h + ko + dh],
                    Qkv::F32(_) => {
                        qkv.quantized(a + j, h, ko, key_scale.expect("fp32 K comes with a static S_k"), &mut row[..dh]);
                        &row[..dh]
                    }
                };
                piece_sums[j] = row.iter().map(|&q| q as i32).sum();
                {
                    // Whole groups as fixed-size copies (a variable length would be a memcpy call each).
                    let quads = row.chunks_exact(crate::kernels::KGROUP);
                    let tail = quads.remainder();
                    for (g, quad) in quads.enumerate() {
                        let quad: [i8; crate::kernels::KGROUP] = quad.try_into().expect("a whole group");
                        piece[base + g * 64..base + g * 64 + crate::kernels::KGROUP].copy_from_slice(&quad.map(|q| q as u8));
                    }
                    let g = dh / crate::kernels::KGROUP;
                    for (t, &q) in tail.iter().enumerate() {
                        piece[base + g * 64 + t] = q as u8;
                    }
                }
            }
        }
    })));
}

/// V of every sequence and head as int8 (as K in [`pack_keys`], with `value_scale`) packed as
/// the weight matrix of a P·V GEMM
/// (features as output columns, keys as the inner dimension), plus each feature's sum over the
/// keys (for the probabilities' offset, see `attention`). Once per layer.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_values(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, value_scale: Option<f32>, packed: &mut [u8], sums: &mut [i32]) {
    use crate::kernels::{KGROUP, PANEL};
    let (slots, tasks) = per_head_pieces(seq_start, heads, cx.par.threads(), packed, sums, &|len| (packed_len(dh, len), dh));
    cx.par.for_each(tasks.len(), &|i| cx.kernel.with_fp32_simd(#[inline(always)] || timed!(Op::AttentionKeyTranspose, {
        let (pieces, pieces_sums) = slots[i].take();
        let (a, len, hd0, n) = tasks[i];
        let (bytes, n_sums) = (pieces.len() / n, pieces_sums.len() / n);
        let k4 = len.div_ceil(KGROUP);
        // Padding (features past dh in the last panel, keys past len) stays zero.
        pieces.fill(0);
        pieces_sums.fill(0);
        // Four keys at a time, quantized as rows; feature d of the four keys is the 4-byte group
        // of column d, so the 16 columns of a panel are one 64-byte interleave of the rows.
        // Each group of four keys for every head of the task in turn, as in `pack_keys`.
        let mut quad = if WIDE_PACKING { alloc::vec![0i8; KGROUP * dh] } else { Vec::new() };
        for j0 in (0..len).step_by(KGROUP) {
            let keys = (len - j0).min(KGROUP);
            for hi in 0..n {
                let (piece, piece_sums) = (&mut pieces[hi * bytes..(hi + 1) * bytes], &mut pieces_sums[hi * n_sums..(hi + 1) * n_sums]);
                let hd = hd0 + hi;
                let vo = 2 * h + hd * dh;
                if !WIDE_PACKING {
                    // One scatter loop: the smallest code for the MCU targets, the same bytes.
                    for j in j0..j0 + keys {
                        for d in 0..dh {
                            let q = match qkv {
                                Qkv::I8(x) => x[(a + j) * 3 * h + vo + d],
                                Qkv::F32(x) => math::quantize(x[(a + j) * 3 * h + vo + d], value_scale.expect("fp32 V comes with a static S_v")),
                            };
                            piece[((d / PANEL) * k4 + j / KGROUP) * 64 + (d % PANEL) * KGROUP + j % KGROUP] = q as u8;
                            piece_sums[d] += q as i32;
                        }
                    }
                    continue;
                }
                // The four value rows: in place when already int8 (and all four are keys), else
                // requantized (or zero past the last key) into `quad`.
                let rows: [&[i8]; KGROUP] = match qkv {
                    Qkv::I8(x) if WIDE_PACKING && keys == KGROUP => core::array::from_fn(|jj| &x[(a + j0 + jj) * 3 * h + vo..(a + j0 + jj) * 3 * h + vo + dh]),
                    _ => {
                        for (jj, row) in quad.chunks_exact_mut(dh).enumerate() {
                            match qkv {
                                _ if jj >= keys => row.fill(0),
                                Qkv::I8(x) => row.copy_from_slice(&x[(a + j0 + jj) * 3 * h + vo..(a + j0 + jj) * 3 * h + vo + dh]),
                                Qkv::F32(_) => qkv.quantized(a + j0 + jj, h, vo, value_scale.expect("fp32 V comes with a static S_v"), row),
                            }
                        }
                        core::array::from_fn(|jj| &quad[jj * dh..(jj + 1) * dh])
                    }
                };
                let g = j0 / KGROUP;
                for d0 in (0..dh).step_by(PANEL) {
                    let cols = (dh - d0).min(PANEL);
                    let at = ((d0 / PANEL) * k4 + g) * 64;
                    let dst = &mut piece[at..at + cols * KGROUP];
                    if WIDE_PACKING && cols == PANEL {
                        // A whole panel as fixed-size arrays, so the interleave vectorizes.
                        let col = |jj: usize| -> &[i8; PANEL] { rows[jj][d0..d0 + PANEL].try_into().expect("one panel") };
                        let (q0, q1, q2, q3) = (col(0), col(1), col(2), col(3));
                        let dst: &mut [u8; PANEL * KGROUP] = dst.try_into().expect("one group of a panel");
                        for c in 0..PANEL {
                            dst[c * KGROUP..(c + 1) * KGROUP].copy_from_slice(&[q0[c] as u8, q1[c] as u8, q2[c] as u8, q3[c] as u8]);
                        }
                    } else {
                        for (c, group) in dst.chunks_exact_mut(KGROUP).enumerate() {
                            let d = d0 + c;
                            group.copy_from_slice(&[rows[0][d] as u8, rows[1][d] as u8, rows[2][d] as u8, rows[3][d] as u8]);
                        }
                    }
                }
                for row in rows.iter().take(keys) {
                    for (sum, &q) in piece_sums.iter_mut().zip(row.iter()) {
                        *sum += q as i32;
                    }
                }
            }
        }
    })));
}

/// The QKV projection's output: fp32 rows of 3H, or int8 rows of 3H already requantized by its
/// epilogue (fully int8 attention: with S_q, S_k, S_v; dynamic: each row of each head with its
/// own scale).
#[derive(Clone, Copy)]
pub(super) enum Qkv<'a> {
    F32(&'a [f32]),
    I8(&'a [i8]),
}

impl Qkv<'_> {
    /// Row `r`'s values `at..at + out.len()` as int8: requantized with `scale`, or copied.
    #[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
    fn quantized(&self, r: usize, h: usize, at: usize, scale: f32, out: &mut [i8]) {
        let (start, n) = (r * 3 * h + at, out.len());
        match self {
            Qkv::F32(x) => {
                for (q, &v) in out.iter_mut().zip(&x[start..start + n]) {
                    *q = math::quantize(v, scale);
                }
            }
            Qkv::I8(x) => out.copy_from_slice(&x[start..start + n]),
        }
    }
}

/// The keys of one layer's attention, as `transpose_keys` or `pack_keys` left them.
#[derive(Clone, Copy)]
pub(super) enum Keys<'k> {
    /// fp32 K^T, [sequence][head][dh][keys padded by `padded_keys`].
    F32 { key_t: &'k [f32] },
    /// int8 K, [sequence][head][packed_len(len, dh)] bytes, sums [sequence][head][len]. With
    /// static `scales` every query and key shares S_q and S_k; without (dynamic), each row of
    /// Q and of K in each head has its own 127 / max|x|, from `ranges`.
    I8 { packed: &'k [u8], sums: &'k [i32], scales: Option<AttentionScales>, ranges: Option<HeadMax<'k>> },
}

/// The values of one layer's attention: the fp32 V columns of `qkv`, or as `pack_values` left them.
#[derive(Clone, Copy)]
pub(super) enum Values<'v> {
    F32,
    /// int8 V, [sequence][head][packed_len(dh, len)] bytes, sums [sequence][head][dh], quantized
    /// with `value_scale`, or (None, dynamic) each row of each head with its own.
    I8 { packed: &'v [u8], sums: &'v [i32], value_scale: Option<f32> },
}

/// softmax(q k^T / sqrt(dh)) v per sequence and head, split over blocks of query rows. Scores
/// are fp32 dot products, or with int8 keys int32 dot products of requantized q and k scaled
/// by 1/(S_q S_k); softmax is fp32; P·V is fp32, or with int8 values an int32 product of the
/// probabilities as u8 (scale 255) and requantized v, scaled by 1/(255 S_v).
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, keys: Keys, values: Values, ctx: &mut [f32]) {
    let inv_sqrt_dh = 1.0 / math::sqrt(dh as f32);
    let total = ctx.len() / h;
    let chunk = total.div_ceil(2 * cx.par.threads()).max(1);
    // Work items never straddle two sequences: (sequence start, sequence end, first row, rows).
    // Each also carries where its sequence's keys start in `key_t` or in (`packed`, `sums`),
    // and its values in the packed values and their sums.
    let mut items = Vec::new();
    let (mut key_t_start, mut packed_start, mut sums_start, mut vpacked_start, mut vsums_start) = (0, 0, 0, 0, 0);
    for s in 0..seq_start.len() - 1 {
        let (a, b) = (seq_start[s], seq_start[s + 1]);
        for i0 in (a..b).step_by(chunk) {
            items.push((a, b, i0, chunk.min(b - i0), [key_t_start, packed_start, sums_start, vpacked_start, vsums_start]));
        }
        key_t_start += padded_keys(b - a) * h;
        packed_start += heads * packed_len(b - a, dh);
        sums_start += heads * (b - a);
        vpacked_start += heads * packed_len(dh, b - a);
        vsums_start += heads * dh;
    }
    let blocks: Vec<(usize, usize)> = items.iter().map(|&(_, _, i0, n, _)| (i0, n)).collect();
    let slots: Vec<Slot<&mut [f32]>> = carve(ctx, &blocks, h).into_iter().map(Slot::holding).collect();
    cx.par.for_each(items.len(), &|it| cx.kernel.with_fp32_simd(#[inline(always)] || {
        let out = slots[it].take();
        let (a, b, i0, n, [kt0, kp0, ks0, vp0, vs0]) = items[it];
        let len = b - a;
        // Keys padded to whole register tiles; the padding lanes are computed and ignored.
        let len_p = padded_keys(len);
        let block = SCORE_BLOCK.min(n);
        // The probabilities of a whole block of queries: its scores are all computed (K^T in L1)
        // before its P·V (the head's values in L1).
        let mut scores = alloc::vec![0.0f32; block.next_multiple_of(QUERY_ROWS) * len_p];
        let mut q = alloc::vec![0.0f32; if matches!(keys, Keys::F32 { .. }) { QUERY_ROWS * dh } else { 0 }];
        // int8 scores: the block's queries and their int32 scores.
        let (mut q8, mut acc) = match keys {
            Keys::I8 { .. } => (alloc::vec![0i8; block * dh], alloc::vec![0i32; block * len]),
            Keys::F32 { .. } => (Vec::new(), Vec::new()),
        };
        // S_q of each query row of the block.
        let mut q_scales = alloc::vec![0.0f32; if matches!(keys, Keys::I8 { .. }) { block } else { 0 }];
        // Dynamic int8 attention: per key, 1/S_k and 1/S_v of its row in the current head.
        let dynamic = matches!(keys, Keys::I8 { scales: None, .. });
        let (mut k_inv, mut v_inv) = (alloc::vec![0.0f32; if dynamic { len } else { 0 }], alloc::vec![0.0f32; if dynamic { len } else { 0 }]);
        // The probability scale of each query row: 255, or (dynamic) 255 / the row's largest.
        let mut p_scales = alloc::vec![PROBABILITY_SCALE; if matches!(values, Values::I8 { .. }) { block } else { 0 }];
        // int8 P·V: the block's probabilities (u8 - 128, see below) and int32 outputs.
        let (mut p8, mut acc_v) = match values {
            Values::I8 { .. } => (alloc::vec![0i8; block * len], alloc::vec![0i32; block * dh]),
            Values::F32 => (Vec::new(), Vec::new()),
        };
        // fp32 rows (fp32 scores or fp32 P·V); a fully int8 layer never reads them.
        let qkv_f32: &[f32] = match qkv {
            Qkv::F32(x) => x,
            Qkv::I8(_) => &[],
        };
        // fp32 P·V: the current head's value rows, contiguous. In place, rows 3H floats apart
        // fall into a quarter of L1's sets and are re-read from L2 by every group of queries.
        let mut v_head = alloc::vec![0.0f32; if matches!(values, Values::F32) { len * dh } else { 0 }];
        for hd in 0..heads {
            let (qo, vo) = (hd * dh, 2 * h + hd * dh);
            if matches!(values, Values::F32) {
                timed!(Op::AttentionValues, for (j, row) in v_head.chunks_exact_mut(dh).enumerate() {
                    row.copy_from_slice(&qkv_f32[(a + j) * 3 * h + vo..(a + j) * 3 * h + vo + dh]);
                });
            }
            if let (true, Keys::I8 { ranges: Some(m), .. }) = (dynamic, keys) {
                for (j, (ki, vi)) in k_inv.iter_mut().zip(v_inv.iter_mut()).enumerate() {
                    *ki = 1.0 / ops::per_row_scale(m.row(a + j, heads + hd));
                    *vi = 1.0 / ops::per_row_scale(m.row(a + j, 2 * heads + hd));
                }
            }
            for s0 in (i0..i0 + n).step_by(block) {
                let brows = block.min(i0 + n - s0);
                if let Keys::I8 { packed, sums, scales, ranges } = keys {
                    let kp_len = packed_len(len, dh);
                    let kp = &packed[kp0 + hd * kp_len..kp0 + (hd + 1) * kp_len];
                    let ks = &sums[ks0 + hd * len..ks0 + (hd + 1) * len];
                    timed!(Op::AttentionScores, {
                        for (r, qrow) in q8.chunks_exact_mut(dh).take(brows).enumerate() {
                            let scale = row_scale(scales.map(|s| s.query_scale), ranges, s0 + r, hd);
                            q_scales[r] = scale;
                            qkv.quantized(s0 + r, h, qo, scale, qrow);
                        }
                        cx.kernel.gemm_i8(&q8, dh, brows, kp, ks, len, dh, 0, len, &mut acc, len);
                    });
                }
                for r0 in (s0..s0 + brows).step_by(QUERY_ROWS) {
                    let rows = QUERY_ROWS.min(s0 + brows - r0);
                    let scores = &mut scores[(r0 - s0) * len_p..(r0 - s0 + QUERY_ROWS) * len_p];
                    match keys {
                        Keys::F32 { key_t } => {
                            let kt = &key_t[kt0 + hd * dh * len_p..kt0 + (hd + 1) * dh * len_p];
                            for r in 0..QUERY_ROWS {
                                // Rows past the block repeat the last one; their results are not stored.
                                let i = r0 + r.min(rows - 1);
                                q[r * dh..(r + 1) * dh].copy_from_slice(&qkv_f32[i * 3 * h + qo..i * 3 * h + qo + dh]);
                            }
                            timed!(Op::AttentionScores, query_key_scores(&cx.kernel, &q, dh, kt, len_p, scores));
                            timed!(Op::AttentionSoftmax, for r in 0..rows {
                                ops::softmax_scaled(&mut scores[r * len_p..r * len_p + len], inv_sqrt_dh);
                            });
                        }
                        Keys::I8 { scales, .. } => {
                            // Scores are acc / (S_q S_k), divided by sqrt(dh) in the softmax: one
                            // scale per row, and (dynamic) each key's 1/S_k per column.
                            timed!(Op::AttentionSoftmax, for r in 0..rows {
                                let acc_row = &acc[(r0 - s0 + r) * len..(r0 - s0 + r + 1) * len];
                                let row = &mut scores[r * len_p..r * len_p + len];
                                match scales {
                                    Some(sc) => ops::softmax_scaled_i32(acc_row, inv_sqrt_dh / (q_scales[r0 - s0 + r] * sc.key_scale), row),
                                    None => ops::softmax_scaled_i32_columns(acc_row, &k_inv, inv_sqrt_dh / q_scales[r0 - s0 + r], row),
                                }
                            });
                        }
                    }
                    match values {
                        Values::F32 => {}
                        Values::I8 { .. } => timed!(Op::AttentionValues, for r in 0..rows {
                            let p_row = &mut p8[(r0 - s0 + r) * len..(r0 - s0 + r + 1) * len];
                            let p = &mut scores[r * len_p..r * len_p + len];
                            // Dynamic: each value row j was quantized with its own S_v[j], so
                            // sum_j p_j v_j = sum_j (p_j / S_v[j]) (S_v[j] v_j): the 1/S_v go
                            // into the probabilities, which are then quantized with the row's scale.
                            if dynamic {
                                for (pj, &vi) in p.iter_mut().zip(&v_inv) {
                                    *pj *= vi;
                                }
                            }
                            let scale = if dynamic { ops::probability_scale(p) } else { PROBABILITY_SCALE };
                            p_scales[r0 - s0 + r] = scale;
                            ops::quantize_probabilities(p, scale, p_row);
                        }),
                    }
                }
                if let Values::F32 = values {
                    for r0 in (s0..s0 + brows).step_by(QUERY_ROWS) {
                        let rows = QUERY_ROWS.min(s0 + brows - r0);
                        let c0 = (r0 - i0) * h + hd * dh;
                        let p = &scores[(r0 - s0) * len_p..(r0 - s0 + QUERY_ROWS) * len_p];
                        timed!(Op::AttentionValues, weighted_values(&cx.kernel, p, len_p, len, rows, &v_head, dh, dh, &mut out[c0..], h));
                    }
                }
                if let Values::I8 { packed, sums, value_scale } = values {
                    // Dynamic: the value scales are in the probabilities already.
                    let value_scale = value_scale.unwrap_or(1.0);
                    let vp_len = packed_len(dh, len);
                    let vp = &packed[vp0 + hd * vp_len..vp0 + (hd + 1) * vp_len];
                    let vs = &sums[vs0 + hd * dh..vs0 + (hd + 1) * dh];
                    timed!(Op::AttentionValues, {
                        cx.kernel.gemm_i8(&p8, len, brows, vp, vs, dh, len, 0, dh, &mut acc_v, dh);
                        // p8 holds u8 - 128, so acc_v = sum_j (p_j - 128) v_j: add 128 * sum_j v_j back.
                        for r in 0..brows {
                            let inv = 1.0 / (p_scales[r] * value_scale);
                            let o = &mut out[(s0 - i0 + r) * h + hd * dh..(s0 - i0 + r) * h + (hd + 1) * dh];
                            for ((ov, &av), &sv) in o.iter_mut().zip(&acc_v[r * dh..(r + 1) * dh]).zip(vs) {
                                *ov = av.wrapping_add(sv.wrapping_mul(128)) as f32 * inv;
                            }
                        }
                    });
                }
            }
        }
    }));
}

/// `scores[r][j] = q[r] . k[j]` for `QUERY_ROWS` rows and every key tile of `kt` ([dh][len_p]).
#[inline(always)]
fn query_key_scores(kernel: &Kernel, q: &[f32], dh: usize, kt: &[f32], len_p: usize, scores: &mut [f32]) {
    // Whole 64-key tiles, then narrow ones for the rest (each key's sum is the same either way).
    let wide = len_p - len_p % KEY_TILE;
    key_tiles::<KEY_TILE>(kernel, q, dh, kt, len_p, 0..wide, scores);
    if NARROW_KEY_TILES {
        key_tiles::<KEY_TILE_NARROW>(kernel, q, dh, kt, len_p, wide..len_p, scores);
    }
}

/// [`query_key_scores`] of the keys `keys`, in tiles of `W` keys.
#[inline(always)]
fn key_tiles<const W: usize>(kernel: &Kernel, q: &[f32], dh: usize, kt: &[f32], len_p: usize, keys: core::ops::Range<usize>, scores: &mut [f32]) {
    let mut tile = [[0.0f32; W]; QUERY_ROWS];
    for j0 in keys.step_by(W) {
        kernel.attention_scores_tile(q, dh, &kt[j0..], len_p, &mut tile);
        for (r, t) in tile.iter().enumerate() {
            scores[r * len_p + j0..r * len_p + j0 + W].copy_from_slice(t);
        }
    }
}

/// `out[r][d] = sum_j p[r][j] * v[j][d]` for `rows` query rows, summed in j order from 0.0.
/// `v` rows are `v_stride` apart, `out` rows `out_stride` apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weighted_values(kernel: &Kernel, p: &[f32], len_p: usize, len: usize, rows: usize, v: &[f32], v_stride: usize, dh: usize, out: &mut [f32], out_stride: usize) {
    // 64-wide tiles, then at most one 32-wide tile, then a scalar tail.
    let wide = dh - dh % VALUE_TILE;
    let mut tile = [[0.0f32; VALUE_TILE]; QUERY_ROWS];
    for d0 in (0..wide).step_by(VALUE_TILE) {
        kernel.attention_values_tile(p, len_p, len, &v[d0..], v_stride, &mut tile);
        for (r, t) in tile.iter().enumerate().take(rows) {
            out[r * out_stride + d0..r * out_stride + d0 + VALUE_TILE].copy_from_slice(t);
        }
    }
    let mut tiled = wide;
    if dh - wide >= VALUE_TILE_HALF {
        let mut tile = [[0.0f32; VALUE_TILE_HALF]; QUERY_ROWS];
        kernel.attention_values_tile(p, len_p, len, &v[wide..], v_stride, &mut tile);
        for (r, t) in tile.iter().enumerate().take(rows) {
            out[r * out_stride + wide..r * out_stride + wide + VALUE_TILE_HALF].copy_from_slice(t);
        }
        tiled += VALUE_TILE_HALF;
    }
    // Head sizes that are not a multiple of the tile: the same sums, one row at a time.
    if tiled == dh {
        return;
    }
    for r in 0..rows {
        let c = &mut out[r * out_stride + tiled..r * out_stride + dh];
        c.fill(0.0);
        for j in 0..len {
            let pj = p[r * len_p + j];
            for (cv, &vv) in c.iter_mut().zip(&v[j * v_stride + tiled..j * v_stride + dh]) {
                *cv = math::fused_mul_add(pj, vv, *cv);
            }
        }
    }
}
