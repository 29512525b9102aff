//! fp32 math written out so results are identical on every CPU and in `no_std` (core has no
//! exp/erf/sqrt), and simple enough for the compiler to vectorize. Rust never fuses a*b+c, so
//! the same source gives the same bits whatever SIMD width the loop is compiled to.

/// 1.5 * 2^23: adding and subtracting it rounds an f32 with |x| < 2^22 to the nearest integer,
/// ties to even (the default FP rounding mode), without needing `round_ties_even` from std.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Nearest integer, ties to even, for |x| < 2^22 (callers clamp first).
#[inline(always)]
pub fn round_small(x: f32) -> f32 {
    (x + ROUND_MAGIC) - ROUND_MAGIC
}

/// Symmetric int8 quantization used everywhere: clamp(round(x * scale), -127, 127).
/// NaN maps to 0.
#[inline(always)]
pub fn quantize(x: f32, scale: f32) -> i8 {
    let v = (x * scale).clamp(-127.0, 127.0);
    let v = if v.is_nan() { 0.0 } else { v };
    round_to_int(v) as i8
}

/// `round_small(x) as i32` read from the bits of `x + ROUND_MAGIC` (whose low mantissa bits
/// hold the integer): a plain integer subtraction that vectorizes, unlike the saturating
/// float-to-int cast. For |x| < 2^22 only.
#[inline(always)]
pub fn round_to_int(x: f32) -> i32 {
    (x + ROUND_MAGIC).to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32
}

/// e^x, relative error ~2e-7 over the whole range; inputs below -87 give ~0, above 88 clamp.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E;
    let n = round_small(t);
    let ni = round_to_int(t);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor polynomial of e^r on |r| <= ln2/2, degree 7 (truncation < 1e-8 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// erf(x) via Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) and a series near 0; for GELU.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let tail = 1.0 - poly * exp(-ax * ax);
    // Near zero the form above cancels; the Maclaurin series is exact to f32 there.
    let x2 = ax * ax;
    let series = ax
        * core::f32::consts::FRAC_2_SQRT_PI
        * (1.0 + x2 * (-1.0 / 3.0 + x2 * (1.0 / 10.0 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0 + x2 * (-1.0 / 1320.0))))));
    let y = if ax < 0.5 { series } else { tail };
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// GELU, erf form as in BERT: x/2 * (1 + erf(x/sqrt(2))).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// tanh(x) = sign(x) * (1 - 2/(e^{2|x|}+1)).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.abs());
    let y = 1.0 - 2.0 / (e + 1.0);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// sqrt in f64 by Newton's method from a bit-level first guess; exact to f64 rounding after
/// 5 steps for the LayerNorm range, which is far more than the f32 result needs.
pub fn sqrt(x: f32) -> f32 {
    let x = x as f64;
    if x <= 0.0 || x.is_nan() {
        return 0.0;
    }
    if x.is_infinite() {
        return f32::INFINITY;
    }
    let mut y = f64::from_bits((x.to_bits() >> 1) + (1023u64 << 51));
    for _ in 0..6 {
        y = 0.5 * (y + x / y);
    }
    y as f32
}

/// `a * b + c` rounded once (IEEE fused multiply-add). Attention uses it so the AVX-512 tiles can
/// use FMA instructions and still give the reference's bits. With `std` this is `f32::mul_add`
/// (an FMA instruction where the build or a `#[target_feature]` wrapper enables one); without
/// std, [`fused_mul_add_soft`], which rounds the same way.
#[inline(always)]
pub fn fused_mul_add(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(feature = "std"))]
    {
        fused_mul_add_soft(a, b, c)
    }
}

/// Correctly rounded `a * b + c` from f64 arithmetic: the product of two f32 is exact in f64,
/// the sum is rounded to odd (exact error by TwoSum; if inexact, take the neighbour with an odd
/// last bit), and rounding a round-to-odd f64 to f32 is correct because f64 has more than
/// 24 + 2 bits (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums", IEEE TC 2008).
pub fn fused_mul_add_soft(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let c = c as f64;
    let s = p + c;
    if !s.is_finite() {
        return s as f32;
    }
    let b_virtual = s - p;
    let err = (p - (s - b_virtual)) + (c - b_virtual);
    let bits = s.to_bits();
    let s = if err != 0.0 && bits & 1 == 0 {
        // One f64 ulp toward the exact value (bit patterns are ordered by magnitude).
        f64::from_bits(if (err > 0.0) == (s > 0.0) { bits + 1 } else { bits - 1 })
    } else {
        s
    };
    s as f32
}

/// Lanes of the fixed-order reductions below (one 512-bit vector of f32).
pub const LANES: usize = 16;

/// Sum with a fixed association order: 16 interleaved partial sums, then a fixed tree.
#[inline(always)]
pub fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] += x;
    }
    reduce(acc)
}

/// Largest element (NEG_INFINITY for an empty slice), 16 lanes at a time so it vectorizes.
#[inline(always)]
pub fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] = if x > acc[l] { x } else { acc[l] };
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// Dot product with the same fixed order as [`sum`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    reduce(acc)
}

#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "std")]
    fn soft_fused_mul_add_rounds_like_hardware() {
        // The double-rounding trap: a*b is exactly halfway between two f32 and c is far below
        // an f64 ulp of it; only a single rounding sees which side c pushes it to.
        let x = 1.0 + 1.0 / 4096.0; // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: an f32 tie
        for c in [1e-18f32, -1e-18, 0.0, -0.0, 1e-45, -1e-45] {
            assert_eq!(fused_mul_add_soft(x, x, c).to_bits(), x.mul_add(x, c).to_bits(), "c = {c:e}");
        }
        assert_ne!(fused_mul_add_soft(x, x, 1e-18), fused_mul_add_soft(x, x, -1e-18));
        // Random operands over many magnitudes, signs and cancellations, plus special values.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f32::from_bits(state as u32 & 0x807F_FFFF | ((state >> 32) as u32 % 60 + 97) << 23)
        };
        for i in 0..2_000_000 {
            let (a, b) = (next(), next());
            // Every fourth c cancels most of a*b, the rest are independent.
            let c = if i % 4 == 0 { -(a * b) * (1.0 + next() * 1e-3) } else { next() };
            assert_eq!(fused_mul_add_soft(a, b, c).to_bits(), a.mul_add(b, c).to_bits(), "{a:e} * {b:e} + {c:e}");
        }
        for &(a, b, c) in &[(f32::INFINITY, 0.0, 1.0), (f32::INFINITY, 1.0, f32::NEG_INFINITY), (f32::NAN, 1.0, 1.0), (f32::MAX, 2.0, -f32::MAX), (1e-30, 1e-30, 0.0)] {
            let (got, want) = (fused_mul_add_soft(a, b, c), a.mul_add(b, c));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{a:e} * {b:e} + {c:e}: {got:e} vs {want:e}");
        }
    }

    #[test]
    fn exp_is_accurate() {
        let mut x = -80.0f64;
        while x < 80.0 {
            let got = exp(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            assert!(((got - want) / want).abs() < 1e-6, "exp({x}) = {got}, want {want}");
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn erf_tanh_gelu_are_accurate() {
        let mut x = -6.0f64;
        while x < 6.0 {
            let xf = x as f32;
            let e = (erf(xf) as f64 - libm_erf(xf as f64)).abs();
            assert!(e < 4e-7, "erf({x}) off by {e}");
            assert!((tanh(xf) as f64 - (xf as f64).tanh()).abs() < 3e-7, "tanh({x})");
            x += 0.001;
        }
        assert_eq!(gelu(0.0), 0.0);
    }

    // erf reference by series/continued fraction in f64, good to 1e-12 on [-6, 6].
    fn libm_erf(x: f64) -> f64 {
        let ax = x.abs();
        let r = if ax < 3.0 {
            let (mut term, mut s, mut n) = (ax, ax, 0.0f64);
            loop {
                n += 1.0;
                term *= -ax * ax / n;
                let add = term / (2.0 * n + 1.0);
                s += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            s * 2.0 / core::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            1.0 - (-ax * ax).exp() / core::f64::consts::PI.sqrt() / (ax + f)
        };
        r.copysign(x)
    }

    #[test]
    fn sqrt_and_rounding() {
        for v in [1e-12f32, 1e-6, 0.25, 1.0, 2.0, 3.0, 1e6, 12345.678] {
            assert_eq!(sqrt(v), (v as f64).sqrt() as f32, "sqrt({v})");
        }
        assert_eq!(round_small(2.5), 2.0);
        assert_eq!(round_small(3.5), 4.0);
        assert_eq!(round_small(-2.5), -2.0);
        assert_eq!(quantize(1000.0, 1.0), 127);
        assert_eq!(quantize(-1000.0, 1.0), -127);
        assert_eq!(quantize(f32::NAN, 1.0), 0);
        assert_eq!(quantize(0.49, 100.0), 49);
        for i in -2000..=2000 {
            let x = i as f32 * 0.0637;
            assert_eq!(round_to_int(x), round_small(x) as i32, "{x}");
            assert_eq!(quantize(x, 1.0), round_small(x.clamp(-127.0, 127.0)) as i8, "{x}");
        }
    }

    #[test]
    fn fixed_order_sums() {
        let v: alloc::vec::Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        assert_eq!(sum(&v), (0..37).map(|i| i as f32 * 0.5).sum::<f32>());
        assert_eq!(dot(&v, &v), v.iter().map(|x| x * x).sum::<f32>());
    }
}
