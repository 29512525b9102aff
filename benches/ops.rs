//! The fp32 epilogues of the forward pass, single thread, in ns per element: GELU + requantize
//! on one 3072-wide row (the BERT-base FFN), softmax on 128 scores, LayerNorm on 768 features.
//! Each runs the way the forward pass runs it: inside `Kernel::with_fp32_simd` of the kernel,
//! so the loops are compiled for that kernel's vector width (AVX-512, AVX2, or baseline SSE2
//! for the scalar kernel).
//!
//! The summary also times the erf GELU used before (Abramowitz & Stegun 7.1.26 with a division
//! and an exp, plus a series near 0; copied below, only here) against the current one,
//! alternating the two in the same run so that clock changes and other tenants hit both alike.
//!
//! The fp32 attention tiles (scores of 4 query rows against 64 keys, and the probability-weighted
//! sum of 128 value rows, for 64-wide heads) of each kernel are timed against the portable
//! reference tiles, which is what the AVX2 and AVX-VNNI kernels ran before they had their own.
//!
//! `cargo bench --bench ops` runs criterion, then the summary; `-- --summary-only` just the summary.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use q8bert::kernels::{attention, Kernel, KernelKind};
use q8bert::ops::{self, math};

const N_GELU: usize = 3072;
const N_SOFTMAX: usize = 128;
const N_LN: usize = 768;

/// The erf of src/ops/math.rs before the polynomial one, verbatim (`math::exp` is unchanged).
#[inline(always)]
fn erf_old(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let tail = 1.0 - poly * math::exp(-ax * ax);
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

#[inline(always)]
fn gelu_old(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_old(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `ops::dequantize_gelu_quantize_row` with the old GELU.
#[inline(always)]
fn dequantize_gelu_quantize_row_old(acc: &[i32], bias: &[i32], dq: &[f32], next_scale: f32, out: &mut [i8]) {
    let n = acc.len();
    for (((o, &a), &b), &d) in out.iter_mut().zip(acc).zip(bias).zip(dq) {
        *o = math::quantize(gelu_old(a.wrapping_add(b) as f32 * d), next_scale);
    }
    out[n..].fill(0);
}

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0 // uniform in [-1, 1)
    }
}

/// One FFN output row: int32 accumulators whose dequantized values span about [-6, 6] (the
/// whole range GELU sees, both pieces of erf and its saturation).
struct GeluRow {
    acc: Vec<i32>,
    bias: Vec<i32>,
    dq: Vec<f32>,
    out: Vec<i8>,
}

impl GeluRow {
    fn new() -> GeluRow {
        let mut r = rng(0x9E37_79B9_7F4A_7C15);
        let acc = (0..N_GELU).map(|_| (r() * 55_000.0) as i32).collect();
        let bias = (0..N_GELU).map(|_| (r() * 5_000.0) as i32).collect();
        let dq = (0..N_GELU).map(|_| 1e-4 * (1.0 + 0.05 * r())).collect();
        GeluRow { acc, bias, dq, out: vec![0; ops::padded_k(N_GELU)] }
    }
    #[inline(always)]
    fn run(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::dequantize_gelu_quantize_row(black_box(&self.acc), &self.bias, &self.dq, 12.7, &mut self.out),
        );
        black_box(&self.out);
    }
    #[inline(always)]
    fn run_old(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || dequantize_gelu_quantize_row_old(black_box(&self.acc), &self.bias, &self.dq, 12.7, &mut self.out),
        );
        black_box(&self.out);
    }
}

/// The per-token scheme's FFN-in epilogue on one row: dequantize with the row's scale and zero
/// point, GELU, quantize with a new scale and zero point (`bert::linear`'s `GeluQuant` path).
struct PerRowGelu {
    acc: Vec<i32>,
    bias: Vec<f32>,
    w_inv: Vec<f32>,
    wsum: Vec<i32>,
    y: Vec<f32>,
    out: Vec<i8>,
}

impl PerRowGelu {
    fn new() -> PerRowGelu {
        let mut r = rng(0x51_7CC1_B727_220A);
        PerRowGelu {
            acc: (0..N_GELU).map(|_| (r() * 55_000.0) as i32).collect(),
            bias: (0..N_GELU).map(|_| 0.5 * r()).collect(),
            w_inv: (0..N_GELU).map(|_| 1e-3 * (1.0 + 0.05 * r())).collect(),
            wsum: (0..N_GELU).map(|_| (r() * 3000.0) as i32).collect(),
            y: vec![0.0; N_GELU],
            out: vec![0; ops::padded_k(N_GELU)],
        }
    }
    const ROW: ops::RowScale = ops::RowScale { inv: 0.1, zero: -3 };
    #[inline(always)]
    fn dequantize(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::dequantize_row_per_row(black_box(&self.acc), &self.bias, &self.w_inv, Self::ROW, &self.wsum, &mut self.y),
        );
        black_box(&self.y);
    }
    #[inline(always)]
    fn gelu(&mut self, kern: &Kernel) {
        self.dequantize(kern);
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::activate(q8bert::model::Activation::Gelu, black_box(&mut self.y)),
        );
    }
    #[inline(always)]
    fn quantize(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || black_box(ops::quantize_row_per_row(black_box(&self.y), &mut self.out, true)),
        );
    }
    #[inline(always)]
    fn all(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || {
                ops::dequantize_row_per_row(black_box(&self.acc), &self.bias, &self.w_inv, Self::ROW, &self.wsum, &mut self.y);
                ops::activate(q8bert::model::Activation::Gelu, &mut self.y);
                black_box(ops::quantize_row_per_row(&self.y, &mut self.out, true))
            },
        );
    }
}

/// Softmax and LayerNorm rows, run in place again and again (softmax of probabilities and
/// LayerNorm of a normalized row stay in range, and the code has no data-dependent branch).
struct Rows {
    scores: Vec<f32>,
    /// int32 scores of int8 attention (Q·Kᵀ of int8 rows of 64), and their softmax.
    int_scores: Vec<i32>,
    probs: Vec<f32>,
    hidden: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Rows {
    fn new() -> Rows {
        let mut r = rng(0x2545_F491_4F6C_DD1D);
        Rows {
            scores: (0..N_SOFTMAX).map(|_| 8.0 * r()).collect(),
            int_scores: (0..N_SOFTMAX).map(|_| (60_000.0 * r()) as i32).collect(),
            probs: vec![0.0; N_SOFTMAX],
            hidden: (0..N_LN).map(|_| 3.0 * r()).collect(),
            gamma: (0..N_LN).map(|_| 1.0 + 0.2 * r()).collect(),
            beta: (0..N_LN).map(|_| 0.1 * r()).collect(),
        }
    }
    #[inline(always)]
    fn softmax(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::softmax_scaled(black_box(&mut self.scores), 0.125),
        );
    }
    #[inline(always)]
    fn softmax_i32(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::softmax_scaled_i32(black_box(&self.int_scores), 1.2e-4, black_box(&mut self.probs)),
        );
    }
    #[inline(always)]
    fn layer_norm(&mut self, kern: &Kernel) {
        kern.with_fp32_simd(
            #[inline(always)]
            || ops::layer_norm(black_box(&mut self.hidden), &self.gamma, &self.beta, 1e-12),
        );
    }
}

/// Attention tiles of a 64-wide head and 128 keys, the BERT-base and MiniLM shape.
struct AttentionTiles {
    q: Vec<f32>,
    kt: Vec<f32>,
    p: Vec<f32>,
    v: Vec<f32>,
    scores: [[f32; attention::KEY_TILE]; attention::QUERY_ROWS],
    values: [[f32; attention::VALUE_TILE]; attention::QUERY_ROWS],
}

impl AttentionTiles {
    const DH: usize = 64;
    const KEYS: usize = 128;
    /// Multiply-adds of one `scores` call (both key tiles) and of one `values` call.
    const MACS: usize = attention::QUERY_ROWS * Self::DH * Self::KEYS;

    fn new() -> AttentionTiles {
        let mut r = rng(0x9E37_79B9_7F4A_7C15);
        let mut fill = |n: usize| (0..n).map(|_| r()).collect::<Vec<f32>>();
        AttentionTiles {
            q: fill(attention::QUERY_ROWS * Self::DH),
            kt: fill(Self::DH * Self::KEYS),
            p: fill(attention::QUERY_ROWS * Self::KEYS),
            v: fill(Self::KEYS * Self::DH),
            scores: [[0.0; attention::KEY_TILE]; attention::QUERY_ROWS],
            values: [[0.0; attention::VALUE_TILE]; attention::QUERY_ROWS],
        }
    }
    fn scores(&mut self, kern: Option<&Kernel>) {
        for j0 in (0..Self::KEYS).step_by(attention::KEY_TILE) {
            let kt = black_box(&self.kt[j0..]);
            match kern {
                Some(k) => k.attention_scores_tile(&self.q, Self::DH, kt, Self::KEYS, &mut self.scores),
                None => attention::scores_tile_reference(&self.q, Self::DH, kt, Self::KEYS, &mut self.scores),
            }
        }
        black_box(&self.scores);
    }
    fn values(&mut self, kern: Option<&Kernel>) {
        let v = black_box(&self.v);
        match kern {
            Some(k) => k.attention_values_tile(&self.p, Self::KEYS, Self::KEYS, v, Self::DH, &mut self.values),
            None => attention::values_tile_reference(&self.p, Self::KEYS, Self::KEYS, v, Self::DH, &mut self.values),
        }
        black_box(&self.values);
    }
}

/// One kernel per fp32 code path: AVX-512, AVX2 (also what AVX-VNNI runs), baseline (scalar).
fn kernels() -> Vec<Kernel> {
    [KernelKind::Avx512Vnni, KernelKind::Avx2, KernelKind::Scalar].into_iter().filter_map(Kernel::new).collect()
}

fn criterion_benches(c: &mut Criterion) {
    let mut gelu = GeluRow::new();
    let mut rows = Rows::new();
    for kern in kernels() {
        let name = kern.kind().name();
        let mut g = c.benchmark_group("gelu_requantize_3072");
        g.throughput(Throughput::Elements(N_GELU as u64));
        g.bench_function(BenchmarkId::new("new", name), |b| b.iter(|| gelu.run(&kern)));
        g.bench_function(BenchmarkId::new("old", name), |b| b.iter(|| gelu.run_old(&kern)));
        g.finish();
        let mut g = c.benchmark_group("softmax_128");
        g.throughput(Throughput::Elements(N_SOFTMAX as u64));
        g.bench_function(name, |b| b.iter(|| rows.softmax(&kern)));
        g.bench_function(BenchmarkId::new("int32 scores", name), |b| b.iter(|| rows.softmax_i32(&kern)));
        g.finish();
        let mut g = c.benchmark_group("layer_norm_768");
        g.throughput(Throughput::Elements(N_LN as u64));
        g.bench_function(name, |b| b.iter(|| rows.layer_norm(&kern)));
        g.finish();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// ns per element of `reps` calls of `f` on `n` elements.
fn ns_per_elem(f: &mut impl FnMut(), reps: usize, n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / (reps * n) as f64
}

/// Alternates ~0.5 ms samples of `new` and `old` on `state` (order swapped every round) for
/// `min_time`. Returns the median ns/element of each, their best, and the median of the
/// per-round old/new ratios.
fn interleaved<S>(state: &mut S, new: impl Fn(&mut S), old: impl Fn(&mut S), n: usize, min_time: Duration) -> [f64; 5] {
    let once = ns_per_elem(&mut || new(state), 10, n) * n as f64; // warm-up, and the sample size
    ns_per_elem(&mut || old(state), 10, n);
    let reps = ((0.5e6 / once) as usize).max(1);
    let (mut ts_new, mut ts_old, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < min_time || ts_new.len() < 11 {
        let (a, b) = if ts_new.len() % 2 == 0 {
            let a = ns_per_elem(&mut || new(state), reps, n);
            (a, ns_per_elem(&mut || old(state), reps, n))
        } else {
            let b = ns_per_elem(&mut || old(state), reps, n);
            (ns_per_elem(&mut || new(state), reps, n), b)
        };
        ts_new.push(a);
        ts_old.push(b);
        ratios.push(b / a);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    [median(ts_new.clone()), median(ts_old.clone()), best(&ts_new), best(&ts_old), median(ratios)]
}

fn summary() {
    println!("\n== summary (single thread, ns per element) ==");
    println!("gelu + requantize on {N_GELU}: current erf vs the old one, samples interleaved");
    println!("{:<12} {:>9} {:>9} {:>9} {:>9} {:>12}", "fp32 code of", "new med", "old med", "new best", "old best", "old/new med");
    let mut gelu = GeluRow::new();
    for kern in kernels() {
        let [n, o, nb, ob, r] =
            interleaved(&mut gelu, |g| g.run(&kern), |g| g.run_old(&kern), N_GELU, Duration::from_millis(3000));
        println!("{:<12} {n:>9.3} {o:>9.3} {nb:>9.3} {ob:>9.3} {r:>11.2}x", kern.kind().name());
    }
    println!("per-token scheme's FFN-in epilogue on {N_GELU} (ns per element, medians): dequantize, GELU, quantize with a zero point, all three");
    let mut row = PerRowGelu::new();
    for kern in kernels() {
        let (mut dq, mut act, mut q, mut all) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            dq.push(ns_per_elem(&mut || row.dequantize(&kern), 200, N_GELU));
            act.push(ns_per_elem(&mut || row.gelu(&kern), 200, N_GELU));
            q.push(ns_per_elem(&mut || row.quantize(&kern), 200, N_GELU));
            all.push(ns_per_elem(&mut || row.all(&kern), 200, N_GELU));
        }
        println!(
            "{:<12} dequantize {:>7.3}  gelu {:>7.3}  quantize {:>7.3}  all {:>7.3}",
            kern.kind().name(),
            median(dq),
            median(act),
            median(q),
            median(all)
        );
    }
    println!(
        "attention tiles, dh {} and {} keys: GFLOP/s of the kernel's tiles and of the reference tiles, samples interleaved (medians)",
        AttentionTiles::DH,
        AttentionTiles::KEYS
    );
    let mut tiles = AttentionTiles::new();
    let gflops = |ns_per_mac: f64| 2.0 / ns_per_mac;
    for kern in kernels() {
        let n = AttentionTiles::MACS;
        let t = Duration::from_millis(1000);
        let [s, s_ref, ..] = interleaved(&mut tiles, |a| a.scores(Some(&kern)), |a| a.scores(None), n, t);
        let [v, v_ref, ..] = interleaved(&mut tiles, |a| a.values(Some(&kern)), |a| a.values(None), n, t);
        println!(
            "{:<12} scores {:>7.1} (reference {:>6.1})  values {:>7.1} (reference {:>6.1})",
            kern.kind().name(),
            gflops(s),
            gflops(s_ref),
            gflops(v),
            gflops(v_ref)
        );
    }
    println!("softmax on {N_SOFTMAX}, layer_norm on {N_LN} (medians of ~0.5 ms samples)");
    let mut rows = Rows::new();
    for kern in kernels() {
        let (mut sm, mut smi, mut ln) = (Vec::new(), Vec::new(), Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1000) {
            sm.push(ns_per_elem(&mut || rows.softmax(&kern), 4000, N_SOFTMAX));
            smi.push(ns_per_elem(&mut || rows.softmax_i32(&kern), 4000, N_SOFTMAX));
            ln.push(ns_per_elem(&mut || rows.layer_norm(&kern), 1000, N_LN));
        }
        println!(
            "{:<12} softmax {:>7.3}  softmax of int32 {:>7.3}  layer_norm {:>7.3}",
            kern.kind().name(),
            median(sm),
            median(smi),
            median(ln)
        );
    }
}

fn main() {
    let summary_only = std::env::args().any(|a| a == "--summary-only");
    if !summary_only {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    summary();
}
