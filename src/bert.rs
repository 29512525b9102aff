//! The BERT forward pass over a validated layout: int8 GEMMs for every linear layer, fp32
//! embeddings sum, LayerNorm, attention softmax and GELU.
//!
//! Padding is removed before any work: only tokens whose mask is 1 are computed, packed
//! sequence after sequence. A sequence's result therefore does not depend on the batch it is in
//! or on how much padding surrounds it, and every reduction runs in a fixed order, so outputs
//! are bit-identical across batch composition and kernel choice.

use alloc::vec::Vec;

use crate::error::{bail, Result, Status};
use crate::kernels::attention::{KEY_TILE, QUERY_ROWS, VALUE_TILE, VALUE_TILE_HALF};
use crate::kernels::Kernel;
use crate::kernels::packed_len;
use crate::model::{cast, AttentionScales, EmbeddingRef, HeadKind, InputQuant, LayerNormRef, LinearRef, ModelLayout, Pooling, PROBABILITY_SCALE};
use crate::ops::{self, math, padded_k};

/// Forward-pass operations, for the per-op time split (feature `op-timing`).
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Op {
    Embeddings,
    QuantizeInput,
    GemmQkv,
    GemmAttentionOutput,
    GemmIntermediate,
    GemmOutput,
    DequantizeBias,
    ResidualLayerNorm,
    GeluRequantize,
    AttentionKeyTranspose,
    AttentionScores,
    AttentionSoftmax,
    AttentionValues,
    Head,
}

/// Wall time per [`Op`], summed over threads (equal to elapsed time with one thread). Timing
/// code exists only with the `op-timing` feature; `examples/bench_e2e --profile-ops` prints it.
#[cfg(feature = "op-timing")]
pub mod op_timing {
    use core::sync::atomic::{AtomicU64, Ordering};

    pub const NAMES: [&str; 14] = [
        "embeddings",
        "quantize input",
        "gemm qkv",
        "gemm attention output",
        "gemm intermediate",
        "gemm output",
        "dequantize + bias",
        "residual + layernorm",
        "gelu + requantize",
        "attention k transpose",
        "attention scores",
        "attention softmax",
        "attention values",
        "head",
    ];
    static NANOS: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];

    pub fn add(op: super::Op, elapsed: std::time::Duration) {
        NANOS[op as usize].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// (name, seconds) per op since the last call, and resets the counters.
    pub fn take() -> std::vec::Vec<(&'static str, f64)> {
        NAMES.iter().zip(&NANOS).map(|(&n, t)| (n, t.swap(0, Ordering::Relaxed) as f64 * 1e-9)).collect()
    }
}

/// Evaluates `$e`, adding its wall time to `$op` when the `op-timing` feature is on.
macro_rules! timed {
    ($op:expr, $e:expr) => {{
        #[cfg(feature = "op-timing")]
        let start = std::time::Instant::now();
        let r = $e;
        #[cfg(feature = "op-timing")]
        op_timing::add($op, start.elapsed());
        #[cfg(not(feature = "op-timing"))]
        let _ = $op;
        r
    }};
}

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
    /// Q, K, V requantized by the QKV epilogue (layers with fully int8 attention).
    qkv_q: Vec<i8>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    xq: Vec<i8>,
    /// 1/S_x of each row of `xq` (linear layers with a per-row input scale).
    row_inv: Vec<f32>,
    acc: Vec<i32>,
    inter_q: Vec<i8>,
    /// 1/S_x of each row of `inter_q` (an FFN output layer with a per-row input scale).
    inter_row_inv: Vec<f32>,
    /// One dequantized row per task of a linear layer whose epilogue requantizes after a
    /// per-row input (or into one).
    epilogue: Vec<f32>,
    scores: Vec<f32>,
    /// K of every sequence and head transposed for attention: [sequence][head][dh][keys padded].
    key_t: Vec<f32>,
    /// int8 attention: K of every sequence and head quantized and packed like a weight matrix
    /// (keys as output columns, `packed_len(len, dh)` bytes each), and each key's sum.
    key_q: Vec<u8>,
    key_sum: Vec<i32>,
    /// int8 P·V: V of every sequence and head quantized and packed as a weight matrix (features
    /// as output columns, keys as the inner dimension, `packed_len(dh, len)` bytes), and the
    /// sum over keys of each feature.
    value_q: Vec<u8>,
    value_sum: Vec<i32>,
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
            + self.qkv_q.capacity()
            + self.acc.capacity() * 4
            + self.inter_q.capacity()
            + (self.scores.capacity() + self.dq.capacity() + self.pooled.capacity() + self.key_t.capacity()) * 4
            + (self.row_inv.capacity() + self.inter_row_inv.capacity() + self.epilogue.capacity()) * 4
            + self.key_q.capacity()
            + self.key_sum.capacity() * 4
            + self.value_q.capacity()
            + self.value_sum.capacity() * 4
    }
}

fn resize<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// `resize`, but running out of memory is an error instead of an abort. Exact, so the
/// workspace never holds more than `working_memory` says.
fn try_resize<T: Clone + Default>(v: &mut Vec<T>, n: usize) -> Result<()> {
    if v.len() < n {
        if v.try_reserve_exact(n - v.len()).is_err() {
            bail!(Status::OutOfMemory, "cannot allocate {} bytes of working memory", n.saturating_mul(core::mem::size_of::<T>()));
        }
        v.resize(n, T::default());
    }
    Ok(())
}

/// Largest output width of any linear layer, and the classifier's.
fn max_linear_n(layout: &ModelLayout) -> (usize, usize) {
    let c = &layout.config;
    let classes = layout.classifier.as_ref().map_or(0, |l| l.n);
    ((3 * c.hidden_size).max(c.intermediate_size).max(classes), classes)
}

/// Upper bound of the heap bytes one run allocates for `batch` sequences of `seq_len` tokens
/// on `threads` threads, with a fresh workspace (docs/HARDENING.md has the formula). None on
/// overflow.
pub fn working_memory(layout: &ModelLayout, batch: usize, seq_len: usize, threads: usize) -> Option<usize> {
    let c = &layout.config;
    let (h, dh) = (c.hidden_size, c.head_dim());
    let (max_n, classes) = max_linear_n(layout);
    let t = batch.checked_mul(seq_len)?;
    let pooled = if layout.classifier.is_some() { batch.checked_mul(h)? } else { 0 };
    let (int8, int8_values) = (layout.int8_scores(), layout.int8_values());
    let per_row = layout.per_row_linears() > 0;
    let f32s = [
        t.checked_mul(h.checked_mul(6)?)?,                                   // hidden, qkv (3x), ctx, tmp
        t.checked_mul((3 * h).max(c.intermediate_size))?.max(batch.checked_mul(classes)?), // acc (i32)
        max_n,                                                               // dq
        pooled,                                                              // pooled
        // attention: K^T of every sequence over keys padded to KEY_TILE; per task the scores
        // of QUERY_ROWS queries and their query rows
        batch.checked_mul(padded_keys(seq_len))?.checked_mul(h)?,
        threads.checked_mul(padded_keys(seq_len).checked_mul(QUERY_ROWS)?.checked_add(QUERY_ROWS * dh)?)?,
        // int8 attention: key sums of every sequence and head, and per task the int32 scores of
        // a block of queries
        if int8 { t.checked_mul(c.num_heads)? } else { 0 },
        if int8 { threads.checked_mul(SCORE_BLOCK.checked_mul(seq_len)?)? } else { 0 },
        // int8 P·V: feature sums of every sequence and head, and per task the int32 outputs of
        // a block of queries
        if int8_values { batch.checked_mul(h)? } else { 0 },
        if int8_values { threads.checked_mul(SCORE_BLOCK * dh)? } else { 0 },
        // per-row input scales: 1/S_x of every row of xq and inter_q, and one dequantized row
        // of the widest layer per task
        if per_row { t.checked_mul(2)? } else { 0 },
        if per_row { threads.checked_mul(max_n)? } else { 0 },
    ];
    let bytes = [
        t.checked_mul(12)?,                                                  // tokens
        batch.checked_add(1)?.checked_mul(8)?,                               // seq_start
        t.checked_mul(ops::padded_k(h))?,                                    // xq
        t.checked_mul(ops::padded_k(c.intermediate_size))?,                  // inter_q
        // Task lists of the parallel regions (blocks, slots, attention items).
        batch.checked_add(threads.checked_mul(4)?)?.checked_mul(128)?.checked_add(4096)?,
        // GEMM kernel scratch: a packed copy of at most all rows of A, K padded to 64, per
        // thread (thread-local and kept, so only a thread's first large run allocates it).
        // Three times: growing it may briefly hold the old and the new block.
        threads.checked_mul(t.checked_mul(h.max(c.intermediate_size).div_ceil(64) * 64)?.checked_add(64)?.checked_mul(3)?)?,
        // int8 attention: packed K of every sequence and head, and per task a block of int8 queries
        if int8 { batch.checked_mul(c.num_heads)?.checked_mul(packed_len(seq_len, dh))? } else { 0 },
        if int8 { threads.checked_mul(SCORE_BLOCK * dh)? } else { 0 },
        // int8 P·V: packed V of every sequence and head, and per task a block of u8 probabilities
        if int8_values { batch.checked_mul(c.num_heads)?.checked_mul(packed_len(dh, seq_len))? } else { 0 },
        if int8_values { threads.checked_mul(SCORE_BLOCK.checked_mul(seq_len)?)? } else { 0 },
        // fully int8 attention: Q, K, V as int8
        if int8 && int8_values { t.checked_mul(3 * h)? } else { 0 },
    ];
    let mut total = 0usize;
    for n in f32s {
        total = total.checked_add(n.checked_mul(4)?)?;
    }
    for n in bytes {
        total = total.checked_add(n)?;
    }
    Some(total)
}

/// Query rows per int8 attention-scores GEMM (a multiple of `QUERY_ROWS`).
const SCORE_BLOCK: usize = 64;

/// Keys of a sequence padded to whole scores tiles (saturating, so the working-memory bound
/// of an absurd length overflows into `None` there rather than wrapping).
fn padded_keys(len: usize) -> usize {
    len.div_ceil(KEY_TILE).saturating_mul(KEY_TILE)
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
    if ws.tokens.try_reserve_exact(total).is_err() || ws.seq_start.try_reserve_exact(batch + 1).is_err() {
        bail!(Status::OutOfMemory, "cannot allocate the token list of {total} tokens");
    }
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

/// Runs `f(i)` for `i < n`, in parallel where the runtime has threads. Which thread runs a
/// task never changes its result.
pub trait Parallel: Sync {
    fn threads(&self) -> usize;
    fn for_each(&self, n: usize, f: &(dyn Fn(usize) + Sync));
}

/// The single-threaded executor (and the only one without `std`).
pub struct Serial;

impl Parallel for Serial {
    fn threads(&self) -> usize {
        1
    }
    fn for_each(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(f)
    }
}

#[cfg(feature = "std")]
impl Parallel for crate::threads::ThreadPool {
    fn threads(&self) -> usize {
        crate::threads::ThreadPool::threads(self)
    }
    fn for_each(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        self.parallel_for(n, f)
    }
}

/// A value handed to exactly one task. Tasks own disjoint row blocks of the buffers they
/// write, carved out before the parallel region; each task index takes its own slot once.
struct Slot<T> {
    value: core::cell::UnsafeCell<Option<T>>,
    taken: core::sync::atomic::AtomicBool,
}

// SAFETY: the atomic flag lets exactly one thread move the value out and nothing else touches
// the cell; `T: Send` makes handing the value to that thread sound.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    fn new(v: T) -> Self {
        Slot { value: core::cell::UnsafeCell::new(Some(v)), taken: core::sync::atomic::AtomicBool::new(false) }
    }

    fn take(&self) -> T {
        let first = !self.taken.swap(true, core::sync::atomic::Ordering::AcqRel);
        assert!(first, "a task slot was taken twice");
        // SAFETY: the swap succeeded for this caller only, so this is the only access ever.
        unsafe { (*self.value.get()).take() }.expect("slot holds a value until taken")
    }
}

/// Splits `rows` into at most `parts` contiguous blocks: (first row, row count).
fn row_blocks(rows: usize, parts: usize) -> Vec<(usize, usize)> {
    let per = rows.div_ceil(parts.max(1)).max(1);
    (0..rows).step_by(per).map(|r| (r, per.min(rows - r))).collect()
}

/// Carves `buf` into consecutive pieces of `rows * row_len` elements for the given blocks.
fn carve<'a, T>(mut buf: &'a mut [T], blocks: &[(usize, usize)], row_len: usize) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(blocks.len());
    for &(_, rows) in blocks {
        let (head, tail) = core::mem::take(&mut buf).split_at_mut(rows * row_len);
        out.push(head);
        buf = tail;
    }
    out
}

/// What a linear layer's input is.
enum LinearIn<'x> {
    /// fp32 rows of K values, quantized with the layer's input scale (or per row).
    F32(&'x [f32]),
    /// Already-quantized rows of stride `padded_k(K)`, and for a per-row input each row's
    /// dequantization multiplier 1/S_x.
    I8 { rows: &'x [i8], row_inv: &'x [f32] },
}

/// What a linear layer does with its dequantized output (the fused epilogue).
enum LinearOut<'o> {
    /// Store fp32 rows of N values.
    F32(&'o mut [f32]),
    /// LayerNorm(y + residual) into fp32 rows.
    ResidualNorm { out: &'o mut [f32], residual: &'o [f32], ln: &'o LayerNormRef },
    /// GELU(y), quantized as the next layer's input, into rows of stride `padded_k(N)`; a
    /// per-row next input also writes each row's 1/S_x into `row_inv`.
    GeluQuant { out: &'o mut [i8], next: InputQuant, row_inv: &'o mut [f32] },
    /// y requantized into int8 rows of N values, each third of a row with its own scale (the
    /// Q, K and V of a fully int8 attention).
    QuantizeThirds { out: &'o mut [i8], scales: [f32; 3] },
}

/// The workspace buffers a linear layer computes in.
struct LinearBufs<'w> {
    /// Quantized input rows (fp32 input only).
    xq: &'w mut Vec<i8>,
    /// 1/S_x of each quantized input row (per-row input only).
    row_inv: &'w mut Vec<f32>,
    acc: &'w mut Vec<i32>,
    /// Per-output dequantization multipliers.
    dq: &'w mut Vec<f32>,
    /// One dequantized row per task, for epilogues that requantize after a per-row input.
    epilogue: &'w mut Vec<f32>,
}

/// [`LinearBufs`] of a workspace (disjoint field borrows, so inputs and outputs can be other fields).
macro_rules! bufs {
    ($ws:expr) => {
        LinearBufs { xq: &mut $ws.xq, row_inv: &mut $ws.row_inv, acc: &mut $ws.acc, dq: &mut $ws.dq, epilogue: &mut $ws.epilogue }
    };
}

struct Ctx<'m> {
    file: &'m [u8],
    kernel: Kernel,
    par: &'m dyn Parallel,
    eps: f32,
}

/// What one task of a linear layer owns: its rows of the quantized input and their 1/S_x, the
/// accumulators, the output, the next layer's 1/S_x (GELU into a per-row input), and one
/// epilogue row.
type LinearTask<'a> = ((Option<&'a mut [i8]>, Option<&'a mut [f32]>), &'a mut [i32], OutPart<'a>, Option<&'a mut [f32]>, &'a mut [f32]);

impl Ctx<'_> {
    fn f32s(&self, r: &core::ops::Range<usize>) -> &[f32] {
        cast(self.file, r)
    }
    fn i32s(&self, r: &core::ops::Range<usize>) -> &[i32] {
        cast(self.file, r)
    }

    /// One int8 linear layer over `rows` rows: quantize (if needed), GEMM with int32
    /// accumulation, then the epilogue, fused per block of rows so each block stays in cache.
    fn linear(&self, gemm_op: Op, lin: &LinearRef, x: LinearIn, rows: usize, bufs: LinearBufs, out: LinearOut) {
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
        resize(acc, rows * n);
        let blocks = row_blocks(rows, self.par.threads());
        let xq_parts: Vec<(Option<&mut [i8]>, Option<&mut [f32]>)> = match x {
            LinearIn::F32(_) if per_row => {
                carve(&mut xq[..rows * kp], &blocks, kp).into_iter().zip(carve(&mut row_inv[..rows], &blocks, 1)).map(|(q, r)| (Some(q), Some(r))).collect()
            }
            LinearIn::F32(_) => carve(&mut xq[..rows * kp], &blocks, kp).into_iter().map(|q| (Some(q), None)).collect(),
            LinearIn::I8 { .. } => blocks.iter().map(|_| (None, None)).collect(),
        };
        let acc_parts = carve(&mut acc[..rows * n], &blocks, n);
        let mut thirds = [0.0f32; 3];
        let mut next = InputQuant::Static(0.0);
        let mut next_inv_parts: Vec<Option<&mut [f32]>> = blocks.iter().map(|_| None).collect();
        let (out_parts, residual, ln): (Vec<OutPart>, _, _) = match out {
            LinearOut::F32(o) => (carve(&mut o[..rows * n], &blocks, n).into_iter().map(OutPart::F32).collect(), None, None),
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
        let needs_epilogue_row = per_row || next.is_per_row();
        let epi_len = if needs_epilogue_row { n } else { 0 };
        resize(epilogue, blocks.len() * epi_len);
        let epi_parts: Vec<&mut [f32]> =
            if epi_len > 0 { epilogue[..blocks.len() * n].chunks_exact_mut(n).collect() } else { blocks.iter().map(|_| &mut [][..]).collect() };
        let slots: Vec<Slot<LinearTask>> = xq_parts
            .into_iter()
            .zip(acc_parts)
            .zip(out_parts)
            .zip(next_inv_parts)
            .zip(epi_parts)
            .map(|((((q, a), o), ni), e)| Slot::new((q, a, o, ni, e)))
            .collect();
        let (w, wsum, dq) = (&self.file[lin.weight.clone()], self.i32s(&lin.weight_sum), &dq[..n]);
        // Static input: int32 bias at S_w S_x. Per-row input: f32 bias.
        let (bias_i32, bias_f32): (&[i32], &[f32]) = if per_row { (&[], self.f32s(&lin.bias)) } else { (self.i32s(&lin.bias), &[]) };
        let ln = ln.map(|l| (self.f32s(&l.gamma), self.f32s(&l.beta)));
        self.par.for_each(blocks.len(), &|b| self.kernel.with_fp32_simd(#[inline(always)] || {
            let ((xq_part, row_inv_part), acc_part, mut out_part, mut next_inv, epi) = slots[b].take();
            let (r0, nrows) = blocks[b];
            let (a, row_inv): (&[i8], &[f32]) = match (&x, xq_part) {
                (LinearIn::F32(xf), Some(q)) => {
                    let xf = &xf[r0 * k..(r0 + nrows) * k];
                    match (lin.input, row_inv_part) {
                        (InputQuant::PerRow, Some(ri)) => {
                            timed!(Op::QuantizeInput, ops::quantize_rows_per_row(xf, nrows, k, q, ri));
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
            timed!(gemm_op, self.kernel.gemm_i8(a, kp, nrows, w, wsum, n, k, 0, n, acc_part, n));
            let epilogue_op = match (&out_part, residual) {
                (OutPart::I8(_), _) => Op::GeluRequantize,
                (OutPart::I8Thirds(_), _) => Op::DequantizeBias,
                (OutPart::F32(_), Some(_)) => Op::ResidualLayerNorm,
                (OutPart::F32(_), None) => Op::DequantizeBias,
            };
            // y = the layer's fp32 output row r.
            let dequantize = |r: usize, acc_row: &[i32], y: &mut [f32]| {
                if per_row {
                    ops::dequantize_row_per_row(acc_row, bias_f32, dq, row_inv[r], y);
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
                            (false, InputQuant::Static(next_scale), _) => ops::dequantize_gelu_quantize_row(acc_row, bias_i32, dq, next_scale, o),
                            (_, next, next_inv) => {
                                dequantize(r, acc_row, epi);
                                for v in epi.iter_mut() {
                                    *v = math::gelu(*v);
                                }
                                match (next, next_inv) {
                                    (InputQuant::PerRow, Some(ni)) => ni[r] = ops::quantize_row_per_row(epi, o),
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
        }));
    }

    fn embedding_row<'a>(&'a self, e: &EmbeddingRef, row: usize, h: usize) -> &'a [i8] {
        bytemuck::cast_slice(&self.file[e.table.start + row * h..e.table.start + (row + 1) * h])
    }
}

enum OutPart<'o> {
    /// fp32 rows.
    F32(&'o mut [f32]),
    I8(&'o mut [i8]),
    I8Thirds(&'o mut [i8]),
}

/// Runs the model on `input`, writing `layout.output_dim(seq_len)` floats per sequence.
pub fn forward(layout: &ModelLayout, file: &[u8], kernel: Kernel, par: &dyn Parallel, input: &Input, ws: &mut Workspace, output: &mut [f32]) -> Result<()> {
    let needed = input.batch.saturating_mul(layout.output_dim(input.seq_len));
    if output.len() < needed {
        bail!(Status::BufferTooSmall, "output has room for {} floats, {needed} are needed", output.len());
    }
    gather_tokens(layout, input, ws)?;
    let cfg = &layout.config;
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let t = ws.tokens.len();
    let cx = Ctx { file, kernel, par, eps: cfg.layer_norm_eps };

    // Everything the layers below grow is sized here, fallibly; their `resize` calls are then no-ops.
    let (max_n, classes) = max_linear_n(layout);
    try_resize(&mut ws.hidden, t * h)?;
    try_resize(&mut ws.qkv, t * 3 * h)?;
    try_resize(&mut ws.ctx, t * h)?;
    let (heads, dh) = (cfg.num_heads, cfg.head_dim());
    let lens = || ws.seq_start.windows(2).map(|w| w[1] - w[0]);
    let key_t_len: usize = if layout.layers.iter().any(|l| l.attention_scales.is_none()) { lens().map(|len| padded_keys(len) * h).sum() } else { 0 };
    let (key_q_len, key_sum_len): (usize, usize) = if layout.int8_scores() {
        (lens().map(|len| heads * packed_len(len, dh)).sum(), t * heads)
    } else {
        (0, 0)
    };
    let (value_q_len, value_sum_len): (usize, usize) = if layout.int8_values() {
        (lens().map(|len| heads * packed_len(dh, len)).sum(), input.batch * h)
    } else {
        (0, 0)
    };
    try_resize(&mut ws.key_t, key_t_len)?;
    try_resize(&mut ws.key_q, key_q_len)?;
    try_resize(&mut ws.key_sum, key_sum_len)?;
    try_resize(&mut ws.value_q, value_q_len)?;
    if layout.layers.iter().any(|l| l.attention_scales.is_some() && l.attention_value_scale.is_some()) {
        try_resize(&mut ws.qkv_q, t * 3 * h)?;
    }
    try_resize(&mut ws.value_sum, value_sum_len)?;
    try_resize(&mut ws.tmp, t * h)?;
    try_resize(&mut ws.inter_q, t * padded_k(inter))?;
    try_resize(&mut ws.xq, t * padded_k(h))?;
    try_resize(&mut ws.acc, (t * (3 * h).max(inter)).max(input.batch * classes))?;
    try_resize(&mut ws.dq, max_n)?;
    if layout.per_row_linears() > 0 {
        try_resize(&mut ws.row_inv, t.max(input.batch))?;
        try_resize(&mut ws.inter_row_inv, t)?;
        try_resize(&mut ws.epilogue, par.threads() * max_n)?;
    }
    if layout.classifier.is_some() {
        try_resize(&mut ws.pooled, input.batch * h)?;
    }

    // Embeddings: (word + token type) + position, as BERT adds them, then LayerNorm.
    {
        let blocks = row_blocks(t, par.threads());
        let slots: Vec<Slot<&mut [f32]>> = carve(&mut ws.hidden[..t * h], &blocks, h).into_iter().map(Slot::new).collect();
        let (tokens, e) = (&ws.tokens, layout);
        let (g, b) = (cx.f32s(&layout.embeddings_layer_norm.gamma), cx.f32s(&layout.embeddings_layer_norm.beta));
        par.for_each(blocks.len(), &|blk| timed!(Op::Embeddings, {
            let rows = slots[blk].take();
            let (r0, n) = blocks[blk];
            for (i, row) in rows.chunks_exact_mut(h).enumerate().take(n) {
                let (pos, id, ty) = tokens[r0 + i];
                let w = cx.embedding_row(&e.word_embeddings, id as usize, h);
                let p = cx.embedding_row(&e.position_embeddings, pos as usize, h);
                let y = cx.embedding_row(&e.token_type_embeddings, ty as usize, h);
                let (iw, ip, iy) = (e.word_embeddings.inv_scale, e.position_embeddings.inv_scale, e.token_type_embeddings.inv_scale);
                for (d, out) in row.iter_mut().enumerate() {
                    *out = (w[d] as f32 * iw + y[d] as f32 * iy) + p[d] as f32 * ip;
                }
                ops::layer_norm(row, g, b, cx.eps);
            }
        }));
    }

    for layer in &layout.layers {
        // A fully int8 attention needs Q, K, V only as int8: the QKV epilogue requantizes them.
        let qkv = match (layer.attention_scales, layer.attention_value_scale) {
            (Some(sc), Some(sv)) => {
                let out = LinearOut::QuantizeThirds { out: &mut ws.qkv_q, scales: [sc.query_scale, sc.key_scale, sv] };
                cx.linear(Op::GemmQkv, &layer.qkv, LinearIn::F32(&ws.hidden), t, bufs!(ws), out);
                Qkv::I8(&ws.qkv_q)
            }
            _ => {
                cx.linear(Op::GemmQkv, &layer.qkv, LinearIn::F32(&ws.hidden), t, bufs!(ws), LinearOut::F32(&mut ws.qkv));
                Qkv::F32(&ws.qkv)
            }
        };
        let keys = match layer.attention_scales {
            None => {
                let Qkv::F32(qkv) = qkv else { unreachable!("fp32 scores come with fp32 QKV") };
                transpose_keys(&cx, heads, dh, h, &ws.seq_start, qkv, &mut ws.key_t[..key_t_len]);
                Keys::F32 { key_t: &ws.key_t }
            }
            Some(scales) => {
                pack_keys(&cx, heads, dh, h, &ws.seq_start, qkv, scales.key_scale, &mut ws.key_q[..key_q_len], &mut ws.key_sum[..key_sum_len]);
                Keys::I8 { packed: &ws.key_q, sums: &ws.key_sum, scales }
            }
        };
        let values = match layer.attention_value_scale {
            None => Values::F32,
            Some(value_scale) => {
                pack_values(&cx, heads, dh, h, &ws.seq_start, qkv, value_scale, &mut ws.value_q[..value_q_len], &mut ws.value_sum[..value_sum_len]);
                Values::I8 { packed: &ws.value_q, sums: &ws.value_sum, value_scale }
            }
        };
        attention(&cx, heads, dh, h, &ws.seq_start, qkv, keys, values, &mut ws.ctx[..t * h]);
        let ln = &layer.attention_layer_norm;
        cx.linear(Op::GemmAttentionOutput, &layer.attention_output, LinearIn::F32(&ws.ctx), t, bufs!(ws), LinearOut::ResidualNorm { out: &mut ws.tmp, residual: &ws.hidden, ln });
        core::mem::swap(&mut ws.hidden, &mut ws.tmp);
        let next = layer.output.input;
        cx.linear(Op::GemmIntermediate, &layer.intermediate, LinearIn::F32(&ws.hidden), t, bufs!(ws), LinearOut::GeluQuant { out: &mut ws.inter_q, next, row_inv: &mut ws.inter_row_inv });
        let ln = &layer.output_layer_norm;
        cx.linear(Op::GemmOutput, &layer.output, LinearIn::I8 { rows: &ws.inter_q, row_inv: &ws.inter_row_inv }, t, bufs!(ws), LinearOut::ResidualNorm { out: &mut ws.tmp, residual: &ws.hidden, ln });
        core::mem::swap(&mut ws.hidden, &mut ws.tmp);
    }

    timed!(Op::Head, write_head(layout, &cx, input, ws, output));
    Ok(())
}

/// K of every sequence and head transposed to [dh][len_p] (keys padded to whole tiles, padding
/// zero), so q.K^T is a sum over d of q[d] * row d: a fixed order for every key, vectorized
/// across keys rather than reduced per key. Once per layer, shared by all query blocks.
fn transpose_keys(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: &[f32], key_t: &mut [f32]) {
    // One task per (sequence, head): (first key row, keys, padded keys, head).
    let mut tasks = Vec::new();
    let mut pieces = Vec::new();
    let mut rest = key_t;
    for w in seq_start.windows(2) {
        let (a, len) = (w[0], w[1] - w[0]);
        let len_p = padded_keys(len);
        for hd in 0..heads {
            let (piece, tail) = core::mem::take(&mut rest).split_at_mut(dh * len_p);
            pieces.push(Slot::new(piece));
            rest = tail;
            tasks.push((a, len, len_p, hd));
        }
    }
    cx.par.for_each(tasks.len(), &|i| timed!(Op::AttentionKeyTranspose, {
        let kt = pieces[i].take();
        let (a, len, len_p, hd) = tasks[i];
        let ko = h + hd * dh;
        for j in 0..len {
            let kr = (a + j) * 3 * h + ko;
            for (d, &kv) in qkv[kr..kr + dh].iter().enumerate() {
                kt[d * len_p + j] = kv;
            }
        }
        for d in 0..dh {
            kt[d * len_p + len..(d + 1) * len_p].fill(0.0);
        }
    }));
}

/// One piece of `packed` and of `sums` per (sequence, head), back to back, sized by
/// `sizes(keys) = (bytes, sums)`, as task slots, with each task's (first key row, keys, head).
#[allow(clippy::type_complexity)]
fn per_head_pieces<'a>(
    seq_start: &[usize],
    heads: usize,
    packed: &'a mut [u8],
    sums: &'a mut [i32],
    sizes: impl Fn(usize) -> (usize, usize),
) -> (Vec<Slot<(&'a mut [u8], &'a mut [i32])>>, Vec<(usize, usize, usize)>) {
    let (mut tasks, mut pieces) = (Vec::new(), Vec::new());
    let (mut rest, mut rest_sums) = (packed, sums);
    for w in seq_start.windows(2) {
        let (a, len) = (w[0], w[1] - w[0]);
        let (bytes, n_sums) = sizes(len);
        for hd in 0..heads {
            let (piece, tail) = core::mem::take(&mut rest).split_at_mut(bytes);
            let (piece_sums, tail_sums) = core::mem::take(&mut rest_sums).split_at_mut(n_sums);
            pieces.push(Slot::new((piece, piece_sums)));
            (rest, rest_sums) = (tail, tail_sums);
            tasks.push((a, len, hd));
        }
    }
    (pieces, tasks)
}

/// K of every sequence and head quantized with `key_scale` and packed as the weight matrix of
/// a scores GEMM (keys as output columns, dh as the inner dimension), plus each key's sum for
/// the kernels' +128 activation offset. Once per layer, shared by all query blocks.
#[allow(clippy::too_many_arguments)]
fn pack_keys(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, key_scale: f32, packed: &mut [u8], sums: &mut [i32]) {
    let (pieces, tasks) = per_head_pieces(seq_start, heads, packed, sums, |len| (packed_len(len, dh), len));
    let k4 = dh.div_ceil(crate::kernels::KGROUP);
    cx.par.for_each(tasks.len(), &|i| cx.kernel.with_fp32_simd(#[inline(always)] || timed!(Op::AttentionKeyTranspose, {
        let (piece, piece_sums) = pieces[i].take();
        let (a, len, hd) = tasks[i];
        // Padding (keys past `len` in the last panel, k past dh) stays zero.
        piece.fill(0);
        let mut row = alloc::vec![0i8; k4 * 4];
        let ko = h + hd * dh;
        for (j, sum) in piece_sums.iter_mut().enumerate().take(len) {
            qkv.quantized(a + j, h, ko, key_scale, &mut row[..dh]);
            *sum = row.iter().map(|&q| q as i32).sum();
            // Key j is column j % 16 of panel j / 16: 4 consecutive k per 64-byte group.
            let base = (j / crate::kernels::PANEL) * k4 * 64 + (j % crate::kernels::PANEL) * 4;
            for (g, quad) in row.chunks_exact(4).enumerate() {
                piece[base + g * 64..base + g * 64 + 4].copy_from_slice(bytemuck::cast_slice(quad));
            }
        }
    })));
}

/// V of every sequence and head quantized with `value_scale` and packed as the weight matrix of
/// a P·V GEMM (features as output columns, keys as the inner dimension), plus each feature's
/// sum over the keys (for the probabilities' offset, see `attention`). Once per layer.
#[allow(clippy::too_many_arguments)]
fn pack_values(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, value_scale: f32, packed: &mut [u8], sums: &mut [i32]) {
    use crate::kernels::{KGROUP, PANEL};
    let (pieces, tasks) = per_head_pieces(seq_start, heads, packed, sums, |len| (packed_len(dh, len), dh));
    cx.par.for_each(tasks.len(), &|i| cx.kernel.with_fp32_simd(#[inline(always)] || timed!(Op::AttentionKeyTranspose, {
        let (piece, piece_sums) = pieces[i].take();
        let (a, len, hd) = tasks[i];
        let k4 = len.div_ceil(KGROUP);
        // Padding (features past dh in the last panel, keys past len) stays zero.
        piece.fill(0);
        piece_sums.fill(0);
        let vo = 2 * h + hd * dh;
        // Four keys at a time, quantized as rows; feature d of the four keys is the 4-byte group
        // of column d, so the 16 columns of a panel are one 64-byte interleave of the rows.
        let mut quad = alloc::vec![0i8; KGROUP * dh];
        for j0 in (0..len).step_by(KGROUP) {
            let keys = (len - j0).min(KGROUP);
            for (jj, row) in quad.chunks_exact_mut(dh).enumerate() {
                if jj < keys {
                    qkv.quantized(a + j0 + jj, h, vo, value_scale, row);
                } else {
                    row.fill(0);
                }
            }
            let g = j0 / KGROUP;
            for d0 in (0..dh).step_by(PANEL) {
                let cols = (dh - d0).min(PANEL);
                let at = ((d0 / PANEL) * k4 + g) * 64;
                let dst = &mut piece[at..at + cols * KGROUP];
                let (q0, q1, q2, q3) = (&quad[d0..d0 + cols], &quad[dh + d0..dh + d0 + cols], &quad[2 * dh + d0..2 * dh + d0 + cols], &quad[3 * dh + d0..3 * dh + d0 + cols]);
                for (c, group) in dst.chunks_exact_mut(KGROUP).enumerate() {
                    group.copy_from_slice(&[q0[c] as u8, q1[c] as u8, q2[c] as u8, q3[c] as u8]);
                }
            }
            for row in quad.chunks_exact(dh).take(keys) {
                for (sum, &q) in piece_sums.iter_mut().zip(row) {
                    *sum += q as i32;
                }
            }
        }
    })));
}

/// The QKV projection's output: fp32 rows of 3H, or (fully int8 attention) int8 rows of 3H
/// already requantized with S_q, S_k, S_v.
#[derive(Clone, Copy)]
enum Qkv<'a> {
    F32(&'a [f32]),
    I8(&'a [i8]),
}

impl Qkv<'_> {
    /// Row `r`'s values `at..at + out.len()` as int8: requantized with `scale`, or copied.
    #[inline(always)]
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
enum Keys<'k> {
    /// fp32 K^T, [sequence][head][dh][keys padded to KEY_TILE].
    F32 { key_t: &'k [f32] },
    /// int8 K, [sequence][head][packed_len(len, dh)] bytes, sums [sequence][head][len].
    I8 { packed: &'k [u8], sums: &'k [i32], scales: AttentionScales },
}

/// The values of one layer's attention: the fp32 V columns of `qkv`, or as `pack_values` left them.
#[derive(Clone, Copy)]
enum Values<'v> {
    F32,
    /// int8 V, [sequence][head][packed_len(dh, len)] bytes, sums [sequence][head][dh].
    I8 { packed: &'v [u8], sums: &'v [i32], value_scale: f32 },
}

/// softmax(q k^T / sqrt(dh)) v per sequence and head, split over blocks of query rows. Scores
/// are fp32 dot products, or with int8 keys int32 dot products of requantized q and k scaled
/// by 1/(S_q S_k); softmax is fp32; P·V is fp32, or with int8 values an int32 product of the
/// probabilities as u8 (scale 255) and requantized v, scaled by 1/(255 S_v).
#[allow(clippy::too_many_arguments)]
fn attention(cx: &Ctx, heads: usize, dh: usize, h: usize, seq_start: &[usize], qkv: Qkv, keys: Keys, values: Values, ctx: &mut [f32]) {
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
    let slots: Vec<Slot<&mut [f32]>> = carve(ctx, &blocks, h).into_iter().map(Slot::new).collect();
    cx.par.for_each(items.len(), &|it| cx.kernel.with_fp32_simd(#[inline(always)] || {
        let out = slots[it].take();
        let (a, b, i0, n, [kt0, kp0, ks0, vp0, vs0]) = items[it];
        let len = b - a;
        // Keys padded to whole register tiles; the padding lanes are computed and ignored.
        let len_p = padded_keys(len);
        let block = SCORE_BLOCK.min(n);
        let mut scores = alloc::vec![0.0f32; QUERY_ROWS * len_p];
        let mut q = alloc::vec![0.0f32; if matches!(keys, Keys::F32 { .. }) { QUERY_ROWS * dh } else { 0 }];
        // int8 scores: the block's queries and their int32 scores.
        let (mut q8, mut acc) = match keys {
            Keys::I8 { .. } => (alloc::vec![0i8; block * dh], alloc::vec![0i32; block * len]),
            Keys::F32 { .. } => (Vec::new(), Vec::new()),
        };
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
        for hd in 0..heads {
            let (qo, vo) = (hd * dh, 2 * h + hd * dh);
            for s0 in (i0..i0 + n).step_by(block) {
                let brows = block.min(i0 + n - s0);
                if let Keys::I8 { packed, sums, scales } = keys {
                    let kp_len = packed_len(len, dh);
                    let kp = &packed[kp0 + hd * kp_len..kp0 + (hd + 1) * kp_len];
                    let ks = &sums[ks0 + hd * len..ks0 + (hd + 1) * len];
                    timed!(Op::AttentionScores, {
                        for (r, qrow) in q8.chunks_exact_mut(dh).take(brows).enumerate() {
                            qkv.quantized(s0 + r, h, qo, scales.query_scale, qrow);
                        }
                        cx.kernel.gemm_i8(&q8, dh, brows, kp, ks, len, dh, 0, len, &mut acc, len);
                    });
                }
                for r0 in (s0..s0 + brows).step_by(QUERY_ROWS) {
                    let rows = QUERY_ROWS.min(s0 + brows - r0);
                    match keys {
                        Keys::F32 { key_t } => {
                            let kt = &key_t[kt0 + hd * dh * len_p..kt0 + (hd + 1) * dh * len_p];
                            for r in 0..QUERY_ROWS {
                                // Rows past the block repeat the last one; their results are not stored.
                                let i = r0 + r.min(rows - 1);
                                q[r * dh..(r + 1) * dh].copy_from_slice(&qkv_f32[i * 3 * h + qo..i * 3 * h + qo + dh]);
                            }
                            timed!(Op::AttentionScores, query_key_scores(&cx.kernel, &q, dh, kt, len_p, &mut scores));
                            timed!(Op::AttentionSoftmax, for r in 0..rows {
                                ops::softmax_scaled(&mut scores[r * len_p..r * len_p + len], inv_sqrt_dh);
                            });
                        }
                        Keys::I8 { scales, .. } => {
                            // Scores are acc / (S_q S_k), divided by sqrt(dh) in the softmax: one scale.
                            let score_scale = inv_sqrt_dh / (scales.query_scale * scales.key_scale);
                            timed!(Op::AttentionSoftmax, for r in 0..rows {
                                let acc_row = &acc[(r0 - s0 + r) * len..(r0 - s0 + r + 1) * len];
                                ops::softmax_scaled_i32(acc_row, score_scale, &mut scores[r * len_p..r * len_p + len]);
                            });
                        }
                    }
                    match values {
                        Values::F32 => {
                            let c0 = (r0 - i0) * h + hd * dh;
                            let v_rows = &qkv_f32[a * 3 * h + vo..];
                            timed!(Op::AttentionValues, weighted_values(&cx.kernel, &scores, len_p, len, rows, v_rows, 3 * h, dh, &mut out[c0..], h));
                        }
                        Values::I8 { .. } => timed!(Op::AttentionValues, for r in 0..rows {
                            let p_row = &mut p8[(r0 - s0 + r) * len..(r0 - s0 + r + 1) * len];
                            ops::quantize_probabilities(&scores[r * len_p..r * len_p + len], p_row);
                        }),
                    }
                }
                if let Values::I8 { packed, sums, value_scale } = values {
                    let vp_len = packed_len(dh, len);
                    let vp = &packed[vp0 + hd * vp_len..vp0 + (hd + 1) * vp_len];
                    let vs = &sums[vs0 + hd * dh..vs0 + (hd + 1) * dh];
                    timed!(Op::AttentionValues, {
                        cx.kernel.gemm_i8(&p8, len, brows, vp, vs, dh, len, 0, dh, &mut acc_v, dh);
                        // p8 holds u8 - 128, so acc_v = sum_j (p_j - 128) v_j: add 128 * sum_j v_j back.
                        let inv = 1.0 / (PROBABILITY_SCALE * value_scale);
                        for r in 0..brows {
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
    let mut tile = [[0.0f32; KEY_TILE]; QUERY_ROWS];
    for j0 in (0..len_p).step_by(KEY_TILE) {
        kernel.attention_scores_tile(q, dh, &kt[j0..], len_p, &mut tile);
        for (r, t) in tile.iter().enumerate() {
            scores[r * len_p + j0..r * len_p + j0 + KEY_TILE].copy_from_slice(t);
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
            cx.linear(Op::Head, pooler, LinearIn::F32(&ws.pooled), batch, bufs!(ws), LinearOut::F32(&mut ws.tmp));
            for v in ws.tmp[..batch * h].iter_mut() {
                *v = math::tanh(*v);
            }
            let n = classifier.n;
            cx.linear(Op::Head, classifier, LinearIn::F32(&ws.tmp), batch, bufs!(ws), LinearOut::F32(&mut output[..batch * n]));
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
