//! Fake quantization (quantize then dequantize) with a straight-through estimator, and the EMA
//! range trackers of Q8BERT. The arithmetic mirrors the runtime: q = clamp(round_ties_even(x*S),
//! -127, 127), dequantized as q / S.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use std::cell::Cell;
use std::sync::Arc;

/// Largest int8 magnitude used (symmetric: -127..=127, never -128).
pub const QMAX_I8: f32 = 127.0;
/// Bias is packed as int32; the clamp is only there to mirror a saturating conversion.
pub const QMAX_I32: f32 = 2_147_483_520.0;

/// How a model is quantized: weight scales per tensor or per output row, activation scales per
/// layer (static, from a tracked range) or per row at run time, and embedding tables with one
/// scale or one per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub per_channel: bool,
    pub per_row_inputs: bool,
    pub per_row_embeddings: bool,
    /// Per-row inputs with a zero point too: each row's [min, max] onto -127..=127 (format 1.4).
    pub per_row_zero_points: bool,
    /// 8 (-127..=127) or 7 (-63..=63, `--weight-bits 7`: faster GEMMs on CPUs without VNNI).
    pub weight_bits: u8,
}

impl Scheme {
    /// The Q8BERT paper: per-tensor weights, static activation ranges (EMA in training).
    pub const Q8BERT: Scheme = Scheme { per_channel: false, per_row_inputs: false, per_row_embeddings: false, per_row_zero_points: false, weight_bits: 8 };
    /// `q8bert` with per-channel weights (`--per-channel`).
    pub const Q8BERT_PER_CHANNEL: Scheme = Scheme { per_channel: true, ..Self::Q8BERT };
    /// Per-channel weights, a scale and a zero point per token computed at run time for every
    /// linear input (formats 1.2 and 1.4) and a scale per embedding row (1.3): the default.
    pub const PER_TOKEN: Scheme = Scheme { per_channel: true, per_row_inputs: true, per_row_embeddings: true, per_row_zero_points: true, weight_bits: 8 };
    /// `per-token` without the zero points (format 1.3, what runtimes before 1.4 read).
    pub const PER_TOKEN_SYMMETRIC: Scheme = Scheme { per_row_zero_points: false, ..Self::PER_TOKEN };

    /// `q8bert` (the paper) or `per-token`; `per_channel` upgrades `q8bert` to per-channel weights.
    pub fn parse(name: &str, per_channel: bool) -> anyhow::Result<Self> {
        match name {
            "q8bert" | "paper" => Ok(if per_channel { Self::Q8BERT_PER_CHANNEL } else { Self::Q8BERT }),
            "per-token" | "dynamic" => Ok(Self::PER_TOKEN),
            "per-token-symmetric" => Ok(Self::PER_TOKEN_SYMMETRIC),
            _ => anyhow::bail!("unknown quantization scheme {name:?} (q8bert, per-token, per-token-symmetric)"),
        }
    }

    /// The same scheme with weights of `bits` bits (8 or 7).
    pub fn with_weight_bits(self, bits: u8) -> anyhow::Result<Self> {
        anyhow::ensure!(bits == 8 || bits == 7, "--weight-bits must be 8 or 7, not {bits}");
        Ok(Scheme { weight_bits: bits, ..self })
    }

    /// The largest weight code: 127, or 63 for 7-bit weights (the runtime's `WeightRange::NARROW_MAX`).
    pub fn weight_qmax(&self) -> f32 {
        if self.weight_bits == 7 {
            q8bert::WeightRange::NARROW_MAX as f32
        } else {
            QMAX_I8
        }
    }

    pub fn name(&self) -> &'static str {
        match (self.per_channel, self.per_row_inputs, self.per_row_zero_points) {
            (false, false, _) => "q8bert",
            (true, false, _) => "q8bert-per-channel",
            (_, true, true) => "per-token",
            (_, true, false) => "per-token-symmetric",
        }
    }
}

/// The runtime's per-row input scale (`q8bert::ops::per_row_scale`): 127 / max|row|, or 1 when
/// that is not a finite positive number.
pub fn per_row_scale(max_abs: f32) -> f32 {
    let s = QMAX_I8 / max_abs;
    if max_abs > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// Runtime rounding: ties to even.
#[inline]
pub fn quantize_value(x: f32, scale: f32, qmax: f32) -> f32 {
    (x * scale).round_ties_even().clamp(-qmax, qmax)
}

/// Scale so that `max_abs` maps to 127. A zero range (all-zero tensor) gets scale 1 so that
/// quantization is the identity on zeros instead of dividing by zero.
pub fn scale_for(max_abs: f32) -> f32 {
    scale_to(max_abs, QMAX_I8)
}

/// Scale so that `max_abs` maps to `qmax` (1 for a zero range), as the packer computes it.
pub fn scale_to(max_abs: f32, qmax: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        qmax / max_abs
    } else {
        1.0
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let v = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("fake-quant expects a contiguous f32 tensor"),
    }
}

/// Scales indexed by `(i / inner) % scales.len()`: one scale (per tensor) or one per row of a
/// row-major [rows, inner] matrix (per output channel).
#[derive(Clone, Debug)]
pub struct Scales {
    pub scales: Arc<Vec<f32>>,
    pub inner: usize,
}

impl Scales {
    pub fn per_tensor(s: f32) -> Self {
        Scales { scales: Arc::new(vec![s]), inner: 1 }
    }
    /// Length of runs sharing one scale within a chunk.
    fn run_len(&self, chunk: usize) -> usize {
        if self.scales.len() == 1 {
            chunk.max(1)
        } else {
            self.inner
        }
    }
    /// Parallel chunks must start on a row boundary when scales are per row.
    fn chunk_align(&self) -> usize {
        if self.scales.len() == 1 {
            1
        } else {
            self.inner
        }
    }
    #[inline]
    fn at(&self, i: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[(i / self.inner) % self.scales.len()]
        }
    }
}

/// 1.5 * 2^23: adding then subtracting it rounds |v| < 2^22 to an integer, ties to even (the
/// default FP rounding mode), and vectorizes, unlike a call to `rintf`.
const ROUND_MAGIC: f32 = 12_582_912.0;

fn fq_run(x: &[f32], out: &mut [f32], s: f32, qmax: f32) {
    let inv = 1.0 / s;
    if qmax <= QMAX_I8 {
        // Clamping before rounding gives the same result for an int8 range (127.5 rounds to
        // 128 -> 127 either way) and keeps the magic-number rounding in its exact range.
        for (o, &v) in out.iter_mut().zip(x) {
            let t = (v * s).clamp(-qmax, qmax);
            *o = ((t + ROUND_MAGIC) - ROUND_MAGIC) * inv;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = quantize_value(v, s, qmax) * inv;
        }
    }
}

/// Splits `out` in two halves (aligned to `align` elements) processed on two threads when it is
/// large; `f(start, chunk)` gets each chunk's offset. Tiny tensors stay on the calling thread.
pub fn par_chunks(out: &mut [f32], align: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = out.len();
    let threads = crate::threads();
    if n < (1 << 21) || threads < 2 {
        f(0, out);
        return;
    }
    let per = n.div_ceil(threads).div_ceil(align) * align;
    std::thread::scope(|sc| {
        let f = &f;
        let mut rest = out;
        let mut start = 0;
        let mut handles = Vec::new();
        while !rest.is_empty() {
            let take = per.min(rest.len());
            let (a, b) = rest.split_at_mut(take);
            rest = b;
            let s0 = start;
            start += take;
            if rest.is_empty() {
                f(s0, a); // last chunk on this thread
            } else {
                handles.push(sc.spawn(move || f(s0, a)));
            }
        }
    });
}

/// Forward: q(x)/S. Backward (clipped straight-through estimator): the incoming gradient passes
/// unchanged where |x| <= qmax/S (inside the representable range) and is zero where the value was
/// clipped. This is the fused form of `clip(x) + (q(x) - clip(x)).detach()`, without the ~8
/// temporaries that expression allocates.
pub struct FakeQuant {
    pub scales: Scales,
    pub qmax: f32,
    /// Pass every gradient (scales set from the data itself, so nothing was clipped).
    pub pass_all: bool,
}

impl CustomOp1 for FakeQuant {
    fn name(&self) -> &'static str {
        "fake-quant"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let mut out = vec![0f32; x.len()];
        let (scales, qmax) = (&self.scales, self.qmax);
        par_chunks(&mut out, scales.chunk_align(), |start, o| {
            let xs = &x[start..start + o.len()];
            let run = scales.run_len(o.len());
            for (k, (oc, xc)) in o.chunks_mut(run).zip(xs.chunks(run)).enumerate() {
                let sc = scales.at(start + k * run);
                fq_run(xc, oc, sc, qmax);
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if self.pass_all {
            return Ok(Some(grad.clone()));
        }
        let arg = arg.contiguous()?;
        let grad = grad.contiguous()?;
        let g = arg.apply_op2_no_bwd(&grad, &SteMask { scales: self.scales.clone(), qmax: self.qmax })?;
        Ok(Some(g))
    }
}

/// grad where |x * S| <= qmax, else 0.
struct SteMask {
    scales: Scales,
    qmax: f32,
}

impl CustomOp2 for SteMask {
    fn name(&self) -> &'static str {
        "ste-mask"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let g = contiguous_f32(s2, l2)?;
        if x.len() != g.len() {
            candle_core::bail!("ste-mask: shape mismatch");
        }
        let mut out = vec![0f32; x.len()];
        let (scales, qmax) = (&self.scales, self.qmax);
        par_chunks(&mut out, scales.chunk_align(), |start, o| {
            let run = scales.run_len(o.len());
            for (k, oc) in o.chunks_mut(run).enumerate() {
                let b = start + k * run;
                let sc = scales.at(b);
                for (j, ov) in oc.iter_mut().enumerate() {
                    let inside = (x[b + j] * sc).abs() <= qmax;
                    *ov = if inside { g[b + j] } else { 0.0 };
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Fake-quantizes `x` (any shape) with the given scales.
pub fn fake_quant(x: &Tensor, scales: Scales, qmax: f32) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(FakeQuant { scales, qmax, pass_all: false })
}

/// Fake-quantizes each row of a [rows, cols] tensor with its own scale, 127 / max|row| (the
/// runtime's per-row input quantization); the gradient passes unchanged (nothing is clipped).
pub fn fake_quant_per_row(x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, cols) = x.dims2()?;
    let scales: Vec<f32> = row_abs_max(x)?.into_iter().map(per_row_scale).collect();
    x.contiguous()?.apply_op1(FakeQuant { scales: Scales { scales: Arc::new(scales), inner: cols }, qmax: QMAX_I8, pass_all: true })
}

/// Fake-quantizes each row of a [rows, cols] tensor with its own scale and zero point, as the
/// runtime's per-row inputs with zero points (`q8bert::ops::quantize_row_per_row`): [min, max]
/// (0 included) onto -127..=127, S = 254 / (max - min), zero = -127 - round(min S); the
/// gradient passes unchanged (nothing is clipped).
pub fn fake_quant_per_row_asymmetric(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(FakeQuantRowsAsymmetric)
}

struct FakeQuantRowsAsymmetric;

impl CustomOp1 for FakeQuantRowsAsymmetric {
    fn name(&self) -> &'static str {
        "fake-quant-rows-asymmetric"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let cols = *l.shape().dims().last().unwrap_or(&1);
        let x = contiguous_f32(s, l)?;
        let mut out = vec![0f32; x.len()];
        par_chunks(&mut out, cols.max(1), |start, o| {
            let xs = &x[start..start + o.len()];
            for (oc, xc) in o.chunks_mut(cols).zip(xs.chunks(cols)) {
                let (lo, hi) = xc.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let s = 254.0 / (hi - lo);
                let s = if hi - lo > 0.0 && s.is_finite() { s } else { 1.0 };
                let zero = (-127.0 - (((lo * s).max(-254.0) + ROUND_MAGIC) - ROUND_MAGIC)).clamp(-127.0, 127.0);
                for (o, &v) in oc.iter_mut().zip(xc) {
                    let q = ((v * s + zero).clamp(-QMAX_I8, QMAX_I8) + ROUND_MAGIC) - ROUND_MAGIC;
                    *o = (q - zero) / s;
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.clone()))
    }
}

/// max |x| over a tensor, read straight from CPU storage (no temporaries, no graph).
pub fn abs_max(t: &Tensor) -> candle_core::Result<f32> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(cs) => {
            let x = contiguous_f32(cs, l)?;
            Ok(x.iter().fold(0f32, |m, v| m.max(v.abs())))
        }
        _ => candle_core::bail!("abs_max: CPU tensors only"),
    }
}

/// max |row| for each row of a [rows, cols] matrix.
pub fn row_abs_max(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    let (_, cols) = t.dims2()?;
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(cs) => {
            let x = contiguous_f32(cs, l)?;
            Ok(x.chunks(cols).map(|r| r.iter().fold(0f32, |m, v| m.max(v.abs()))).collect())
        }
        _ => candle_core::bail!("row_abs_max: CPU tensors only"),
    }
}

/// Exponential moving average of max|x| for one quantized input (Q8BERT's activation
/// threshold), bias-corrected as in the Q8BERT reference implementation (Intel nlp-architect's
/// `update_ema`): the accumulator starts at zero, `biased <- d*biased + (1-d)*x`, and the range is
/// `biased / (1 - d^n)` after n observations. Early on (n << 1/(1-d)) this is the mean of the
/// maxima seen so far, so short runs get a range that follows the data; for long runs it becomes
/// the plain EMA with decay d (0.9999 in the paper).
#[derive(Debug)]
pub struct RangeTracker {
    value: Cell<Option<f32>>,
    /// (biased accumulator, d^n) in f64: 1 - d^n for d = 0.9999 needs the precision.
    state: Cell<(f64, f64)>,
}

impl Default for RangeTracker {
    fn default() -> Self {
        RangeTracker { value: Cell::new(None), state: Cell::new((0.0, 1.0)) }
    }
}

impl RangeTracker {
    pub fn get(&self) -> Option<f32> {
        self.value.get()
    }
    /// Sets the range (restoring a checkpoint, or before calibration with `None`); the next EMA
    /// observation starts a fresh average.
    pub fn set(&self, v: Option<f32>) {
        self.value.set(v);
        self.state.set((0.0, 1.0));
    }
    /// One EMA update with bias correction (the first observation is taken as is). `decay` is in
    /// [0, 1).
    pub fn observe(&self, observed: f32, decay: f32) {
        let d = decay as f64;
        let (biased, pow) = self.state.get();
        let (biased, pow) = (d * biased + (1.0 - d) * observed as f64, pow * d);
        self.state.set((biased, pow));
        let corrected = if pow < 1.0 { biased / (1.0 - pow) } else { observed as f64 };
        self.value.set(Some(corrected as f32));
    }
    /// For post-training calibration: the plain running maximum.
    pub fn observe_max(&self, observed: f32) {
        let next = self.value.get().map_or(observed, |p| p.max(observed));
        self.value.set(Some(next));
    }
}
