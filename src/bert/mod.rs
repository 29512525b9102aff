//! The BERT forward pass over a validated layout: int8 GEMMs for every linear layer, fp32
//! embeddings sum, LayerNorm, attention softmax and GELU.
//!
//! Padding is removed before any work: only tokens whose mask is 1 are computed, packed
//! sequence after sequence. A sequence's result therefore does not depend on the batch it is in
//! or on how much padding surrounds it, and every reduction runs in a fixed order, so outputs
//! are bit-identical across batch composition and kernel choice.
//!
//! This module holds the pass itself, its workspace and the parallel helpers; `linear` one int8
//! linear layer with its epilogues, `attention` the attention block, `head` the output head.

use alloc::vec::Vec;

use crate::error::{bail, Result, Status};
use crate::kernels::attention::{KEY_TILE, KEY_TILE_NARROW, QUERY_ROWS, VALUE_TILE, VALUE_TILE_HALF};
use crate::kernels::{Kernel, KernelKind};
use crate::kernels::packed_len;
use crate::model::{cast, Activation, Config, EmbeddingRef, EmbeddingScales, HeadKind, InputQuant, LayerNormRef, LinearRef, ModelLayout, Pooling, PROBABILITY_SCALE};
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

/// [`LinearBufs`] of a workspace (disjoint field borrows, so inputs and outputs can be other fields).
macro_rules! bufs {
    ($ws:expr) => {
        LinearBufs { xq: &mut $ws.xq, row_inv: &mut $ws.row_inv, acc: &mut $ws.acc, dq: &mut $ws.dq, epilogue: &mut $ws.epilogue }
    };
}

mod attention;
mod head;
mod linear;

use attention::{attention, pack_keys, pack_values, transpose_keys, HeadMax, Keys, Qkv, Values};
use head::write_head;
use linear::{Ctx, LinearBufs, LinearIn, LinearOut};

/// One batch of token ids. `token_type_ids` None = all zeros; `attention_mask` None = all ones.
#[derive(Debug, Clone, Copy)]
pub struct Input<'i> {
    pub input_ids: &'i [i32],
    pub token_type_ids: Option<&'i [i32]>,
    pub attention_mask: Option<&'i [i32]>,
    pub batch: usize,
    pub seq_len: usize,
    /// Positions `0..pooling_skip` of every sequence are left out of an embedding head's
    /// pooling (a prompt with `include_prompt: false`: [CLS] and the prompt's tokens). 0: none.
    pub pooling_skip: usize,
}

/// Scratch memory of a run, reused across runs (it only grows).
#[derive(Default)]
pub struct Workspace {
    /// (position, token id, token type) of every unmasked token, sequences back to back.
    tokens: Vec<(u32, u32, u32)>,
    /// Start of each sequence in `tokens` (batch + 1 entries).
    seq_start: Vec<usize>,
    hidden: Vec<f32>,
    /// Q, K, V as fp32 (layers whose attention reads fp32 rows, see `ModelLayout::fp32_qkv`).
    qkv: Vec<f32>,
    /// Q, K, V requantized by the QKV epilogue (fully int8 attention with static scales, or
    /// dynamic int8 attention: each row of each head with its own scale).
    qkv_q: Vec<i8>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    xq: Vec<i8>,
    /// 1/S_x of each row of `xq` (linear layers with a per-row input scale).
    row_inv: Vec<ops::RowScale>,
    acc: Vec<i32>,
    inter_q: Vec<i8>,
    /// 1/S_x of each row of `inter_q` (an FFN output layer with a per-row input scale).
    inter_row_inv: Vec<ops::RowScale>,
    /// One dequantized row per task of a linear layer whose epilogue requantizes after a
    /// per-row input (or into one), or per head (dynamic int8 attention's QKV).
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
    /// Dynamic int8 attention: max|x| of each row's Q, K, V per head ([row][3 x heads]).
    head_max: Vec<f32>,
    dq: Vec<f32>,
    pooled: Vec<f32>,
    /// Buffers of `Model::run_text`.
    #[cfg(feature = "text")]
    pub(crate) text: TextScratch,
    /// One workspace per task of the sequence-parallel path.
    per_task: Vec<Workspace>,
}

/// Token buffers for text input, reused across calls.
#[cfg(feature = "text")]
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
            + (self.row_inv.capacity() + self.inter_row_inv.capacity()) * core::mem::size_of::<ops::RowScale>()
            + self.epilogue.capacity() * 4
            + self.key_q.capacity()
            + self.key_sum.capacity() * 4
            + self.value_q.capacity()
            + self.value_sum.capacity() * 4
            + self.head_max.capacity() * 4
            + self.per_task.capacity() * core::mem::size_of::<Workspace>()
            + self.per_task.iter().map(Workspace::capacity_bytes).sum::<usize>()
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

/// int32 accumulators the encoder's linear layers over `t` rows need (the most of any one; QKV,
/// attention output and FFN output, FFN in). None on overflow.
fn encoder_accumulators(c: &Config, t: usize, threads: usize, kernel: Kernel) -> Option<usize> {
    let (h, inter) = (c.hidden_size, c.intermediate_size);
    if !cfg!(feature = "std") {
        // Every row of the widest layer, as `linear_accumulator_rows` gives (in less code).
        return t.checked_mul(h.checked_mul(3)?.max(inter));
    }
    let mut most = 0usize;
    for n in [h.checked_mul(3)?, h, inter] {
        most = most.max(linear_accumulator_rows(t, threads, n, kernel).checked_mul(n)?);
    }
    Some(most)
}

/// Largest output width of any linear layer, and the classifier's.
fn max_linear_n(layout: &ModelLayout) -> (usize, usize) {
    let c = &layout.config;
    // The head's widest linear layer (classifier or embedding Dense): one row per sequence.
    let classes = layout.classifier.iter().chain(layout.dense.iter()).map(|l| l.n).max().unwrap_or(0);
    ((3 * c.hidden_size).max(c.intermediate_size).max(classes), classes)
}

/// Widest input of an embedding head's Dense layers (0 without).
fn max_dense_k(layout: &ModelLayout) -> usize {
    layout.dense.iter().map(|d| d.k).max().unwrap_or(0)
}

/// Floats per sequence of the `pooled` buffer of an embedding head with Dense layers: the
/// pooled vector, and two outputs of the widest layer (the layers write them in turn).
fn dense_pooled_len(layout: &ModelLayout) -> usize {
    layout.pooled_dim() + 2 * layout.dense.iter().map(|d| d.n).max().unwrap_or(0)
}

/// Upper bound of the heap bytes one run allocates for `batch` sequences of `seq_len` tokens
/// on `threads` threads, with a fresh workspace (docs/HARDENING.md has the formula). None on
/// overflow.
pub fn working_memory(layout: &ModelLayout, batch: usize, seq_len: usize, threads: usize, kernel: Kernel) -> Option<usize> {
    let gathered = working_memory_gathered(layout, batch, seq_len, threads, kernel)?;
    // The sequence-parallel path (when the mask lets the batch split evenly): the token list of
    // the whole batch, the task lists, and per task a workspace that has run its sub-batches.
    let tasks = threads.max(1);
    let t = batch.checked_mul(seq_len)?;
    let per_task = working_memory_gathered(layout, sub_batch(seq_len).min(batch), seq_len, 1, kernel)?;
    let split = t
        .checked_mul(12)?
        .checked_add(batch.checked_add(1)?.checked_mul(8)?)?
        .checked_add(tasks.checked_mul(core::mem::size_of::<Workspace>() + 256)?)?
        .checked_add(tasks.checked_mul(per_task)?)?;
    Some(if cfg!(feature = "std") { gathered.max(split) } else { gathered })
}

/// [`working_memory`] of the operation-by-operation path.
fn working_memory_gathered(layout: &ModelLayout, batch: usize, seq_len: usize, threads: usize, kernel: Kernel) -> Option<usize> {
    let c = &layout.config;
    let (h, dh) = (c.hidden_size, c.head_dim());
    let (max_n, classes) = max_linear_n(layout);
    let t = batch.checked_mul(seq_len)?;
    let pooled = if !layout.dense.is_empty() {
        batch.checked_mul(dense_pooled_len(layout))?
    } else if layout.classifier.is_some() {
        batch.checked_mul(h)?
    } else {
        0
    };
    let (int8, int8_values) = (layout.int8_scores(), layout.int8_values());
    let per_row = layout.per_row_linears() > 0;
    // Query rows of an attention block: a sequence shorter than SCORE_BLOCK is one block.
    let score_rows = SCORE_BLOCK.min(seq_len);
    let f32s = [
        t.checked_mul(h.checked_mul(3)?)?,                                   // hidden, ctx, tmp
        if layout.fp32_qkv() { t.checked_mul(h.checked_mul(3)?)? } else { 0 }, // qkv (fp32)
        encoder_accumulators(c, t, threads, kernel)?.max(batch.checked_mul(classes)?), // acc (i32)
        max_n,                                                               // dq
        pooled,                                                              // pooled
        // attention: K^T of every sequence over keys padded (`padded_keys`); per task the scores
        // of a block of queries, QUERY_ROWS query rows, and one head's value rows
        if layout.fp32_scores() { batch.checked_mul(padded_keys(seq_len))?.checked_mul(h)? } else { 0 },
        threads.checked_mul(
            padded_keys(seq_len).checked_mul(score_rows.next_multiple_of(QUERY_ROWS))?.checked_add(QUERY_ROWS * dh)?.checked_add(seq_len.checked_mul(dh)?)?,
        )?,
        // int8 attention: key sums of every sequence and head, and per task the int32 scores of
        // a block of queries
        if int8 { t.checked_mul(c.num_heads)? } else { 0 },
        if int8 { threads.checked_mul(score_rows.checked_mul(seq_len)?)? } else { 0 },
        // int8 P·V: feature sums of every sequence and head, and per task the int32 outputs of
        // a block of queries
        if int8_values { batch.checked_mul(h)? } else { 0 },
        if int8_values { threads.checked_mul(score_rows * dh)? } else { 0 },
        // int8 attention: per task the S_q and probability scale of a block of queries, and
        // (dynamic) 1/S_k and 1/S_v of every key
        if int8 || int8_values { threads.checked_mul(score_rows.checked_mul(2)?.checked_add(seq_len.checked_mul(2)?)?)? } else { 0 },
        // dynamic int8 attention: per-head ranges of every row's Q, K, V
        if layout.dynamic_int8_attention { t.checked_mul(3 * c.num_heads)? } else { 0 },
        // per-row input scales: 1/S_x and zero point (two 4-byte words) of every row of xq and
        // inter_q, and one dequantized row of the widest layer per linear task
        if per_row { t.checked_mul(4)? } else { 0 },
        if per_row || layout.dynamic_int8_attention { max_linear_blocks(t, threads).checked_mul(max_n)? } else { 0 },
    ];
    let bytes = [
        t.checked_mul(12)?,                                                  // tokens
        batch.checked_add(1)?.checked_mul(8)?,                               // seq_start
        t.checked_mul(ops::padded_k(h))?.max(batch.checked_mul(ops::padded_k(max_dense_k(layout)))?), // xq
        t.checked_mul(ops::padded_k(c.intermediate_size))?,                  // inter_q
        // Task lists of the parallel regions (blocks, slots, attention items).
        batch.checked_add(threads.checked_mul(4)?)?.checked_add(max_linear_blocks(t, threads))?.checked_mul(128)?.checked_add(4096)?,
        // GEMM kernel scratch: a packed copy of at most all rows of A, K padded to 64 (AMX:
        // up to 16 rows more, and 64 bytes per output column), per thread (thread-local and
        // kept, so only a thread's first large run allocates it). Three times: growing it may
        // briefly hold the old and the new block.
        // The MCU kernels (other targets) keep only a row of A sign-extended: 2 bytes per k.
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            threads.checked_mul(
                t.checked_add(16)?
                    .checked_mul(h.max(c.intermediate_size).div_ceil(64) * 64)?
                    .checked_add(max_n.checked_add(16)?.checked_mul(64)?)?
                    .checked_add(64)?
                    .checked_mul(3)?,
            )?
        } else {
            threads.checked_mul(2 * h.max(c.intermediate_size).max(max_dense_k(layout)) + 64)?
        },
        // int8 attention: packed K of every sequence and head, and per task a block of int8 queries
        if int8 { batch.checked_mul(c.num_heads)?.checked_mul(packed_len(seq_len, dh))? } else { 0 },
        if int8 { threads.checked_mul(score_rows * dh)? } else { 0 },
        // int8 P·V: packed V of every sequence and head, and per task a block of u8 probabilities
        if int8_values { batch.checked_mul(c.num_heads)?.checked_mul(packed_len(dh, seq_len))? } else { 0 },
        if int8_values { threads.checked_mul(score_rows.checked_mul(seq_len)?)? } else { 0 },
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

/// Keys of a sequence padded to whole narrow scores tiles, where the kernels vectorize them
/// (x86-64, aarch64: 16 keys, so a 20-token sentence computes 32 scores per query, not 64);
/// on the MCU targets to whole 64-key tiles (one tile width, less code). Saturating, so the
/// working-memory bound of an absurd length overflows into `None` there rather than wrapping.
fn padded_keys(len: usize) -> usize {
    let tile = if NARROW_KEY_TILES { KEY_TILE_NARROW } else { KEY_TILE };
    len.div_ceil(tile).saturating_mul(tile)
}

/// Whether the fp32 scores use narrow tiles for the keys past the last whole 64-key tile.
const NARROW_KEY_TILES: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

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
    /// `f(worker, i)` for `i < n`, with `worker < threads()` the thread running the call: calls
    /// with the same `worker` never overlap, so they can share that worker's buffers.
    fn for_each_worker(&self, n: usize, f: &(dyn Fn(usize, usize) + Sync));
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
    fn for_each_worker(&self, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        (0..n).for_each(|i| f(0, i))
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
    fn for_each_worker(&self, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        self.parallel_for_worker(n, f)
    }
}

/// A value handed to exactly one task. Tasks own disjoint row blocks of the buffers they
/// write, carved out before the parallel region; each task index takes its own slot once.
type Slot<T> = Lent<Option<T>>;

impl<T> Slot<T> {
    fn holding(v: T) -> Self {
        Lent::new(Some(v))
    }

    fn take(&self) -> T {
        self.with(Option::take).expect("a task slot was taken twice")
    }
}

/// Sets `flag`; true if this caller set it (it was clear). Targets without compare-and-swap
/// (Cortex-M0+, thumbv6m) have only load and store; `forward` runs every task on the calling
/// thread there, so nothing races the check.
fn claim(flag: &core::sync::atomic::AtomicBool) -> bool {
    #[cfg(target_has_atomic = "8")]
    {
        !flag.swap(true, core::sync::atomic::Ordering::AcqRel)
    }
    #[cfg(not(target_has_atomic = "8"))]
    {
        let set = flag.load(core::sync::atomic::Ordering::Relaxed);
        flag.store(true, core::sync::atomic::Ordering::Relaxed);
        !set
    }
}

/// A buffer lent to one task at a time: each worker's own (tasks of one worker never overlap,
/// see [`Parallel::for_each_worker`]), or one task's. A second borrow while the first is out
/// would be a scheduling bug; it panics instead of aliasing.
struct Lent<T> {
    value: core::cell::UnsafeCell<T>,
    busy: core::sync::atomic::AtomicBool,
}

// SAFETY: `with` hands out the `&mut T` to one caller at a time (the flag), and `T: Send` makes
// using it on whichever thread holds the flag sound.
unsafe impl<T: Send> Sync for Lent<T> {}

impl<T> Lent<T> {
    fn new(v: T) -> Self {
        Lent { value: core::cell::UnsafeCell::new(v), busy: core::sync::atomic::AtomicBool::new(false) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(claim(&self.busy), "a worker buffer was lent twice at once");
        // SAFETY: the flag was clear and is now set by this caller, so no other `&mut` exists
        // until it is cleared below.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, core::sync::atomic::Ordering::Release);
        r
    }
}

/// Splits `rows` into at most `parts` contiguous blocks: (first row, row count).
fn row_blocks(rows: usize, parts: usize) -> Vec<(usize, usize)> {
    let per = rows.div_ceil(parts.max(1)).max(1);
    (0..rows).step_by(per).map(|r| (r, per.min(rows - r))).collect()
}

/// Bytes of int32 accumulators one task of a linear layer produces before its epilogue reads
/// them back: small enough that they are still in L2 then (1 MiB per core on Zen 4, 2 MiB on
/// Sapphire/Emerald Rapids), large enough that the GEMM reuses each weight panel many times.
const LINEAR_TASK_ACC_BYTES: usize = 192 << 10;
/// Row limits of one linear task (the GEMM tiles are 12 rows on AVX-512).
const LINEAR_TASK_MIN_ROWS: usize = 24;
const LINEAR_TASK_MAX_ROWS: usize = 96;
/// The same for the AMX kernel (rows a multiple of its 16-row tiles; never more tasks than
/// [`max_linear_blocks`] allows, since its minimum is not below `LINEAR_TASK_MIN_ROWS`).
const AMX_TASK_ACC_BYTES: usize = 4 << 20;
const AMX_TASK_MIN_ROWS: usize = 32;
const AMX_TASK_MAX_ROWS: usize = 256;
const AMX_TASK_ROW_ALIGN: usize = 16;

/// Row blocks of a linear layer with `n` outputs: one task per block, GEMM then epilogue, so
/// the accumulators of a block are read back from cache; at least one block per thread (but
/// when there are fewer rows), and about a whole number of rounds over the threads (the pool
/// hands blocks out as threads free up).
///
/// The AMX kernel's tasks are taller (whole 16-row tiles, 4 MiB of accumulators: a 256-token
/// sub-batch is one task for every BERT-base layer). Its GEMM waits on the weights whenever
/// they stream from memory, so each pass over them should serve as many rows as possible
/// (BERT-base 8x128 on one thread: 1 MiB tasks streamed 2.5x the bytes and ran 1.07x slower).
fn linear_blocks(rows: usize, threads: usize, n: usize, kernel: Kernel) -> Vec<(usize, usize)> {
    let plan = linear_block_plan(rows, threads, n, kernel);
    let per = plan.block_rows;
    if kernel.kind() == KernelKind::Amx {
        return (0..rows).step_by(per).map(|r| (r, per.min(rows - r))).collect();
    }
    // Rows cut into `threads` even shares, each in blocks of whole register tiles (22-row blocks
    // ran as AVX-512 tiles of 12 + 8 + 2; Zen 5, BERT-base 1x128: 1.05x on one and on two
    // threads). Blocks follow the shares so that the pool, handing them out in order, gives the
    // threads about equal rows; a remainder under one tile joins the block before it rather than
    // stream the weights again for a few rows. (With a 1-row tile, one thread gets the plain
    // even split.)
    let (share, tile) = (plan.share, plan.tile);
    let mut blocks = Vec::with_capacity(plan.parts);
    for s in (0..rows).step_by(share) {
        let end = (s + share).min(rows);
        let mut r = s;
        while r < end {
            let len = if end - r < per + tile { end - r } else { per };
            blocks.push((r, len));
            r += len;
        }
    }
    blocks
}

/// How [`linear_blocks`] cuts rows: blocks of `block_rows` rows within shares of `share` rows,
/// the last of a share up to `tile - 1` rows longer.
struct LinearBlockPlan {
    /// About how many blocks (a capacity).
    parts: usize,
    block_rows: usize,
    share: usize,
    tile: usize,
}

/// Rows of the blocks a linear layer with `n` outputs is cut into, before rounding: about
/// [`LINEAR_TASK_ACC_BYTES`] of accumulators ([`AMX_TASK_ACC_BYTES`] with AMX).
fn linear_chunk_rows(n: usize, kernel: Kernel) -> usize {
    let (bytes, min_rows, max_rows) = if kernel.kind() == KernelKind::Amx {
        (AMX_TASK_ACC_BYTES, AMX_TASK_MIN_ROWS, AMX_TASK_MAX_ROWS)
    } else {
        (LINEAR_TASK_ACC_BYTES, LINEAR_TASK_MIN_ROWS, LINEAR_TASK_MAX_ROWS)
    };
    (bytes / (4 * n.max(1))).clamp(min_rows, max_rows)
}

fn linear_block_plan(rows: usize, threads: usize, n: usize, kernel: Kernel) -> LinearBlockPlan {
    let threads = threads.max(1);
    let parts = rows.div_ceil(linear_chunk_rows(n, kernel)).max(threads).div_ceil(threads) * threads;
    if kernel.kind() == KernelKind::Amx {
        let per = rows.div_ceil(parts).max(1).next_multiple_of(AMX_TASK_ROW_ALIGN);
        return LinearBlockPlan { parts, block_rows: per, share: rows.max(1), tile: 1 };
    }
    let tile = kernel.row_tile();
    let share = rows.div_ceil(threads).max(1);
    LinearBlockPlan { parts, block_rows: share.div_ceil(parts / threads).max(1).next_multiple_of(tile), share, tile }
}

/// Whether `Ctx::linear` gives each of `workers` workers one region of `largest_block` rows
/// (reused by all its blocks) rather than each block its own rows: with std, where the
/// workers' regions fit in the rows.
fn reuses_worker_regions(workers: usize, largest_block: usize, rows: usize) -> bool {
    cfg!(feature = "std") && workers.saturating_mul(largest_block) <= rows
}

/// Rows of int32 accumulators a linear layer with `n` outputs needs over at most `rows` rows:
/// with std, one region per worker where they fit in the rows (see `Ctx::linear`); otherwise,
/// and in firmware builds, every row. Never less for more rows, so a layer over fewer rows (the
/// pooler's one per sequence) fits in what the encoder's tokens reserved.
fn linear_accumulator_rows(rows: usize, threads: usize, n: usize, kernel: Kernel) -> usize {
    if !cfg!(feature = "std") {
        return rows;
    }
    // A share of ceil(rows / T) rows is cut into parts / T >= ceil(share / chunk) blocks, so a
    // block is at most a chunk rounded up to whole tiles, plus a remainder under one tile.
    let chunk = linear_chunk_rows(n, kernel);
    let largest = if kernel.kind() == KernelKind::Amx {
        chunk.next_multiple_of(AMX_TASK_ROW_ALIGN)
    } else {
        let tile = kernel.row_tile();
        chunk.next_multiple_of(tile) + tile - 1
    };
    rows.min(threads.max(1).saturating_mul(largest))
}

/// Most blocks [`linear_blocks`] makes for `rows` rows on `threads` threads (any `n`).
fn max_linear_blocks(rows: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    rows.div_ceil(LINEAR_TASK_MIN_ROWS).max(threads).div_ceil(threads) * threads
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

/// Runs the model on `input`, writing `layout.output_dim(seq_len)` floats per sequence.
///
/// A batch whose sequences split evenly over the threads runs as one task per thread, each
/// taking its share of the sequences through the whole model in sub-batches of about
/// [`SUB_BATCH_TOKENS`]: no barrier between operations, and a sub-batch's activations stay in
/// the thread's own cache. Anything else runs operation by operation, each operation split over
/// the threads. A sequence's output is the same bits either way (it never depends on the batch).
pub fn forward(layout: &ModelLayout, file: &[u8], kernel: Kernel, par: &dyn Parallel, input: &Input, ws: &mut Workspace, output: &mut [f32]) -> Result<()> {
    let needed = input.batch.saturating_mul(layout.output_dim(input.seq_len));
    if output.len() < needed {
        bail!(Status::BufferTooSmall, "output has room for {} floats, {needed} are needed", output.len());
    }
    gather_tokens(layout, input, ws)?;
    // Without compare-and-swap the task slots cannot be claimed atomically: one thread only.
    #[cfg(not(target_has_atomic = "8"))]
    let par: &dyn Parallel = {
        let _ = par;
        &Serial
    };
    let tasks = par.threads().max(1);
    // Without std there are no worker threads, and one thread gains from sub-batches only with
    // AMX's caches: the firmware build leaves the split path out (its code, and its memory).
    let parts = if cfg!(feature = "std") { split_sequences(&ws.seq_start, tasks, input.seq_len) } else { None };
    match parts {
        Some(parts) => forward_split(layout, file, kernel, par, input, ws, output, &parts),
        None => forward_gathered(layout, file, kernel, par, input, ws, output),
    }
}

/// Padded tokens (batch x seq_len) per sub-batch of the sequence-parallel path: enough rows
/// for the GEMMs to reuse each weight panel, few enough that a sub-batch's activations
/// (about 3 KiB x hidden/64 per token) stay in L2.
pub const SUB_BATCH_TOKENS: usize = 256;
/// Least share of the ideal (every thread busy until the end) the sequence-parallel path must
/// reach; below it, operation by operation over the threads is faster.
const SPLIT_MIN_EFFICIENCY: f64 = 0.85;

/// Sequences per sub-batch of the sequence-parallel path.
fn sub_batch(seq_len: usize) -> usize {
    (SUB_BATCH_TOKENS / seq_len.max(1)).max(1)
}

/// Consecutive ranges of sequences, one per task, balanced by unmasked tokens; None when the
/// batch has fewer sequences than tasks, when one thread would run a single sub-batch anyway,
/// or when the best split leaves threads idle for too long. (One thread in sub-batches: within
/// the noise with the VNNI kernels, 1.1-1.4x faster with AMX, whose GEMMs leave the batch's
/// out-of-cache activations as the cost.)
fn split_sequences(seq_start: &[usize], tasks: usize, seq_len: usize) -> Option<Vec<core::ops::Range<usize>>> {
    let batch = seq_start.len() - 1;
    let total = seq_start[batch];
    if tasks == 0 || batch < tasks || total == 0 || (tasks == 1 && batch <= sub_batch(seq_len)) {
        return None;
    }
    // Cut after the sequence whose end is nearest each ideal boundary k * total / tasks.
    let mut parts = Vec::with_capacity(tasks);
    let mut first = 0;
    for k in 1..tasks {
        let ideal = total * k / tasks;
        let mut cut = first + 1;
        while cut < batch - (tasks - k) && seq_start[cut + 1].abs_diff(ideal) <= seq_start[cut].abs_diff(ideal) {
            cut += 1;
        }
        parts.push(first..cut);
        first = cut;
    }
    parts.push(first..batch);
    let longest = parts.iter().map(|r| seq_start[r.end] - seq_start[r.start]).max().unwrap_or(0);
    let efficiency = total as f64 / (tasks * longest) as f64;
    (efficiency >= SPLIT_MIN_EFFICIENCY).then_some(parts)
}

/// The sequence-parallel path: task `i` runs sequences `parts[i]` in sub-batches on one thread,
/// in its own workspace.
#[allow(clippy::too_many_arguments)]
fn forward_split(layout: &ModelLayout, file: &[u8], kernel: Kernel, par: &dyn Parallel, input: &Input, ws: &mut Workspace, output: &mut [f32], parts: &[core::ops::Range<usize>]) -> Result<()> {
    let (seq_len, out_dim) = (input.seq_len, layout.output_dim(input.seq_len));
    if ws.per_task.len() < parts.len() {
        if ws.per_task.try_reserve_exact(parts.len() - ws.per_task.len()).is_err() {
            bail!(Status::OutOfMemory, "cannot allocate {} task workspaces", parts.len());
        }
        ws.per_task.resize_with(parts.len(), Workspace::new);
    }
    let mut results: Vec<Result<()>> = Vec::new();
    if results.try_reserve_exact(parts.len()).is_err() {
        bail!(Status::OutOfMemory, "cannot allocate {} task results", parts.len());
    }
    results.resize_with(parts.len(), || Ok(()));
    let mut slots = Vec::with_capacity(parts.len());
    let mut out_rest = &mut output[..input.batch * out_dim];
    for ((range, task_ws), result) in parts.iter().zip(ws.per_task.iter_mut()).zip(results.iter_mut()) {
        let (out, rest) = core::mem::take(&mut out_rest).split_at_mut(range.len() * out_dim);
        out_rest = rest;
        slots.push(Slot::holding((range.clone(), task_ws, out, result)));
    }
    let sub = sub_batch(seq_len);
    par.for_each(slots.len(), &|i| {
        let (range, task_ws, out, result) = slots[i].take();
        let mut s0 = range.start;
        while s0 < range.end {
            let s1 = (s0 + sub).min(range.end);
            let span = s0 * seq_len..s1 * seq_len;
            let part = Input {
                input_ids: &input.input_ids[span.clone()],
                token_type_ids: input.token_type_ids.map(|t| &t[span.clone()]),
                attention_mask: input.attention_mask.map(|m| &m[span.clone()]),
                batch: s1 - s0,
                seq_len,
                pooling_skip: input.pooling_skip,
            };
            let out = &mut out[(s0 - range.start) * out_dim..(s1 - range.start) * out_dim];
            if let Err(e) = gather_tokens(layout, &part, task_ws).and_then(|()| forward_gathered(layout, file, kernel, &Serial, &part, task_ws, out)) {
                *result = Err(e);
                return;
            }
            s0 = s1;
        }
    });
    results.into_iter().collect()
}

/// The forward pass over the tokens `gather_tokens` put in `ws`, operation by operation, each
/// split over the threads of `par`.
fn forward_gathered(layout: &ModelLayout, file: &[u8], kernel: Kernel, par: &dyn Parallel, input: &Input, ws: &mut Workspace, output: &mut [f32]) -> Result<()> {
    let cfg = &layout.config;
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let t = ws.tokens.len();
    let cx = Ctx { file, kernel, par, eps: cfg.layer_norm_eps, act: cfg.hidden_act, zero_points: layout.per_row_zero_points };

    // Everything the layers below grow is sized here, fallibly; their `resize` calls are then no-ops.
    let (max_n, classes) = max_linear_n(layout);
    try_resize(&mut ws.hidden, t * h)?;
    if layout.fp32_qkv() {
        try_resize(&mut ws.qkv, t * 3 * h)?;
    }
    try_resize(&mut ws.ctx, t * h)?;
    let (heads, dh) = (cfg.num_heads, cfg.head_dim());
    let lens = || ws.seq_start.windows(2).map(|w| w[1] - w[0]);
    let key_t_len: usize = if layout.fp32_scores() { lens().map(|len| padded_keys(len) * h).sum() } else { 0 };
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
    if layout.dynamic_int8_attention || layout.layers.iter().any(|l| l.attention_scales.is_some() && l.attention_value_scale.is_some()) {
        try_resize(&mut ws.qkv_q, t * 3 * h)?;
    }
    try_resize(&mut ws.value_sum, value_sum_len)?;
    if layout.dynamic_int8_attention {
        try_resize(&mut ws.head_max, t * 3 * heads)?;
    }
    try_resize(&mut ws.tmp, t * h)?;
    try_resize(&mut ws.inter_q, t * padded_k(inter))?;
    try_resize(&mut ws.xq, (t * padded_k(h)).max(input.batch * padded_k(max_dense_k(layout))))?;
    // (An overflow asks for usize::MAX, which try_resize reports. Firmware's every-row size is
    // written out here: through `encoder_accumulators` it measured 30 B more M4 code.)
    let acc_len = if cfg!(feature = "std") { encoder_accumulators(cfg, t, par.threads(), kernel).unwrap_or(usize::MAX) } else { t * (3 * h).max(inter) };
    try_resize(&mut ws.acc, acc_len.max(input.batch * classes))?;
    try_resize(&mut ws.dq, max_n)?;
    if layout.per_row_linears() > 0 {
        try_resize(&mut ws.row_inv, t.max(input.batch))?;
        try_resize(&mut ws.inter_row_inv, t)?;
    }
    // One dequantized row per linear task: per-row inputs, and (dynamic int8 attention) the
    // QKV epilogue, which quantizes each head's slice of the row with its own scale.
    if layout.per_row_linears() > 0 || layout.dynamic_int8_attention {
        try_resize(&mut ws.epilogue, max_linear_blocks(t, par.threads()) * max_n)?;
    }
    if !layout.dense.is_empty() {
        try_resize(&mut ws.pooled, input.batch * dense_pooled_len(layout))?;
    } else if layout.classifier.is_some() {
        try_resize(&mut ws.pooled, input.batch * h)?;
    }

    // Embeddings: (word + token type) + position, as BERT adds them, then LayerNorm.
    {
        let blocks = row_blocks(t, par.threads());
        let slots: Vec<Slot<&mut [f32]>> = carve(&mut ws.hidden[..t * h], &blocks, h).into_iter().map(Slot::holding).collect();
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
                let iw = cx.embedding_inv_scale(&e.word_embeddings, id as usize);
                let ip = cx.embedding_inv_scale(&e.position_embeddings, pos as usize);
                let iy = cx.embedding_inv_scale(&e.token_type_embeddings, ty as usize);
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
            _ if layout.dynamic_int8_attention => {
                let out = LinearOut::QuantizeGroups { out: &mut ws.qkv_q, group: dh, group_max: &mut ws.head_max };
                cx.linear(Op::GemmQkv, &layer.qkv, LinearIn::F32(&ws.hidden), t, bufs!(ws), out);
                Qkv::I8(&ws.qkv_q)
            }
            _ => {
                cx.linear(Op::GemmQkv, &layer.qkv, LinearIn::F32(&ws.hidden), t, bufs!(ws), LinearOut::F32(&mut ws.qkv));
                Qkv::F32(&ws.qkv)
            }
        };
        let ranges = layout.dynamic_int8_attention.then_some(HeadMax { max: &ws.head_max, heads });
        // int8 scores and P·V: the layer's static scales, or (dynamic) each row's own per head.
        let dynamic = layout.dynamic_int8_attention;
        let keys = match (layer.attention_scales, dynamic) {
            (None, false) => {
                let Qkv::F32(qkv) = qkv else { unreachable!("fp32 scores come with fp32 QKV") };
                transpose_keys(&cx, heads, dh, h, &ws.seq_start, qkv, &mut ws.key_t[..key_t_len]);
                Keys::F32 { key_t: &ws.key_t }
            }
            (scales, _) => {
                pack_keys(&cx, heads, dh, h, &ws.seq_start, qkv, scales.map(|s| s.key_scale), &mut ws.key_q[..key_q_len], &mut ws.key_sum[..key_sum_len]);
                Keys::I8 { packed: &ws.key_q, sums: &ws.key_sum, scales, ranges }
            }
        };
        let values = match (layer.attention_value_scale, dynamic) {
            (None, false) => Values::F32,
            (value_scale, _) => {
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


#[cfg(test)]
mod tests {
    use super::*;

    /// A worker buffer keeps what a task left in it, and a second borrow while one is out
    /// panics rather than alias it.
    #[test]
    fn a_lent_buffer_is_lent_to_one_caller_at_a_time() {
        let lent = Lent::new(alloc::vec![1, 2, 3]);
        lent.with(|v| v.push(4));
        assert_eq!(lent.with(|v| v.clone()), [1, 2, 3, 4]);
        let nested = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| lent.with(|_| lent.with(|_| ()))));
        assert!(nested.is_err(), "a nested borrow must panic");
    }

    /// A task slot gives its value once; a second take panics.
    #[test]
    fn a_task_slot_is_taken_once() {
        let slot = Slot::holding(7u8);
        assert_eq!(slot.take(), 7);
        assert!(std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| slot.take())).is_err(), "a second take must panic");
    }

    /// Row blocks of a linear layer cover the rows in order, never outnumber the workspace's
    /// bound, on AMX are whole 16-row tiles (but the last) and taller than elsewhere, and on one
    /// thread with an x86 SIMD kernel whole register tiles (but the last, which also takes any
    /// remainder shorter than a tile).
    #[test]
    fn linear_blocks_cover_rows_within_bound() {
        let kernels: Vec<Kernel> = KernelKind::ALL.into_iter().filter_map(Kernel::new).collect();
        for kernel in kernels {
            for rows in [1, 15, 16, 17, 100, 128, 1000, 1024, 4096] {
                for threads in [1, 2, 3, 8] {
                    for n in [2, 384, 768, 2304, 3072] {
                        let b = linear_blocks(rows, threads, n, kernel);
                        assert!(b.len() <= max_linear_blocks(rows, threads), "{rows} rows {threads} threads n {n}: {} blocks", b.len());
                        let mut next = 0;
                        for (i, &(r0, nr)) in b.iter().enumerate() {
                            assert_eq!(r0, next);
                            assert!(nr > 0);
                            if kernel.kind() == KernelKind::Amx && i + 1 < b.len() {
                                assert_eq!(nr % 16, 0, "AMX block of {nr} rows");
                            }
                            if threads == 1 && i + 1 < b.len() {
                                assert_eq!(nr % kernel.row_tile(), 0, "one-thread {} block of {nr} rows", kernel.kind().name());
                            }
                            next += nr;
                        }
                        assert_eq!(next, rows);
                    }
                }
            }
            // The accumulators `Ctx::linear` takes (a region per worker, or every row) fit in
            // what `linear_accumulator_rows` sizes for the same rows, and that never shrinks as
            // rows grow, so they fit in what any larger row count reserved (the pooler's `batch`
            // rows in the encoder's `t`; masked tokens in `batch x seq_len`).
            for threads in [1, 2, 3, 8] {
                for n in [2, 384, 512, 768, 1536, 2048, 2304, 3072] {
                    let mut before = 0;
                    for rows in (1..=1100).chain([4096, 4097]) {
                        let largest = linear_blocks(rows, threads, n, kernel).iter().map(|blk| blk.1).max().unwrap();
                        let used = if reuses_worker_regions(threads, largest, rows) { threads * largest } else { rows };
                        let sized = linear_accumulator_rows(rows, threads, n, kernel);
                        let at = format!("{} {rows} rows {threads} threads n {n}", kernel.kind().name());
                        assert!(used <= sized && sized <= rows, "{at}: {used} accumulator rows used, {sized} sized");
                        assert!(sized >= before, "{at}: {sized} accumulator rows sized, {before} for fewer rows");
                        before = sized;
                    }
                }
            }
        }
        // 8 x 128 tokens into FFN-in (n 3072) on one thread: 24-row tasks, or 256 on AMX.
        assert_eq!(linear_blocks(1024, 1, 3072, Kernel::scalar())[0].1, 24);
        // One sequence of 128 on one thread: 22-row blocks, or whole 12-row tiles on AVX-512
        // with the last 8 rows in the last block.
        assert_eq!(linear_blocks(128, 1, 3072, Kernel::scalar())[0].1, 22);
        if let Some(avx512) = Kernel::new(KernelKind::Avx512Vnni) {
            assert_eq!(linear_blocks(128, 1, 3072, avx512), [(0, 24), (24, 24), (48, 24), (72, 24), (96, 32)]);
            // 121 rows on one thread: no 1-row block after five of 24.
            assert_eq!(linear_blocks(121, 1, 3072, avx512).last(), Some(&(96, 25)));
            // Two threads: 64 rows each, as 24 + 24 + 16.
            assert_eq!(linear_blocks(128, 2, 3072, avx512), [(0, 24), (24, 24), (48, 16), (64, 24), (88, 24), (112, 16)]);
        }
        if let Some(amx) = Kernel::new(KernelKind::Amx) {
            assert_eq!(linear_blocks(1024, 1, 3072, amx)[0].1, 256);
        }
        // A 256-token sub-batch into FFN-in on one thread: one 24-row block's worth, not 256
        // rows (3 MiB at BERT-base's 3072 outputs).
        if cfg!(feature = "std") {
            assert_eq!(linear_accumulator_rows(256, 1, 3072, Kernel::scalar()), 24);
        }
    }

    fn starts(lens: &[usize]) -> Vec<usize> {
        let mut v = alloc::vec![0];
        for &l in lens {
            v.push(v.last().unwrap() + l);
        }
        v
    }

    #[test]
    fn sequences_split_evenly_by_tokens() {
        assert_eq!(split_sequences(&starts(&[128; 8]), 2, 128), Some(alloc::vec![0..4, 4..8]));
        assert_eq!(split_sequences(&starts(&[10, 10, 10, 30]), 2, 32), Some(alloc::vec![0..3, 3..4]));
        // Every task gets a sequence, even when the first is the longest.
        assert_eq!(split_sequences(&starts(&[50, 20, 15, 15]), 2, 64), Some(alloc::vec![0..1, 1..4]));
        assert_eq!(split_sequences(&starts(&[8; 6]), 3, 8), Some(alloc::vec![0..2, 2..4, 4..6]));
        // One thread: the whole batch as one task, in sub-batches of 256 tokens (2 x 128).
        assert_eq!(split_sequences(&starts(&[128; 8]), 1, 128), Some(alloc::vec![0..8]));
    }

    #[test]
    fn uneven_or_small_batches_stay_operation_parallel() {
        // Fewer sequences than threads; three equal sequences on two threads (2:1 is 75%); one
        // long sequence among short ones.
        assert_eq!(split_sequences(&starts(&[128]), 2, 128), None);
        assert_eq!(split_sequences(&starts(&[64; 3]), 2, 64), None);
        assert_eq!(split_sequences(&starts(&[100, 5, 5, 5]), 2, 100), None);
        // One thread and a single sub-batch: operation by operation.
        assert_eq!(split_sequences(&starts(&[128; 2]), 1, 128), None);
    }
}
