//! The fp32 and requantization operations of the forward pass. Shared by every kernel choice,
//! so outputs stay bit-identical whichever GEMM kernel runs.

pub mod math;

use crate::kernels::KGROUP;

/// Activation row stride for K input features (the kernels read K in groups of 4).
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(KGROUP) * KGROUP
}

/// Quantizes `rows` rows of `k` floats into int8 rows of stride `padded_k(k)`.
#[inline(always)]
pub fn quantize_rows(x: &[f32], rows: usize, k: usize, scale: f32, out: &mut [i8]) {
    let kp = padded_k(k);
    for r in 0..rows {
        let src = &x[r * k..(r + 1) * k];
        let dst = &mut out[r * kp..(r + 1) * kp];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = math::quantize(s, scale);
        }
        dst[k..].fill(0);
    }
}

/// Per-output-row dequantization multipliers 1/(S_w * S_x).
pub fn dequant_multipliers(weight_scales: &[f32], n: usize, input_scale: f32, out: &mut [f32]) {
    let per_group = n / weight_scales.len();
    for (j, d) in out[..n].iter_mut().enumerate() {
        *d = 1.0 / (weight_scales[j / per_group] * input_scale);
    }
}

/// y = (acc + bias) * dq for one row. Wrapping add: an absurd bias cannot panic.
#[inline(always)]
pub fn dequantize_row(acc: &[i32], bias: &[i32], dq: &[f32], out: &mut [f32]) {
    for (((o, &a), &b), &d) in out.iter_mut().zip(acc).zip(bias).zip(dq) {
        *o = a.wrapping_add(b) as f32 * d;
    }
}

/// GELU(dequantize(acc)) requantized with the next layer's input scale, padding zeroed.
#[inline(always)]
pub fn dequantize_gelu_quantize_row(acc: &[i32], bias: &[i32], dq: &[f32], next_scale: f32, out: &mut [i8]) {
    let n = acc.len();
    for (((o, &a), &b), &d) in out.iter_mut().zip(acc).zip(bias).zip(dq) {
        *o = math::quantize(math::gelu(a.wrapping_add(b) as f32 * d), next_scale);
    }
    out[n..].fill(0);
}

/// In-place LayerNorm of one row (biased variance, as PyTorch).
#[inline(always)]
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let inv_n = 1.0 / x.len() as f32;
    let mean = math::sum(x) * inv_n;
    for v in x.iter_mut() {
        *v -= mean;
    }
    let var = math::dot(x, x) * inv_n;
    let rstd = 1.0 / math::sqrt(var + eps);
    for ((v, &g), &b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = *v * rstd * g + b;
    }
}

/// In-place softmax of one row.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = math::max(x);
    for v in x.iter_mut() {
        *v = math::exp(*v - max);
    }
    let inv = 1.0 / math::sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}
