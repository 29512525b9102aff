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

/// Asymmetric quantization: `round(x * scale + zero)` (f32 arithmetic, ties to even) clamped to
/// -127..=127; NaN gives `zero`.
#[inline(always)]
pub fn quantize_offset(x: f32, scale: f32, zero: f32) -> i8 {
    let v = (x * scale + zero).clamp(-127.0, 127.0);
    let v = if v.is_nan() { zero } else { v };
    round_to_int(v) as i8
}

/// `round_small(x) as i32` read from the bits of `x + ROUND_MAGIC` (whose low mantissa bits
/// hold the integer): a plain integer subtraction that vectorizes, unlike the saturating
/// float-to-int cast. For |x| < 2^22 only.
#[inline(always)]
pub fn round_to_int(x: f32) -> i32 {
    (x + ROUND_MAGIC).to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32
}

/// e^x, relative error ~3e-7 over the whole range; inputs below -87 give ~0, above 88 clamp.
///
/// e^x = 2^n e^r with |r| <= ln2/2, and e^r from a degree-5 minimax polynomial
/// (`scripts/fit_exp.py`: 9.1e-8 relative, 2.0e-7 with f32 rounding) evaluated in Estrin form,
/// so the dependency chain is ~5 operations deep instead of Horner's 10: softmax rows are short
/// and their exp pass is latency-bound.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const C1: f32 = 0.999_999_7;
    const C2: f32 = 0.499_991_5;
    const C3: f32 = 0.166_676_36;
    const C4: f32 = 0.041_897_93;
    const C5: f32 = 0.008_290_315;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E;
    let n = round_small(t);
    let ni = round_to_int(t);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let r2 = r * r;
    let p = (1.0 + r * (C1 + C2 * r)) + (r2 * r) * ((C3 + C4 * r) + C5 * r2);
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// erf(x) for GELU, with |error| < 2.2e-7 on every f32 (the A&S 7.1.26 form used before: 4.0e-7),
/// from multiplies, fused multiply-adds ([`fused_mul_add`], so every target rounds the same) and
/// bit operations only: no division, no exp.
///
/// On a = |x|, two minimax polynomials, each expanded about the middle of its range (plain
/// monomials of a on [0, 4] have terms up to 1e4 that cancel, far beyond f32):
/// - a < 1.875: a * P(a*a - S0), odd in x, so also accurate relative to erf near 0;
/// - 1.875 <= a <= 3.92: Q(a - MID);
/// - a > 3.92: 1, which erf rounds to in f32 (1 - erf(3.92) = 3e-8 < half an ulp of 1).
///
/// P and Q have the same degree, so every lane runs the same evaluation with each coefficient
/// picked by a mask: it vectorizes with no gather and no data-dependent branch. The sign bit of
/// x is put back at the end, so erf is exactly odd and NaN stays NaN.
/// Coefficients and the error bound: `python3 scripts/fit_erf.py [--exhaustive]`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const SPLIT: f32 = 1.875;
    const S0: f32 = 1.757_812_5; // SPLIT^2 / 2: a*a - S0 is in [-S0, S0]
    const MID: f32 = 2.897_5; // middle of [SPLIT, 3.92]
    const P: [f32; 9] = [
        0.708_394_47, -0.146_158_14, 0.034_690_622, -0.007_222_772_6, 0.001_289_117_6,
        -0.000_198_502_68, 2.698_122_6e-5, -3.440_951_8e-6, 3.414_003_2e-7,
    ];
    // Q[0] is the constant term; Q[1..] pair with P in the shared evaluation.
    const Q: [f32; 10] = [
        0.999_958_34, 0.000_254_626_62, -0.000_742_301_3, 0.001_345_745_3, -0.001_668_357_5,
        0.001_545_014_8, -0.001_136_594, 0.000_544_140_64, -5.419_444_6e-5, -4.642_698e-5,
    ];
    let a = x.abs();
    // All ones where a < SPLIT, else 0, from the bits (a >= 0, so they order like the values;
    // NaN's are above inf's). A mask rather than `if near {..} else {..}` per coefficient, which
    // LLVM turns into one whole evaluation per piece and a blend at the end: more arithmetic.
    let near = ((a.to_bits() as i32).wrapping_sub(SPLIT.to_bits() as i32) >> 31) as u32;
    let pick = |p: f32, q: f32| f32::from_bits(q.to_bits() ^ ((p.to_bits() ^ q.to_bits()) & near));
    let v = pick(a * a - S0, a - MID);
    // r(v) = sum c_k v^k as E(v^2) + v * O(v^2): two Horner chains of half the length, because
    // the loop is bound more by the latency of this chain than by its arithmetic; fused
    // multiply-adds (GELU + requantize 1.3x faster than with separate multiplies and adds).
    let w = v * v;
    let mut e = pick(P[8], Q[9]);
    for k in (0..4).rev() {
        e = fused_mul_add(w, e, pick(P[2 * k], Q[2 * k + 1]));
    }
    let mut o = pick(P[7], Q[8]);
    for k in (0..3).rev() {
        o = fused_mul_add(w, o, pick(P[2 * k + 1], Q[2 * k + 2]));
    }
    let r = fused_mul_add(v, o, e);
    let y = fused_mul_add(pick(a, v), r, pick(0.0, Q[0]));
    // NaN fails the compare and stays NaN; inf and huge |x| (whose polynomial may be inf or NaN)
    // take the 1.
    let y = if a > 3.92 { 1.0 } else { y };
    f32::from_bits(y.to_bits() | (x.to_bits() & 0x8000_0000))
}

/// GELU, erf form as in BERT: x/2 * (1 + erf(x/sqrt(2))).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh` in Hugging Face):
/// x/2 * (1 + tanh(u)), u = sqrt(2/pi) * (x + 0.044715 x^3), computed as the identical
/// x / (1 + e^(-2u)) (since (1 + tanh u)/2 = 1/(1 + e^(-2u))): one [`exp`] and one division, both
/// deterministic, and no cancellation in 1 + tanh(u) for negative x: |error| < 4e-7 |x| (the
/// erf GELU's is 3e-7 |x|). Below x = -12 (exact value under 1e-60) the result is 0, which the
/// clamped exp would otherwise leave at x/1.7e38. NaN stays NaN.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * (x * x * x));
    let y = x / (1.0 + exp(-2.0 * u));
    if x < -12.0 {
        0.0
    } else {
        y
    }
}

/// max(x, 0), with NaN and -0 giving +0 (a compare and select: the same bits in scalar and SIMD
/// code, unlike `f32::max`, which may return either zero).
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
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

/// Square root rounded once (IEEE), 0 for x <= 0 and NaN. With `std`, the FPU's `f32::sqrt`;
/// without, [`sqrt_exact`] in integer arithmetic, which gives the same bits on every target
/// with no f64 at all (single-precision FPUs, soft-float cores).
#[inline]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN must take the `0` branch too.
pub fn sqrt(x: f32) -> f32 {
    if !(x > 0.0) {
        return 0.0;
    }
    #[cfg(feature = "std")]
    {
        x.sqrt()
    }
    #[cfg(not(feature = "std"))]
    {
        sqrt_exact(x)
    }
}

/// Correctly rounded sqrt of a positive f32 from its bits: x = m 2^e with a 24-bit integer m;
/// shift m left by s in {25, 26} so that e - s is even, then the integer square root of m << s
/// has 25 bits: 24 for the result and one to round on, with the remainder as the sticky bit.
/// (A sqrt of an f32 never lies exactly halfway between two f32, so there are no ties.)
#[cfg_attr(feature = "std", allow(dead_code))]
pub(crate) fn sqrt_exact(x: f32) -> f32 {
    debug_assert!(x > 0.0);
    if x == f32::INFINITY {
        return x;
    }
    let bits = x.to_bits();
    let (mut m, mut e) = ((bits & 0x7f_ffff) as u64, ((bits >> 23) & 0xff) as i32 - 150);
    if bits >> 23 == 0 {
        // Subnormal: normalize so that m has its leading bit at 2^23, like a normal's.
        let shift = (m as u32).leading_zeros() as i32 - 8;
        m <<= shift;
        e -= shift - 1;
    } else {
        m |= 1 << 23;
    }
    let s = if (e - 25) % 2 == 0 { 25 } else { 26 };
    let n = m << s; // in [2^48, 2^50)
    // Bit-by-bit integer square root (the result has 25 bits, so 25 steps).
    let (mut root, mut rem) = (0u64, n);
    let mut bit = 1u64 << 48;
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    let q = (root >> 1) + ((root & 1) & ((rem != 0) as u64 | (root >> 1) & 1));
    // sqrt(x) = q 2^((e - s)/2 + 1), q in [2^23, 2^24]; q = 2^24 carries into the exponent.
    let exponent = (e - s) / 2 + 1 + 150;
    f32::from_bits(((exponent as u32) << 23) + (q as u32 - (1 << 23)))
}

/// `a * b + c` rounded once (IEEE fused multiply-add). Attention uses it so the AVX-512 tiles can
/// use FMA instructions and still give the reference's bits. With `std` this is `f32::mul_add`
/// (an FMA instruction where the build or a `#[target_feature]` wrapper enables one). Without
/// std: on a Cortex-M with an FPU (all of them have VFPv4 or later, whose `vfma.f32` is fused), the
/// instruction; elsewhere (no FPU: thumbv6m, rv32imac, where every float operation is emulated
/// anyway) [`fused_mul_add_soft`], which rounds the same way.
#[inline(always)]
pub fn fused_mul_add(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        a.mul_add(b, c)
    }
    #[cfg(all(not(feature = "std"), all(target_arch = "arm", target_abi = "eabihf", target_feature = "mclass", target_feature = "fpregs")))]
    {
        // SAFETY: `q8bert_fma_f32` (below) follows the hard-float AAPCS: arguments and result
        // in s0-s2, which the callee may clobber; it touches no memory.
        unsafe { q8bert_fma_f32(a, b, c) }
    }
    #[cfg(all(not(feature = "std"), not(all(target_arch = "arm", target_abi = "eabihf", target_feature = "mclass", target_feature = "fpregs"))))]
    {
        fused_mul_add_soft(a, b, c)
    }
}

// Cortex-M with an FPU and the hard-float ABI (every M-profile FPU is FPv4-SP or later, whose
// `vfma.f32` is fused): a three-instruction leaf function. (`mclass` and `fpregs` are unstable
// target features, visible to `cfg` on the nightly/-Zbuild-std toolchains firmware is built
// with; a stable build without them takes the soft path: same bits, slower.) Not inline asm, because the `sreg`
// operand class wants the `vfp2` feature, which implies double precision these FPUs lack.
#[cfg(all(not(feature = "std"), all(target_arch = "arm", target_abi = "eabihf", target_feature = "mclass", target_feature = "fpregs")))]
extern "C" {
    fn q8bert_fma_f32(a: f32, b: f32, c: f32) -> f32;
}
#[cfg(all(not(feature = "std"), all(target_arch = "arm", target_abi = "eabihf", target_feature = "mclass", target_feature = "fpregs")))]
core::arch::global_asm!(
    // Module-level asm does not see the target's FPU features (the firmware's LTO build rejects
    // `vfma` without this); FPv4-SP is the subset every M-profile FPU implements.
    ".syntax unified",
    ".thumb",
    ".fpu fpv4-sp-d16",
    ".section .text.q8bert_fma_f32,\"ax\",%progbits",
    ".globl q8bert_fma_f32",
    ".p2align 1",
    ".type q8bert_fma_f32,%function",
    ".thumb_func",
    "q8bert_fma_f32:",
    "vfma.f32 s2, s0, s1",
    "vmov.f32 s0, s2",
    "bx lr",
    ".size q8bert_fma_f32, . - q8bert_fma_f32",
);

/// Correctly rounded `a * b + c` without an FPU: integer arithmetic on the operands' bits
/// (~100 instructions on RV32IMAC, against ~1,000 for the f64 emulation of the soft-float
/// library). Zeros, infinities and NaN go to [`fused_mul_add_f64`], which handles IEEE's
/// special cases (signed zeros, invalid operations) the way hardware does.
pub fn fused_mul_add_soft(a: f32, b: f32, c: f32) -> f32 {
    if !(a.is_finite() && b.is_finite() && c.is_finite()) || a == 0.0 || b == 0.0 {
        return fused_mul_add_f64(a, b, c);
    }
    // x = m 2^e with an integer m (subnormals: no implicit bit, the minimum exponent).
    let split = |x: f32| {
        let bits = x.to_bits();
        let field = (bits >> 23) & 0xff;
        let m = (bits & 0x7f_ffff) as u64 | if field == 0 { 0 } else { 1 << 23 };
        (bits >> 31, m, field.max(1) as i32 - 150)
    };
    let ((sa, ma, ea), (sb, mb, eb), (sc, mc, ec)) = (split(a), split(b), split(c));
    // The exact product, its leading bit moved to bit 61 (two bits of headroom for the sum).
    let product = ma * mb;
    let shift = product.leading_zeros() as i32 - 2;
    let (sp, mp, ep) = (sa ^ sb, product << shift, ea + eb - shift);
    let (sign, sum, e) = if mc == 0 {
        (sp, mp, ep)
    } else {
        let shift = mc.leading_zeros() as i32 - 2;
        let (mc, ec) = (mc << shift, ec - shift);
        // Align the smaller to the larger; bits shifted out leave a sticky 1 at bit 0, far below
        // the rounding position (bit >= 35 unless the sum cancels, which only happens when the
        // shift is 0 or 1 and drops nothing: both operands end in >= 13 zero bits).
        let ((s_big, big, e_big), (s_small, small, e_small)) =
            if ep >= ec { ((sp, mp, ep), (sc, mc, ec)) } else { ((sc, mc, ec), (sp, mp, ep)) };
        let d = (e_big - e_small) as u32;
        let small = if d >= 63 { 1 } else { (small >> d) | ((small & ((1u64 << d) - 1)) != 0) as u64 };
        if s_big == s_small {
            (s_big, big + small, e_big)
        } else if big >= small {
            (s_big, big - small, e_big)
        } else {
            (s_small, small - big, e_big)
        }
    };
    if sum == 0 {
        return 0.0; // exact cancellation: +0 when rounding to nearest
    }
    // Keep 24 bits (fewer for a subnormal result: its unit is 2^-149), round to nearest even.
    let top = 63 - sum.leading_zeros() as i32;
    let drop = (top - 23).max(-149 - e);
    let m = if drop <= 0 {
        sum << -drop
    } else if drop >= 64 {
        0 // far below the smallest subnormal's half
    } else {
        let (kept, rest, half) = (sum >> drop, sum & ((1u64 << drop) - 1), 1u64 << (drop - 1));
        kept + (rest > half || (rest == half && kept & 1 == 1)) as u64
    };
    // Normal: (biased exponent - 1) << 23 plus m with its implicit bit, so a mantissa that
    // rounded up to 2^24 carries into the exponent; subnormal (drop fixed by the minimum
    // exponent): m itself, which may round up to the smallest normal.
    let magnitude = if drop == top - 23 { (((e + top + 126) as u64) << 23) + m } else { m };
    let magnitude = magnitude.min(0x7f80_0000) as u32; // overflow: infinity
    f32::from_bits(sign << 31 | magnitude)
}

/// Correctly rounded `a * b + c` from f64 arithmetic: the product of two f32 is exact in f64,
/// the sum is rounded to odd (exact error by TwoSum; if inexact, take the neighbour with an odd
/// last bit), and rounding a round-to-odd f64 to f32 is correct because f64 has more than
/// 24 + 2 bits (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums", IEEE TC 2008).
pub fn fused_mul_add_f64(a: f32, b: f32, c: f32) -> f32 {
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
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
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

/// Largest element (i32::MIN for an empty slice), 16 lanes at a time so it vectorizes.
#[inline(always)]
pub fn max_i32(v: &[i32]) -> i32 {
    let mut acc = [i32::MIN; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] = acc[l].max(x);
    }
    acc.iter().copied().fold(i32::MIN, i32::max)
}

/// Largest element (NEG_INFINITY for an empty slice), 16 lanes at a time so it vectorizes.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
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

/// Largest magnitude (0 for an empty slice; NaN is skipped), 16 lanes at a time so it vectorizes.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
pub fn max_abs(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let a = c[l].abs();
            acc[l] = if a > acc[l] { a } else { acc[l] };
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        let a = x.abs();
        acc[l] = if a > acc[l] { a } else { acc[l] };
    }
    acc.iter().copied().fold(0.0, |m, x| if x > m { x } else { m })
}

/// (smallest, largest) element ((inf, -inf) for an empty slice; NaN is skipped). Two passes of
/// 16 lanes: one loop carrying both minima and maxima did not vectorize (10x slower).
#[inline(always)]
pub fn min_max(v: &[f32]) -> (f32, f32) {
    (min(v), max(v))
}

/// Smallest element (INFINITY for an empty slice; NaN is skipped), 16 lanes at a time.
#[inline(always)]
pub fn min(v: &[f32]) -> f32 {
    let mut acc = [f32::INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] < acc[l] { c[l] } else { acc[l] };
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] = if x < acc[l] { x } else { acc[l] };
    }
    acc.iter().copied().fold(f32::INFINITY, |m, x| if x < m { x } else { m })
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

    /// The integer sqrt of the no_std build against the FPU's, on every 61st f32 bit pattern
    /// (subnormals to infinity, 34M values), on both sides of each power of two, and on the
    /// values whose sqrt is exact; and `sqrt` maps 0, negatives and NaN to 0 on both paths.
    #[test]
    #[cfg(feature = "std")]
    fn integer_sqrt_is_correctly_rounded() {
        let check = |x: f32| assert_eq!(sqrt_exact(x).to_bits(), x.sqrt().to_bits(), "sqrt({x:e}) [{:#x}]", x.to_bits());
        let mut bits = 1u32;
        while bits < 0x7f80_0000 {
            check(f32::from_bits(bits));
            bits += 61;
        }
        for e in 0..255u32 {
            for d in [0u32, 1, 2, 0x7f_fffe, 0x7f_ffff] {
                let b = (e << 23) | d;
                if b != 0 {
                    check(f32::from_bits(b));
                }
            }
        }
        for k in 1..4096u32 {
            check((k * k) as f32);
            check((k * k) as f32 / 65536.0);
        }
        check(f32::INFINITY);
        for x in [0.0f32, -0.0, -1.0, f32::NEG_INFINITY, f32::NAN] {
            assert_eq!(sqrt(x).to_bits(), 0, "sqrt({x})");
        }
    }

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
        // Any bit patterns: subnormal operands and results, overflow, total cancellation.
        let mut next_bits = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f32::from_bits(state as u32)
        };
        for i in 0..2_000_000 {
            let (a, b) = (next_bits(), next_bits());
            let c = match i % 3 {
                0 => next_bits(),
                1 => -(a * b),
                _ => f32::from_bits((a * b).to_bits() ^ (next_bits().to_bits() & 0x8000_00ff)),
            };
            let (got, want) = (fused_mul_add_soft(a, b, c), a.mul_add(b, c));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{a:e} * {b:e} + {c:e}: {got:e} vs {want:e}");
        }
        for (a, b) in [(1e-20f32, 1e-20f32), (1e-23, 1e-22), (3e-39, 0.5), (1e-45, 1.0), (1e-45, 0.5), (1e-45, 0.75), (f32::MAX, 1.5)] {
            for c in [0.0f32, -0.0, 1e-45, -1e-45, 1.17e-38, -1.17e-38, -(a * b)] {
                assert_eq!(fused_mul_add_soft(a, b, c).to_bits(), a.mul_add(b, c).to_bits(), "{a:e} * {b:e} + {c:e}");
            }
        }
        for &(a, b, c) in &[(f32::INFINITY, 0.0, 1.0), (f32::INFINITY, 1.0, f32::NEG_INFINITY), (f32::NAN, 1.0, 1.0), (f32::MAX, 2.0, -f32::MAX), (1e-30, 1e-30, 0.0)] {
            let (got, want) = (fused_mul_add_soft(a, b, c), a.mul_add(b, c));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{a:e} * {b:e} + {c:e}: {got:e} vs {want:e}");
        }
    }

    #[test]
    fn exp_is_accurate() {
        let (mut x, mut worst) = (-80.0f64, 0.0f64);
        while x < 80.0 {
            let got = exp(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_37;
        }
        eprintln!("exp: max relative error {worst:.3e}");
        assert!(worst < 4e-7, "exp: max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn erf_tanh_gelu_are_accurate() {
        let mut x = -6.0f64;
        while x < 6.0 {
            let xf = x as f32;
            let e = (erf(xf) as f64 - libm_erf(xf as f64)).abs();
            assert!(e < ERF_MAX_ERROR, "erf({x}) off by {e}");
            // GELU: |x|/2 times (the erf error + the roundings of x/sqrt2 and 1 + erf), plus two
            // roundings of the result: < 3e-7 |x|.
            let want = 0.5 * (xf as f64) * (1.0 + libm_erf(xf as f64 / core::f64::consts::SQRT_2));
            let g = (gelu(xf) as f64 - want).abs();
            assert!(g <= 3e-7 * (xf as f64).abs(), "gelu({x}) off by {g}");
            assert!((tanh(xf) as f64 - (xf as f64).tanh()).abs() < 3e-7, "tanh({x})");
            x += 0.001;
        }
        assert_eq!(gelu(0.0), 0.0);
    }

    /// The tanh GELU and relu against f64 references, on a dense sweep of [-14, 14] and on special
    /// values.
    #[test]
    fn gelu_tanh_and_relu_are_accurate() {
        // x/2 (1 + tanh u) = x / (1 + e^(-2u)), the second free of f64's own cancellation in
        // 1 + tanh(u) for u < -19; the tanh form is checked against it where it is accurate.
        let u = |x: f64| (2.0 / core::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        let reference = |x: f64| x / (1.0 + (-2.0 * u(x)).exp());
        for x in [-3.0f64, -1.0, -0.1, 0.5, 2.0, 4.0] {
            let tanh_form = 0.5 * x * (1.0 + u(x).tanh());
            assert!((tanh_form - reference(x)).abs() < 1e-15, "{x}");
        }
        // Error measured against |x|, as for the erf GELU: the absolute error of a product
        // x * sigmoid(2u), where the rounding of u in f32 (~|u| ulp) is what exp amplifies.
        let mut worst = 0.0f64;
        let mut x = -14.0f64;
        while x < 14.0 {
            let xf = x as f32;
            let want = reference(xf as f64);
            let got = gelu_tanh(xf) as f64;
            let e = (got - want).abs() / (xf as f64).abs().max(1e-30);
            worst = worst.max(e);
            assert!(e <= 4e-7, "gelu_tanh({xf}) = {got}, want {want}");
            assert_eq!(relu(xf), if xf > 0.0 { xf } else { 0.0 });
            x += 0.000_7;
        }
        eprintln!("gelu_tanh: max |error| / |x| {worst:.3e}");
        // The two GELUs differ by at most 4.7e-4 (at x = -2.7), which is what tells them apart.
        let d = (gelu_tanh(-2.7) - gelu(-2.7)).abs();
        assert!(d > 4.5e-4 && d < 5e-4, "{d}");
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert_eq!(gelu_tanh(-12.5), 0.0);
        assert_eq!(gelu_tanh(-1e30), 0.0);
        assert_eq!(gelu_tanh(f32::NEG_INFINITY), 0.0);
        for x in [20.0f32, 1e4, 1e30, f32::MAX, f32::INFINITY] {
            assert_eq!(gelu_tanh(x), x, "gelu_tanh({x})");
        }
        assert!(gelu_tanh(f32::NAN).is_nan());
        assert_eq!(relu(f32::NAN).to_bits(), 0);
        assert_eq!(relu(-0.0).to_bits(), 0);
    }

    /// Bound on |erf(x) - erf(x) exact| over all f32: `scripts/fit_erf.py --exhaustive`
    /// measures 2.178e-7 on every f32 in [2^-16, 4] (the rest follows, see the script).
    const ERF_MAX_ERROR: f64 = 2.2e-7;

    /// Every 128th f32 bit pattern in [0, 8] (8.5M values, subnormals to 8) against the f64
    /// reference, plus exact properties: odd symmetry, saturation, infinities, NaN.
    #[test]
    fn erf_on_f32_sweep() {
        let mut worst = (0.0f64, 0.0f32);
        for bits in (0..=8.0f32.to_bits()).step_by(128) {
            let x = f32::from_bits(bits);
            let y = erf(x);
            let e = (y as f64 - libm_erf(x as f64)).abs();
            if e > worst.0 {
                worst = (e, x);
            }
            assert_eq!(erf(-x).to_bits(), (-y).to_bits(), "erf is odd at {x}");
            assert!(y.abs() <= 1.0, "erf({x}) = {y}");
        }
        assert!(worst.0 < ERF_MAX_ERROR, "erf({}) off by {}", worst.1, worst.0);
        for x in [3.93f32, 4.0, 5.6, 9.0, 1e4, 1e30, f32::MAX, f32::INFINITY] {
            assert_eq!(erf(x), 1.0, "erf({x})");
            assert_eq!(erf(-x), -1.0, "erf({})", -x);
            if x > 3.92 * core::f32::consts::SQRT_2 {
                assert_eq!(gelu(x), x, "gelu({x})");
            }
        }
        assert_eq!(gelu(-1e30), 0.0);
        assert!(erf(f32::NAN).is_nan() && gelu(f32::NAN).is_nan());
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(gelu(-0.0), 0.0);
        let tiny = f32::from_bits(1); // smallest subnormal: erf(x) = 2x/sqrt(pi) rounds to x
        assert_eq!(erf(tiny), tiny);
        // Relative accuracy near 0, from the odd first piece: 2.65e-7 (the script) + rounding.
        let x = 1e-30f32;
        let rel = (erf(x) as f64 / x as f64) / (2.0 / core::f64::consts::PI.sqrt()) - 1.0;
        assert!(rel.abs() < 4e-7, "erf({x}) = {}", erf(x));
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
