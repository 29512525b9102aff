//! The fp32 and requantization operations of the forward pass. Shared by every kernel choice,
//! so outputs stay bit-identical whichever GEMM kernel runs.
//!
//! Ops are `#[inline(always)]` so they compile inside the callers' `Kernel::with_fp32_simd`
//! closures, with those closures' SIMD target features. The row-sized ones (LayerNorm, softmax,
//! per-row quantization, row reductions) are forced inline only on x86-64 and aarch64, the
//! targets with such features: elsewhere (microcontrollers) one out-of-line copy saves ~2.5 KB
//! of flash for a call per row.

pub mod math;

use crate::kernels::KGROUP;
use crate::model::Activation;

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

/// How one row of a per-row quantized input dequantizes: x = inv * (q - zero). `zero` is 0 for
/// the symmetric scheme (format 1.2); with per-row zero points (format 1.4) the row's range
/// [min, max] (0 included) maps onto all 255 levels -127..=127.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowScale {
    /// 1/S_x.
    pub inv: f32,
    pub zero: i32,
}

/// Quantizes `rows` rows of `k` floats into int8 rows of stride `padded_k(k)`, each row with its
/// own scale (per-row input quantization, format 1.2) and, if `zero_points`, its own zero point
/// (format 1.4), and writes each row's [`RowScale`] to `row_scales`.
#[inline(always)]
pub fn quantize_rows_per_row(x: &[f32], rows: usize, k: usize, out: &mut [i8], row_scales: &mut [RowScale], zero_points: bool) {
    let kp = padded_k(k);
    for (r, rs) in row_scales[..rows].iter_mut().enumerate() {
        *rs = quantize_row_per_row(&x[r * k..(r + 1) * k], &mut out[r * kp..(r + 1) * kp], zero_points);
    }
}

/// The per-row scale of a row whose largest magnitude is `max_abs`: 127 / max_abs, or 1 when
/// that is not a finite positive number (an all-zero row).
#[inline(always)]
pub fn per_row_scale(max_abs: f32) -> f32 {
    let s = 127.0 / max_abs;
    if max_abs > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// Quantizes one row with its own scale (and zero point, if `zero_point`) into `out` (padding
/// past `x.len()` zeroed; its weights are zero); returns how to dequantize it.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
pub fn quantize_row_per_row(x: &[f32], out: &mut [i8], zero_point: bool) -> RowScale {
    if !zero_point {
        let scale = per_row_scale(math::max_abs(x));
        for (d, &s) in out.iter_mut().zip(x) {
            *d = math::quantize(s, scale);
        }
        out[x.len()..].fill(0);
        return RowScale { inv: 1.0 / scale, zero: 0 };
    }
    // [lo, hi] (0 included) onto -127..=127: S = 254 / (hi - lo), zero = -127 - round(lo S), so
    // lo -> -127 and hi -> 127 (up to rounding); the kernels need |q| <= 127.
    let (lo, hi) = math::min_max(x);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = 254.0 / (hi - lo);
    let scale = if hi - lo > 0.0 && scale.is_finite() { scale } else { 1.0 };
    let zero = (-127 - math::round_to_int((lo * scale).max(-254.0))).clamp(-127, 127);
    let zero_f = zero as f32;
    for (d, &s) in out.iter_mut().zip(x) {
        *d = math::quantize_offset(s, scale, zero_f);
    }
    out[x.len()..].fill(0);
    RowScale { inv: 1.0 / scale, zero }
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

/// y = (acc - zero * wsum) * (w_inv * row_inv) + bias for one row of a linear layer whose input
/// was quantized per row: `w_inv` = 1/S_w per output, `row` = this row's 1/S_x and zero point,
/// `wsum` = each output's sum of int8 weights, `bias` in f32. The correction is exact in i32
/// (|zero| <= 127, |wsum| <= 127 K); with zero = 0 this is the symmetric scheme's arithmetic.
#[inline(always)]
pub fn dequantize_row_per_row(acc: &[i32], bias: &[f32], w_inv: &[f32], row: RowScale, wsum: &[i32], out: &mut [f32]) {
    let row_inv = row.inv;
    if row.zero == 0 {
        for (((o, &a), &b), &w) in out.iter_mut().zip(acc).zip(bias).zip(w_inv) {
            *o = a as f32 * (w * row_inv) + b;
        }
    } else {
        for ((((o, &a), &b), &w), &ws) in out.iter_mut().zip(acc).zip(bias).zip(w_inv).zip(wsum) {
            *o = a.wrapping_sub(row.zero.wrapping_mul(ws)) as f32 * (w * row_inv) + b;
        }
    }
}

/// dequantize(acc) requantized with `scale` (the int8 Q, K, V of int8 attention).
#[inline(always)]
pub fn dequantize_quantize_row(acc: &[i32], bias: &[i32], dq: &[f32], scale: f32, out: &mut [i8]) {
    for (((o, &a), &b), &d) in out.iter_mut().zip(acc).zip(bias).zip(dq) {
        *o = math::quantize(a.wrapping_add(b) as f32 * d, scale);
    }
}

/// GELU(dequantize(acc)) requantized with the next layer's input scale, padding zeroed.
#[inline(always)]
pub fn dequantize_gelu_quantize_row(acc: &[i32], bias: &[i32], dq: &[f32], next_scale: f32, out: &mut [i8]) {
    dequantize_activate_quantize_row(Activation::Gelu, acc, bias, dq, next_scale, out)
}

/// act(dequantize(acc)) requantized with the next layer's input scale, padding zeroed. The
/// activation is matched once per row, so each one's loop is compiled (and vectorized) on its own.
#[inline(always)]
pub fn dequantize_activate_quantize_row(act: Activation, acc: &[i32], bias: &[i32], dq: &[f32], next_scale: f32, out: &mut [i8]) {
    #[inline(always)]
    fn row(f: impl Fn(f32) -> f32, acc: &[i32], bias: &[i32], dq: &[f32], next_scale: f32, out: &mut [i8]) {
        for (((o, &a), &b), &d) in out.iter_mut().zip(acc).zip(bias).zip(dq) {
            *o = math::quantize(f(a.wrapping_add(b) as f32 * d), next_scale);
        }
    }
    let n = acc.len();
    match act {
        Activation::Gelu => row(math::gelu, acc, bias, dq, next_scale, out),
        Activation::GeluTanh => row(math::gelu_tanh, acc, bias, dq, next_scale, out),
        Activation::Relu => row(math::relu, acc, bias, dq, next_scale, out),
    }
    out[n..].fill(0);
}

/// act(x) in place, for every element of `x`.
#[inline(always)]
pub fn activate(act: Activation, x: &mut [f32]) {
    #[inline(always)]
    fn each(f: impl Fn(f32) -> f32, x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = f(*v);
        }
    }
    match act {
        Activation::Gelu => each(math::gelu, x),
        Activation::GeluTanh => each(math::gelu_tanh, x),
        Activation::Relu => each(math::relu, x),
    }
}

/// In-place LayerNorm of one row (biased variance, as PyTorch).
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
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

/// softmax(x * scale) for `scale > 0`, in three passes instead of four: rounding is monotonic,
/// so max(x_i * scale) = max(x_i) * scale and the bits equal scaling first.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
pub fn softmax_scaled(x: &mut [f32], scale: f32) {
    let max = math::max(x) * scale;
    for v in x.iter_mut() {
        *v = math::exp(*v * scale - max);
    }
    let inv = 1.0 / math::sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Attention probabilities (in [0, 1]) for int8 P·V: round(p * scale) as an unsigned 8-bit
/// value, stored minus 128 so the kernels' int8 path can carry it (their +128 offset restores
/// it). `scale` is [`crate::model::PROBABILITY_SCALE`] (static int8 attention) or
/// [`probability_scale`] of the row (dynamic).
#[inline(always)]
pub fn quantize_probabilities(p: &[f32], scale: f32, out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(p) {
        let u = math::round_to_int((v * scale).clamp(0.0, 255.0));
        *o = (u - 128) as i8;
    }
}

/// The scale that maps a row's largest probability to 255: with long sequences every
/// probability is small, and a fixed 255 would leave most of them 0 or 1.
#[inline(always)]
pub fn probability_scale(p: &[f32]) -> f32 {
    let top = math::max(p);
    let s = 255.0 / top;
    if top > 0.0 && s.is_finite() {
        s
    } else {
        crate::model::PROBABILITY_SCALE
    }
}

/// softmax(acc * scale) of int32 scores (int8 attention) into `out`, for `scale > 0`: the
/// scores converted to f32, then [`softmax_scaled`]. (A single fused pass measured slower in
/// the forward pass: the separate conversion keeps the exp loop as short as the fp32 path's.)
#[inline(always)]
pub fn softmax_scaled_i32(acc: &[i32], scale: f32, out: &mut [f32]) {
    let out = &mut out[..acc.len()];
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = a as f32;
    }
    softmax_scaled(out, scale);
}

/// softmax((acc[j] * col_inv[j]) * scale) into `out`: int32 scores whose keys each had their
/// own scale (dynamic int8 attention), then [`softmax_scaled`].
#[inline(always)]
pub fn softmax_scaled_i32_columns(acc: &[i32], col_inv: &[f32], scale: f32, out: &mut [f32]) {
    let out = &mut out[..acc.len()];
    for ((o, &a), &c) in out.iter_mut().zip(acc).zip(col_inv) {
        *o = a as f32 * c;
    }
    softmax_scaled(out, scale);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int32_softmax_equals_float_softmax_of_the_converted_scores() {
        let mut state = 0x1234_5678u32;
        for len in [1usize, 5, 16, 33, 128, 300] {
            let acc: alloc::vec::Vec<i32> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state % 2_000_001) as i32 - 1_000_000
                })
                .collect();
            for scale in [1e-5f32, 3.7e-6, 2.5e-4] {
                let mut got = alloc::vec![0.0f32; len + 3];
                softmax_scaled_i32(&acc, scale, &mut got);
                let mut want: alloc::vec::Vec<f32> = acc.iter().map(|&a| a as f32).collect();
                softmax_scaled(&mut want, scale);
                assert_eq!(&got[..len], &want[..], "len {len}, scale {scale}");
                assert_eq!(&got[len..], &[0.0; 3], "only acc.len() outputs are written");
            }
        }
    }

    #[test]
    fn scaled_softmax_equals_scaling_first_bit_for_bit() {
        let mut state = 0x2545_F491u32;
        for len in [1usize, 7, 16, 77, 128, 384] {
            let row: alloc::vec::Vec<f32> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state % 20_001) as f32 / 100.0 - 100.0
                })
                .collect();
            for scale in [0.125f32, 1.0 / 8.0f32.sqrt(), 0.3, 1.0] {
                let mut fused = row.clone();
                softmax_scaled(&mut fused, scale);
                // The four-pass form: scale, max, exp, normalize.
                let mut want: alloc::vec::Vec<f32> = row.iter().map(|&v| v * scale).collect();
                let max = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                want.iter_mut().for_each(|v| *v = math::exp(*v - max));
                let inv = 1.0 / math::sum(&want);
                want.iter_mut().for_each(|v| *v *= inv);
                assert_eq!(fused, want, "len {len}, scale {scale}");
                assert!((math::sum(&fused) - 1.0).abs() < 1e-5);
            }
        }
    }
}
