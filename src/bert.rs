//! The BERT forward pass over a validated layout: int8 GEMMs for every linear layer, fp32
//! embeddings sum, LayerNorm, attention softmax and GELU.
//!
//! Padding is removed before any work: only tokens whose mask is 1 are computed, packed
//! sequence after sequence. A sequence's result therefore does not depend on the batch it is in
//! or on how much padding surrounds it, and every reduction runs in a fixed order, so outputs
//! are bit-identical across batch composition and kernel choice.

use alloc::vec::Vec;

use crate::error::{bail, Result, Status};
use crate::kernels::Kernel;
use crate::model::{cast, EmbeddingRef, HeadKind, LayerNormRef, LinearRef, ModelLayout, Pooling};
use crate::ops::{self, math, padded_k};

/// One batch of token ids. `token_type_ids` None = all zeros; `attention_mask` None = all ones.
#[derive(Debug, Clone, Copy)]
pub struct Input<'i> {
    pub input_ids: &'i [i32],
    pub token_type_ids: Option<&'i [i32]>,
    pub attention_mask: Option<&'i [i32]>,
    pub batch: usize,
    pub seq_len: usize,
}

/// Scratch memory of a run, reused across runs (it only grows).
#[derive(Default)]
pub struct Workspace {
    /// (position, token id, token type) of every unmasked token, sequences back to back.
    tokens: Vec<(u32, u32, u32)>,
    /// Start of each sequence in `tokens` (batch + 1 entries).
    seq_start: Vec<usize>,
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    xq: Vec<i8>,
    acc: Vec<i32>,
    inter_q: Vec<i8>,
    scores: Vec<f32>,
    dq: Vec<f32>,
    pooled: Vec<f32>,
    /// Buffers of `Model::run_text`.
    pub(crate) text: TextScratch,
}

/// Token buffers for text input, reused across calls.
#[derive(Default)]
pub(crate) struct TextScratch {
    pub encodings: Vec<crate::tokenizer::Encoding>,
    pub ids: Vec<i32>,
    pub types: Vec<i32>,
    pub mask: Vec<i32>,
}

impl Workspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently held.
    pub fn capacity_bytes(&self) -> usize {
        self.tokens.capacity() * 12
            + self.seq_start.capacity() * 8
            + (self.hidden.capacity() + self.qkv.capacity() + self.ctx.capacity() + self.tmp.capacity()) * 4
            + self.xq.capacity()
            + self.acc.capacity() * 4
            + self.inter_q.capacity()
            + (self.scores.capacity() + self.dq.capacity() + self.pooled.capacity()) * 4
    }
}

fn resize<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// Checks the input against the model and packs the unmasked tokens into the workspace.
fn gather_tokens(layout: &ModelLayout, input: &Input, ws: &mut Workspace) -> Result<()> {
    let cfg = &layout.config;
    let Input { batch, seq_len, .. } = *input;
    if batch == 0 || seq_len == 0 {
        bail!(Status::InvalidArgument, "batch ({batch}) and seq_len ({seq_len}) must be at least 1");
    }
    if seq_len > cfg.max_position_embeddings {
        bail!(Status::SequenceTooLong, "seq_len {seq_len} exceeds the model maximum {}", cfg.max_position_embeddings);
    }
    let total = match batch.checked_mul(seq_len) {
        Some(t) if t <= u32::MAX as usize => t,
        _ => bail!(Status::InvalidArgument, "batch {batch} x seq_len {seq_len} is too large"),
    };
    if input.input_ids.len() != total {
        bail!(Status::InvalidArgument, "input_ids has {} values, batch x seq_len is {total}", input.input_ids.len());
    }
    for (name, arr) in [("token_type_ids", input.token_type_ids), ("attention_mask", input.attention_mask)] {
        if let Some(a) = arr {
            if a.len() != total {
                bail!(Status::InvalidArgument, "{name} has {} values, batch x seq_len is {total}", a.len());
            }
        }
    }
    ws.tokens.clear();
    ws.seq_start.clear();
    for b in 0..batch {
        ws.seq_start.push(ws.tokens.len());
        for p in 0..seq_len {
            let i = b * seq_len + p;
            let m = input.attention_mask.map_or(1, |m| m[i]);
            match m {
                0 => continue,
                1 => {}
                _ => bail!(Status::InvalidArgument, "attention_mask[{b}][{p}] is {m}; it must be 0 or 1"),
            }
            let id = input.input_ids[i];
            if id < 0 || id as usize >= cfg.vocab_size {
                bail!(Status::TokenOutOfRange, "input_ids[{b}][{p}] = {id} is outside the vocabulary (size {})", cfg.vocab_size);
            }
            let ty = input.token_type_ids.map_or(0, |t| t[i]);
            if ty < 0 || ty as usize >= cfg.type_vocab_size {
                bail!(Status::TokenOutOfRange, "token_type_ids[{b}][{p}] = {ty} is outside 0..{}", cfg.type_vocab_size);
            }
            ws.tokens.push((p as u32, id as u32, ty as u32));
        }
        if ws.tokens.len() == ws.seq_start[b] {
            bail!(Status::InvalidArgument, "sequence {b} has no unmasked tokens");
        }
    }
    ws.seq_start.push(ws.tokens.len());
    Ok(())
}

struct Ctx<'m> {
    file: &'m [u8],
    kernel: Kernel,
}

impl Ctx<'_> {
    fn f32s(&self, r: &core::ops::Range<usize>) -> &[f32] {
        cast(self.file, r)
    }
    fn i32s(&self, r: &core::ops::Range<usize>) -> &[i32] {
        cast(self.file, r)
    }

    /// acc[rows x n] = xq[rows x padded_k] * W^T (exact int32, before bias).
    fn gemm(&self, lin: &LinearRef, xq: &[i8], rows: usize, acc: &mut [i32]) {
        self.kernel.gemm_i8(
            xq,
            padded_k(lin.k),
            rows,
            &self.file[lin.weight.clone()],
            self.i32s(&lin.weight_sum),
            lin.n,
            lin.k,
            0,
            lin.n,
            acc,
            lin.n,
        );
    }

    /// out[rows x n] = dequantize(quantize(x) * W^T + bias), fp32 in and out.
    fn linear(&self, lin: &LinearRef, x: &[f32], rows: usize, ws_xq: &mut Vec<i8>, ws_acc: &mut Vec<i32>, dq: &mut Vec<f32>, out: &mut [f32]) {
        resize(ws_xq, rows * padded_k(lin.k));
        resize(ws_acc, rows * lin.n);
        resize(dq, lin.n);
        ops::quantize_rows(x, rows, lin.k, lin.input_scale, ws_xq);
        self.gemm(lin, ws_xq, rows, ws_acc);
        ops::dequant_multipliers(self.f32s(&lin.weight_scale), lin.n, lin.input_scale, dq);
        let bias = self.i32s(&lin.bias);
        for r in 0..rows {
            ops::dequantize_row(&ws_acc[r * lin.n..(r + 1) * lin.n], bias, dq, &mut out[r * lin.n..(r + 1) * lin.n]);
        }
    }

    fn layer_norm_rows(&self, ln: &LayerNormRef, x: &mut [f32], h: usize, eps: f32) {
        let (g, b) = (self.f32s(&ln.gamma), self.f32s(&ln.beta));
        for row in x.chunks_exact_mut(h) {
            ops::layer_norm(row, g, b, eps);
        }
    }

    fn embedding_row<'a>(&'a self, e: &EmbeddingRef, row: usize, h: usize) -> &'a [i8] {
        bytemuck::cast_slice(&self.file[e.table.start + row * h..e.table.start + (row + 1) * h])
    }
}

/// Runs the model on `input`, writing `layout.output_dim(seq_len)` floats per sequence.
pub fn forward(layout: &ModelLayout, file: &[u8], kernel: Kernel, input: &Input, ws: &mut Workspace, output: &mut [f32]) -> Result<()> {
    let needed = input.batch.saturating_mul(layout.output_dim(input.seq_len));
    if output.len() < needed {
        bail!(Status::BufferTooSmall, "output has room for {} floats, {needed} are needed", output.len());
    }
    gather_tokens(layout, input, ws)?;
    let cfg = &layout.config;
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let t = ws.tokens.len();
    let cx = Ctx { file, kernel };

    resize(&mut ws.hidden, t * h);
    resize(&mut ws.qkv, t * 3 * h);
    resize(&mut ws.ctx, t * h);
    resize(&mut ws.tmp, t * h);
    resize(&mut ws.inter_q, t * padded_k(inter));
    resize(&mut ws.scores, input.seq_len);

    // Embeddings: (word + token type) + position, as BERT adds them, then LayerNorm.
    for (i, &(pos, id, ty)) in ws.tokens.iter().enumerate() {
        let w = cx.embedding_row(&layout.word_embeddings, id as usize, h);
        let p = cx.embedding_row(&layout.position_embeddings, pos as usize, h);
        let y = cx.embedding_row(&layout.token_type_embeddings, ty as usize, h);
        let (iw, ip, iy) = (layout.word_embeddings.inv_scale, layout.position_embeddings.inv_scale, layout.token_type_embeddings.inv_scale);
        for (d, out) in ws.hidden[i * h..(i + 1) * h].iter_mut().enumerate() {
            *out = (w[d] as f32 * iw + y[d] as f32 * iy) + p[d] as f32 * ip;
        }
    }
    cx.layer_norm_rows(&layout.embeddings_layer_norm, &mut ws.hidden[..t * h], h, cfg.layer_norm_eps);

    let heads = cfg.num_heads;
    let dh = cfg.head_dim();
    let inv_sqrt_dh = 1.0 / math::sqrt(dh as f32);
    for layer in &layout.layers {
        cx.linear(&layer.qkv, &ws.hidden, t, &mut ws.xq, &mut ws.acc, &mut ws.dq, &mut ws.qkv);

        // Attention per sequence and head: softmax(q k^T / sqrt(dh)) v, fp32.
        for s in 0..input.batch {
            let (a, b) = (ws.seq_start[s], ws.seq_start[s + 1]);
            let len = b - a;
            for hd in 0..heads {
                let (qo, ko, vo) = (hd * dh, h + hd * dh, 2 * h + hd * dh);
                for i in a..b {
                    let q = &ws.qkv[i * 3 * h + qo..i * 3 * h + qo + dh];
                    let scores = &mut ws.scores[..len];
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let kr = (a + j) * 3 * h + ko;
                        *sc = math::dot(q, &ws.qkv[kr..kr + dh]) * inv_sqrt_dh;
                    }
                    ops::softmax(scores);
                    let ctx = &mut ws.ctx[i * h + hd * dh..i * h + (hd + 1) * dh];
                    ctx.fill(0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let vr = (a + j) * 3 * h + vo;
                        for (c, &v) in ctx.iter_mut().zip(&ws.qkv[vr..vr + dh]) {
                            *c += p * v;
                        }
                    }
                }
            }
        }

        // Attention output projection, residual, LayerNorm.
        cx.linear(&layer.attention_output, &ws.ctx, t, &mut ws.xq, &mut ws.acc, &mut ws.dq, &mut ws.tmp);
        for (o, &r) in ws.tmp[..t * h].iter_mut().zip(&ws.hidden[..t * h]) {
            *o += r;
        }
        cx.layer_norm_rows(&layer.attention_layer_norm, &mut ws.tmp[..t * h], h, cfg.layer_norm_eps);
        core::mem::swap(&mut ws.hidden, &mut ws.tmp);

        // FFN: intermediate GEMM with GELU and requantization fused, then the output GEMM.
        let lin = &layer.intermediate;
        resize(&mut ws.xq, t * padded_k(h));
        resize(&mut ws.acc, t * inter.max(h));
        resize(&mut ws.dq, inter.max(h));
        ops::quantize_rows(&ws.hidden, t, h, lin.input_scale, &mut ws.xq);
        cx.gemm(lin, &ws.xq, t, &mut ws.acc);
        ops::dequant_multipliers(cx.f32s(&lin.weight_scale), inter, lin.input_scale, &mut ws.dq);
        let (bias, next_scale, ip) = (cx.i32s(&lin.bias), layer.output.input_scale, padded_k(inter));
        for r in 0..t {
            ops::dequantize_gelu_quantize_row(&ws.acc[r * inter..(r + 1) * inter], bias, &ws.dq[..inter], next_scale, &mut ws.inter_q[r * ip..(r + 1) * ip]);
        }
        let out = &layer.output;
        cx.gemm(out, &ws.inter_q, t, &mut ws.acc);
        ops::dequant_multipliers(cx.f32s(&out.weight_scale), h, out.input_scale, &mut ws.dq);
        let bias = cx.i32s(&out.bias);
        for r in 0..t {
            ops::dequantize_row(&ws.acc[r * h..(r + 1) * h], bias, &ws.dq[..h], &mut ws.tmp[r * h..(r + 1) * h]);
        }
        for (o, &r) in ws.tmp[..t * h].iter_mut().zip(&ws.hidden[..t * h]) {
            *o += r;
        }
        cx.layer_norm_rows(&layer.output_layer_norm, &mut ws.tmp[..t * h], h, cfg.layer_norm_eps);
        core::mem::swap(&mut ws.hidden, &mut ws.tmp);
    }

    write_head(layout, &cx, input, ws, output);
    Ok(())
}

fn write_head(layout: &ModelLayout, cx: &Ctx, input: &Input, ws: &mut Workspace, output: &mut [f32]) {
    let h = layout.config.hidden_size;
    let batch = input.batch;
    match layout.head.kind {
        HeadKind::Classification | HeadKind::Regression => {
            let (Some(pooler), Some(classifier)) = (&layout.pooler, &layout.classifier) else {
                unreachable!("layout resolution guarantees pooler and classifier for this head");
            };
            // First unmasked token of every sequence ([CLS]).
            resize(&mut ws.pooled, batch * h);
            for s in 0..batch {
                let first = ws.seq_start[s];
                ws.pooled[s * h..(s + 1) * h].copy_from_slice(&ws.hidden[first * h..(first + 1) * h]);
            }
            cx.linear(pooler, &ws.pooled, batch, &mut ws.xq, &mut ws.acc, &mut ws.dq, &mut ws.tmp);
            for v in ws.tmp[..batch * h].iter_mut() {
                *v = math::tanh(*v);
            }
            let n = classifier.n;
            cx.linear(classifier, &ws.tmp, batch, &mut ws.xq, &mut ws.acc, &mut ws.dq, &mut output[..batch * n]);
        }
        HeadKind::Embedding => {
            for s in 0..batch {
                let (a, b) = (ws.seq_start[s], ws.seq_start[s + 1]);
                let out = &mut output[s * h..(s + 1) * h];
                match layout.head.pooling {
                    Pooling::Cls => out.copy_from_slice(&ws.hidden[a * h..(a + 1) * h]),
                    Pooling::Mean => {
                        out.fill(0.0);
                        for i in a..b {
                            for (o, &v) in out.iter_mut().zip(&ws.hidden[i * h..(i + 1) * h]) {
                                *o += v;
                            }
                        }
                        let count = (b - a) as f32;
                        for o in out.iter_mut() {
                            *o /= count;
                        }
                    }
                }
                if layout.head.normalize {
                    let norm = math::sqrt(math::dot(out, out)).max(1e-12);
                    for o in out.iter_mut() {
                        *o /= norm;
                    }
                }
            }
        }
        HeadKind::TokenStates => {
            let l = input.seq_len;
            output[..batch * l * h].fill(0.0);
            for s in 0..batch {
                for i in ws.seq_start[s]..ws.seq_start[s + 1] {
                    let pos = ws.tokens[i].0 as usize;
                    output[(s * l + pos) * h..(s * l + pos + 1) * h].copy_from_slice(&ws.hidden[i * h..(i + 1) * h]);
                }
            }
        }
    }
}
