//! One int8 linear layer: input quantization (static or per row), the GEMM, and the fused
//! epilogues (dequantize + bias, residual + LayerNorm, GELU + requantize, Q/K/V requantize).

use super::*;

/// What a linear layer's input is.
pub(super) enum LinearIn<'x> {
    /// fp32 rows of K values, quantized with the layer's input scale (or per row).
    F32(&'x [f32]),
    /// Already-quantized rows of stride `padded_k(K)`, and for a per-row input each row's
    /// 1/S_x and zero point.
    I8 { rows: &'x [i8], row_inv: &'x [ops::RowScale] },
}

/// What a linear layer does with its dequantized output (the fused epilogue).
pub(super) enum LinearOut<'o> {
    /// Store fp32 rows of N values.
    F32(&'o mut [f32]),
    /// int8 rows of N values, every `group` consecutive values of a row quantized with their
    /// own scale `127 / max|y|` (see [`ops::per_row_scale`]), and each group's max|y| into
    /// `group_max` (N / group per row): dynamic int8 attention's Q, K, V, each row of each head
    /// with its own scale, quantized while the row is in cache.
    QuantizeGroups { out: &'o mut [i8], group: usize, group_max: &'o mut [f32] },
    /// LayerNorm(y + residual) into fp32 rows.
    ResidualNorm { out: &'o mut [f32], residual: &'o [f32], ln: &'o LayerNormRef },
    /// act(y) (the model's FFN activation, GELU in BERT), quantized as the next layer's input, into rows of stride `padded_k(N)`; a
    /// per-row next input also writes each row's 1/S_x into `row_inv`.
    GeluQuant { out: &'o mut [i8], next: InputQuant, row_inv: &'o mut [ops::RowScale] },
    /// y requantized into int8 rows of N values, each third of a row with its own scale (the
    /// Q, K and V of a fully int8 attention).
    QuantizeThirds { out: &'o mut [i8], scales: [f32; 3] },
}

/// The workspace buffers a linear layer computes in.
pub(super) struct LinearBufs<'w> {
    /// Quantized input rows (fp32 input only).
    pub(super) xq: &'w mut Vec<i8>,
    /// 1/S_x and zero point of each quantized input row (per-row input only).
    pub(super) row_inv: &'w mut Vec<ops::RowScale>,
    pub(super) acc: &'w mut Vec<i32>,
    /// Per-output dequantization multipliers.
    pub(super) dq: &'w mut Vec<f32>,
    /// One dequantized row per task, for epilogues that requantize after a per-row input, into
    /// a per-row input, or per group (`QuantizeGroups`).
    pub(super) epilogue: &'w mut Vec<f32>,
}

pub(super) struct Ctx<'m> {
    pub(super) file: &'m [u8],
    pub(super) kernel: Kernel,
    pub(super) par: &'m dyn Parallel,
    pub(super) eps: f32,
    /// The FFN activation of the `GeluQuant` epilogue.
    pub(super) act: Activation,
    /// Per-row inputs get a zero point too (format 1.4, `quant.per_row_zero_points`).
    pub(super) zero_points: bool,
}

/// What one task of a linear layer owns: its rows of the quantized input and their 1/S_x, the
/// output, the next layer's 1/S_x (GELU into a per-row input), and one epilogue row. (The
/// accumulators are its worker's.)
type LinearTask<'a> = (InputPart<'a>, OutPart<'a>, Option<&'a mut [ops::RowScale]>, &'a mut [f32]);
/// A task's rows of the quantized input and their 1/S_x (fp32 input only; 1/S_x per-row only).
type InputPart<'a> = (Option<&'a mut [i8]>, Option<&'a mut [ops::RowScale]>);

impl Ctx<'_> {
    pub(super) fn f32s(&self, r: &core::ops::Range<usize>) -> &[f32] {
        cast(self.file, r)
    }
    pub(super) fn i32s(&self, r: &core::ops::Range<usize>) -> &[i32] {
        cast(self.file, r)
    }

    /// One int8 linear layer over `rows` rows: quantize (if needed), GEMM with int32
    /// accumulation, then the epilogue, fused per block of rows so each block stays in cache.
    pub(super) fn linear(&self, gemm_op: Op, lin: &LinearRef, x: LinearIn, rows: usize, bufs: LinearBufs, out: LinearOut) {
        let LinearBufs { xq, row_inv, acc, dq, epilogue } = bufs;
        let (n, k, kp) = (lin.n, lin.k, padded_k(lin.k));
        resize(dq, n);
        // Static input: dq = 1/(S_w S_x). Per-row input: dq = 1/S_w, times each row's 1/S_x later.
        let input_scale = match lin.input {
            InputQuant::Static(s) => s,
            InputQuant::PerRow => 1.0,
        };
        ops::dequant_multipliers(self.f32s(&lin.weight_scale), n, input_scale, dq);
        let per_row = lin.input.is_per_row();
        if matches!(x, LinearIn::F32(_)) {
            resize(xq, rows * kp);
            if per_row {
                resize(row_inv, rows);
            }
        }
        if !cfg!(feature = "std") {
            // (Here rather than with the std case below: less firmware code.)
            resize(acc, rows * n);
        }
        let blocks = linear_blocks(rows, self.par.threads(), n, self.kernel);
        // Each worker reuses one block's worth of accumulators, which stays in its cache between
        // tasks; fresh rows of a buffer sized for all the rows cost a read for ownership from
        // memory and a write-back per line (BERT-base, a 256-token sub-batch: 7 MB a layer).
        // Blocks too unequal for `threads x largest block` to fit in the rows, and firmware
        // builds (no thread pool; less code), keep one region per block. (The workspace was sized
        // for this by `linear_accumulator_rows`.)
        let (workers, block_max) = (self.par.threads(), blocks.iter().map(|b| b.1).max().unwrap_or(0));
        let per_worker = reuses_worker_regions(workers, block_max, rows);
        if cfg!(feature = "std") {
            let needed = if per_worker { workers * block_max * n } else { rows * n };
            // `forward_gathered` reserved this fallibly; growing here could only abort.
            debug_assert!(acc.len() >= needed, "{} accumulators reserved, {needed} needed", acc.len());
            resize(acc, needed);
        }
        let acc_parts: Vec<Lent<&mut [i32]>> = if per_worker {
            acc[..workers * block_max * n].chunks_exact_mut((block_max * n).max(1)).map(Lent::new).collect()
        } else {
            carve(&mut acc[..rows * n], &blocks, n).into_iter().map(Lent::new).collect()
        };
        let xq_parts: Vec<InputPart> = match x {
            LinearIn::F32(_) if per_row => {
                carve(&mut xq[..rows * kp], &blocks, kp).into_iter().zip(carve(&mut row_inv[..rows], &blocks, 1)).map(|(q, r)| (Some(q), Some(r))).collect()
            }
            LinearIn::F32(_) => carve(&mut xq[..rows * kp], &blocks, kp).into_iter().map(|q| (Some(q), None)).collect(),
            LinearIn::I8 { .. } => blocks.iter().map(|_| (None, None)).collect(),
        };
        let mut thirds = [0.0f32; 3];
        let mut next = InputQuant::Static(0.0);
        let mut next_inv_parts: Vec<Option<&mut [ops::RowScale]>> = blocks.iter().map(|_| None).collect();
        let mut group = 0;
        let (out_parts, residual, ln): (Vec<OutPart>, _, _) = match out {
            LinearOut::F32(o) => (carve(&mut o[..rows * n], &blocks, n).into_iter().map(OutPart::F32).collect(), None, None),
            LinearOut::QuantizeGroups { out: o, group: g, group_max } => {
                group = g;
                let maxima = carve(&mut group_max[..rows * (n / g)], &blocks, n / g);
                (carve(&mut o[..rows * n], &blocks, n).into_iter().zip(maxima).map(|(q, m)| OutPart::I8Groups(q, m)).collect(), None, None)
            }
            LinearOut::ResidualNorm { out, residual, ln } => {
                (carve(&mut out[..rows * n], &blocks, n).into_iter().map(OutPart::F32).collect(), Some(residual), Some(ln))
            }
            LinearOut::GeluQuant { out, next: next_quant, row_inv } => {
                next = next_quant;
                if next.is_per_row() {
                    next_inv_parts = carve(&mut row_inv[..rows], &blocks, 1).into_iter().map(Some).collect();
                }
                let np = padded_k(n);
                (carve(&mut out[..rows * np], &blocks, np).into_iter().map(OutPart::I8).collect(), None, None)
            }
            LinearOut::QuantizeThirds { out, scales } => {
                thirds = scales;
                (carve(&mut out[..rows * n], &blocks, n).into_iter().map(OutPart::I8Thirds).collect(), None, None)
            }
        };
        // A dequantized row per task, for epilogues that cannot fuse dequantization with requantization.
        let needs_epilogue_row = per_row || next.is_per_row() || group > 0;
        let epi_len = if needs_epilogue_row { n } else { 0 };
        resize(epilogue, blocks.len() * epi_len);
        let epi_parts: Vec<&mut [f32]> =
            if epi_len > 0 { epilogue[..blocks.len() * n].chunks_exact_mut(n).collect() } else { blocks.iter().map(|_| &mut [][..]).collect() };
        let slots: Vec<Slot<LinearTask>> =
            xq_parts.into_iter().zip(out_parts).zip(next_inv_parts).zip(epi_parts).map(|(((q, o), ni), e)| Slot::holding((q, o, ni, e))).collect();
        let (w, wsum, dq) = (&self.file[lin.weight.clone()], self.i32s(&lin.weight_sum), &dq[..n]);
        // Static input: int32 bias at S_w S_x. Per-row input: f32 bias.
        let (bias_i32, bias_f32): (&[i32], &[f32]) = if per_row { (&[], self.f32s(&lin.bias)) } else { (self.i32s(&lin.bias), &[]) };
        let ln = ln.map(|l| (self.f32s(&l.gamma), self.f32s(&l.beta)));
        self.par.for_each_worker(blocks.len(), &|worker, b| acc_parts[if per_worker { worker } else { b }].with(|acc_part| self.kernel.with_fp32_simd(#[inline(always)] || {
            let ((xq_part, row_inv_part), mut out_part, mut next_inv, epi) = slots[b].take();
            let (r0, nrows) = blocks[b];
            let (a, row_inv): (&[i8], &[ops::RowScale]) = match (&x, xq_part) {
                (LinearIn::F32(xf), Some(q)) => {
                    let xf = &xf[r0 * k..(r0 + nrows) * k];
                    match (lin.input, row_inv_part) {
                        (InputQuant::PerRow, Some(ri)) => {
                            timed!(Op::QuantizeInput, ops::quantize_rows_per_row(xf, nrows, k, q, ri, self.zero_points));
                            (q, ri)
                        }
                        (InputQuant::Static(s), _) => {
                            timed!(Op::QuantizeInput, ops::quantize_rows(xf, nrows, k, s, q));
                            (q, &[])
                        }
                        (InputQuant::PerRow, None) => unreachable!("a per-row input always has its multiplier buffer"),
                    }
                }
                (LinearIn::I8 { rows, row_inv }, _) => {
                    (&rows[r0 * kp..(r0 + nrows) * kp], if per_row { &row_inv[r0..r0 + nrows] } else { &[] })
                }
                (LinearIn::F32(_), None) => unreachable!("fp32 input always has a quantization buffer"),
            };
            timed!(gemm_op, self.kernel.gemm_i8_ranged(lin.weight_range, a, kp, nrows, w, wsum, n, k, 0, n, acc_part, n));
            let epilogue_op = match (&out_part, residual) {
                (OutPart::I8(_), _) => Op::GeluRequantize,
                (OutPart::I8Thirds(_) | OutPart::I8Groups(..), _) => Op::DequantizeBias,
                (OutPart::F32(_), Some(_)) => Op::ResidualLayerNorm,
                (OutPart::F32(_), None) => Op::DequantizeBias,
            };
            // y = the layer's fp32 output row r.
            let dequantize = |r: usize, acc_row: &[i32], y: &mut [f32]| {
                if per_row {
                    ops::dequantize_row_per_row(acc_row, bias_f32, dq, row_inv[r], wsum, y);
                } else {
                    ops::dequantize_row(acc_row, bias_i32, dq, y);
                }
            };
            timed!(epilogue_op, for r in 0..nrows {
                let acc_row = &acc_part[r * n..(r + 1) * n];
                match &mut out_part {
                    OutPart::F32(o) => {
                        let o = &mut o[r * n..(r + 1) * n];
                        dequantize(r, acc_row, o);
                        if let (Some(res), Some((g, be))) = (residual, ln) {
                            let res_row = &res[(r0 + r) * n..(r0 + r + 1) * n];
                            for (v, &rv) in o.iter_mut().zip(res_row) {
                                *v += rv;
                            }
                            ops::layer_norm(o, g, be, self.eps);
                        }
                    }
                    OutPart::I8Groups(o, gm) => {
                        dequantize(r, acc_row, epi);
                        let groups = o[r * n..(r + 1) * n].chunks_exact_mut(group).zip(epi.chunks_exact(group));
                        for (m, (q, y)) in gm[r * (n / group)..(r + 1) * (n / group)].iter_mut().zip(groups) {
                            *m = math::max_abs(y);
                            let scale = ops::per_row_scale(*m);
                            for (qv, &v) in q.iter_mut().zip(y) {
                                *qv = math::quantize(v, scale);
                            }
                        }
                    }
                    OutPart::I8Thirds(o) => {
                        let third = n / 3;
                        let o = &mut o[r * n..(r + 1) * n];
                        if per_row {
                            dequantize(r, acc_row, epi);
                        }
                        for (p, &scale) in thirds.iter().enumerate() {
                            let part = p * third..(p + 1) * third;
                            if per_row {
                                for (q, &v) in o[part.clone()].iter_mut().zip(&epi[part]) {
                                    *q = math::quantize(v, scale);
                                }
                            } else {
                                ops::dequantize_quantize_row(&acc_row[part.clone()], &bias_i32[part.clone()], &dq[part.clone()], scale, &mut o[part]);
                            }
                        }
                    }
                    OutPart::I8(o) => {
                        let np = padded_k(n);
                        let o = &mut o[r * np..(r + 1) * np];
                        match (per_row, next, next_inv.as_deref_mut()) {
                            (false, InputQuant::Static(next_scale), _) => ops::dequantize_activate_quantize_row(self.act, acc_row, bias_i32, dq, next_scale, o),
                            (_, next, next_inv) => {
                                dequantize(r, acc_row, epi);
                                ops::activate(self.act, epi);
                                match (next, next_inv) {
                                    (InputQuant::PerRow, Some(ni)) => ni[r] = ops::quantize_row_per_row(epi, o, self.zero_points),
                                    (InputQuant::Static(next_scale), _) => {
                                        for (q, &v) in o.iter_mut().zip(epi.iter()) {
                                            *q = math::quantize(v, next_scale);
                                        }
                                        o[n..].fill(0);
                                    }
                                    (InputQuant::PerRow, None) => unreachable!("a per-row next input always has its multiplier buffer"),
                                }
                            }
                        }
                    }
                }
            });
        })));
    }

    pub(super) fn embedding_row<'a>(&'a self, e: &EmbeddingRef, row: usize, h: usize) -> &'a [i8] {
        bytemuck::cast_slice(&self.file[e.table.start + row * h..e.table.start + (row + 1) * h])
    }

    /// The dequantization multiplier of one embedding row: 1/S of the table or of the row.
    pub(super) fn embedding_inv_scale(&self, e: &EmbeddingRef, row: usize) -> f32 {
        match &e.scales {
            EmbeddingScales::PerTable { inv_scale } => *inv_scale,
            EmbeddingScales::PerRow { scales } => 1.0 / self.f32s(scales)[row],
        }
    }
}

pub(super) enum OutPart<'o> {
    /// fp32 rows.
    F32(&'o mut [f32]),
    I8(&'o mut [i8]),
    I8Thirds(&'o mut [i8]),
    /// int8 rows, each group of values with its own scale, and the groups' max|y|.
    I8Groups(&'o mut [i8], &'o mut [f32]),
}
