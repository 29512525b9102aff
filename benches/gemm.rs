//! Single-thread GEMM throughput on the BERT-base shapes (M=128, and the row tasks of a batch), per kernel, against the
//! int8 peak measured in the same run by a register-only probe: `tdpbssd` for the AMX kernel,
//! `vpdpbusd` for the other x86-64 ones, the AVX2 kernel's own four-instruction step on CPUs
//! without VNNI (plus, for reference, the saturating three-instruction step other runtimes run
//! there), `smmla` or `sdot` on aarch64 (none for NEON-only CPUs: criterion's GOPS only). Each
//! kernel is set against its own instruction's probe where it has one. Where 7-bit weights
//! make a kernel faster (AVX2 without VNNI, `WeightRange::Narrow`), an extra row or bench
//! ("avx2 7-bit") runs it on weights in -63..=63.
//!
//! `cargo bench --bench gemm` runs criterion, then prints a summary table (GOPS, % of peak).
//! `cargo bench --bench gemm -- --summary-only` prints just the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use q8bert::kernels::{pack_weights, probe, weight_sums, Kernel, KernelKind, WeightRange};

const SHAPES: [(usize, usize, usize); 10] = [
    (128, 768, 768),
    (128, 768, 3072),
    (128, 3072, 768),
    // One row task of each BERT-base linear layer in a batch (`bert::linear_blocks`: 192 KiB of
    // accumulators, 24 to 96 rows): QKV, attention output, FFN in, FFN out.
    (24, 768, 2304),
    (64, 768, 768),
    (24, 768, 3072),
    (64, 3072, 768),
    // The AMX kernel's tasks: a whole 256-token sub-batch (4 MiB of accumulators): QKV, FFN in,
    // FFN out (attention output: (256, 768, 768)).
    (256, 768, 2304),
    (256, 768, 3072),
    (256, 3072, 768),
];

struct Problem {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i8>,
    /// Packed weights start at `wp[w_off..]`: 64-byte aligned, as in the model file,
    /// unless `GEMM_W_OFFSET` shifts them (to see the cost of split-line loads).
    wp: Vec<u8>,
    w_off: usize,
    ws: Vec<i32>,
    out: Vec<i32>,
    range: WeightRange,
}

impl Problem {
    fn new(m: usize, k: usize, n: usize) -> Problem {
        Problem::with_weights(m, k, n, WeightRange::Full)
    }

    /// The same problem with its weights halved into -63..=63 (7-bit weights).
    fn narrow(m: usize, k: usize, n: usize) -> Problem {
        Problem::with_weights(m, k, n, WeightRange::Narrow)
    }

    fn with_weights(m: usize, k: usize, n: usize, range: WeightRange) -> Problem {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % 255) as i32 - 127) as i8
        };
        let a: Vec<i8> = (0..m * k).map(|_| rnd()).collect();
        let halve = range == WeightRange::Narrow;
        let w: Vec<i8> = (0..n * k).map(|_| if halve { rnd() / 2 } else { rnd() }).collect();
        let packed = pack_weights(&w, n, k);
        let mut wp = vec![0u8; packed.len() + 128];
        let shift: usize = std::env::var("GEMM_W_OFFSET").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let w_off = wp.as_ptr().align_offset(64) + shift % 64;
        wp[w_off..w_off + packed.len()].copy_from_slice(&packed);
        Problem { m, k, n, a, wp, w_off, ws: weight_sums(&w, n, k), out: vec![0; m * n], range }
    }
    fn ops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }
    fn run(&mut self, kern: &Kernel) {
        kern.gemm_i8_ranged(
            self.range,
            black_box(&self.a),
            self.k,
            self.m,
            &self.wp[self.w_off..],
            &self.ws,
            self.n,
            self.k,
            0,
            self.n,
            &mut self.out,
            self.n,
        );
        black_box(&self.out);
    }
}

const PROBE_ITERS: u64 = 200_000;

/// Median GOPS over repeated timed runs of `f` (each returning ops done).
fn median_gops(mut f: impl FnMut() -> u64, min_time: Duration) -> f64 {
    let _ = f(); // warm-up: page faults, scratch growth, clocks
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < min_time || samples.len() < 5 {
        let t = Instant::now();
        let ops = f();
        samples.push(ops as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn peak_gops(kind: KernelKind) -> Option<f64> {
    probe::run(kind, 1)?;
    Some(median_gops(|| probe::run(kind, PROBE_ITERS).unwrap(), Duration::from_millis(500)))
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("peak");
    for kind in [KernelKind::Amx, KernelKind::Avx512Vnni, KernelKind::AvxVnni, KernelKind::Avx2] {
        if let Some(ops) = probe::run(kind, 1) {
            g.throughput(Throughput::Elements(ops * PROBE_ITERS));
            g.bench_function(kind.name(), |b| b.iter(|| probe::run(kind, PROBE_ITERS)));
        }
    }
    g.finish();

    for (m, k, n) in SHAPES {
        let mut g = c.benchmark_group(format!("gemm_m{m}_k{k}_n{n}"));
        let mut p = Problem::new(m, k, n);
        g.throughput(Throughput::Elements(p.ops()));
        for kind in KernelKind::ALL {
            let Some(kern) = Kernel::new(kind) else {
                eprintln!("SKIPPED: {} not detected", kind.name());
                continue;
            };
            if kind == KernelKind::Scalar {
                g.sample_size(10).measurement_time(Duration::from_secs(5));
            } else {
                g.sample_size(50).measurement_time(Duration::from_secs(3));
            }
            g.bench_function(BenchmarkId::from_parameter(kind.name()), |b| b.iter(|| p.run(&kern)));
            if kern.gains_from_narrow_weights() {
                let mut p7 = Problem::narrow(m, k, n);
                g.bench_function(BenchmarkId::from_parameter(format!("{}-7bit", kind.name())), |b| b.iter(|| p7.run(&kern)));
            }
        }
        g.finish();
    }
}

/// Shapes for the summary: `GEMM_SHAPES="m,k,n;m,k,n"` overrides the BERT ones (tuning aid).
fn summary_shapes() -> Vec<(usize, usize, usize)> {
    match std::env::var("GEMM_SHAPES") {
        Ok(s) => s
            .split(';')
            .map(|t| {
                let v: Vec<usize> =
                    t.split(',').map(|x| x.trim().parse().expect("GEMM_SHAPES: m,k,n;...")).collect();
                (v[0], v[1], v[2])
            })
            .collect(),
        Err(_) => SHAPES.to_vec(),
    }
}

/// Kernels for the summary: `GEMM_KERNELS="avx512-vnni,avx2"` restricts them.
fn summary_kinds() -> Vec<KernelKind> {
    match std::env::var("GEMM_KERNELS") {
        Ok(s) => s
            .split(',')
            .map(|n| KernelKind::from_name(n.trim()).expect("GEMM_KERNELS: unknown kernel"))
            .collect(),
        Err(_) => KernelKind::ALL.to_vec(),
    }
}

/// Times `f` (returning ops done) and returns GOPS.
fn gops_of(f: &mut impl FnMut() -> u64) -> f64 {
    let t = Instant::now();
    let ops = f();
    ops as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Alternates ~1 ms peak-probe samples with ~1 ms kernel samples, so clock changes and
/// other tenants hit both alike. Returns (median GOPS, best GOPS, median of per-round
/// kernel/peak ratios, best kernel / best peak, median peak).
fn interleaved(
    peak_kind: KernelKind,
    mut f: impl FnMut() -> u64,
    min_time: Duration,
) -> (f64, f64, f64, f64, f64) {
    let mut probe_f = || probe::run(peak_kind, 10_000).unwrap();
    let (_, _) = (gops_of(&mut probe_f), gops_of(&mut f)); // warm-up
    let (mut ks, mut ps, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < min_time || ks.len() < 7 {
        let p1 = gops_of(&mut probe_f);
        let k = gops_of(&mut f);
        let p2 = gops_of(&mut probe_f);
        ks.push(k);
        ps.push(p1.max(p2));
        rs.push(k / p1.max(p2));
    }
    let kbest = ks.iter().cloned().fold(0.0, f64::max);
    let pbest = ps.iter().cloned().fold(0.0, f64::max);
    (median(ks), kbest, median(rs), kbest / pbest, median(ps))
}

fn summary() {
    let peak512 = peak_gops(KernelKind::Avx512Vnni);
    let peak256 = peak_gops(KernelKind::AvxVnni);
    println!("\n== summary (single thread; GOPS = 2 ops per int8 MAC) ==");
    if let Some(p) = peak_gops(KernelKind::Amx) {
        println!("peak probe amx         (tdpbssd, 6 tiles):      {p:7.1} GOPS (median)");
    }
    if let Some(p) = peak512 {
        println!("peak probe avx512-vnni (zmm dpbusd, 24 chains): {p:7.1} GOPS (median)");
    }
    if let Some(p) = peak256 {
        println!("peak probe avx-vnni    (ymm dpbusd, 12 chains): {p:7.1} GOPS (median)");
    }
    if let Some(p) = peak_gops(KernelKind::Avx2) {
        println!("peak probe avx2        (ymm maddubs, 6 chains): {p:7.1} GOPS (median)");
        if peak512.is_none() && peak256.is_none() {
            // Without VNNI: the saturating u8 x s8 step other runtimes use, for comparison only,
            // sampled alternately with the exact step so that the ratio survives a noisy host.
            let (mut exact, mut unsigned) = (Vec::new(), Vec::new());
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) || exact.len() < 5 {
                exact.push(gops_of(&mut || probe::run(KernelKind::Avx2, PROBE_ITERS).unwrap()));
                unsigned.push(gops_of(&mut || probe::run_unsigned_avx2_reference(PROBE_ITERS).unwrap()));
            }
            let ratios: Vec<f64> = unsigned.iter().zip(&exact).map(|(u, e)| u / e).collect();
            println!(
                "  reference: the same step without vpsignb (u8 x s8, saturating; not exact, not used): {:.1} GOPS, {:.2}x the exact step (median of alternated samples)",
                median(unsigned),
                median(ratios)
            );
        }
    }
    if let Some(p) = peak_gops(KernelKind::NeonI8mm) {
        println!("peak probe neon-i8mm   (smmla, 16 chains):      {p:7.1} GOPS (median)");
    }
    if let Some(p) = peak_gops(KernelKind::NeonDotprod) {
        println!("peak probe neon-dotprod (sdot, 16 chains):      {p:7.1} GOPS (median)");
    }
    let Some(peak_kind) = [KernelKind::Amx, KernelKind::Avx512Vnni, KernelKind::AvxVnni, KernelKind::Avx2, KernelKind::NeonI8mm, KernelKind::NeonDotprod]
        .into_iter()
        .find(|&k| probe::run(k, 1).is_some())
    else {
        println!("no int8 peak probe on this CPU; GOPS only (criterion's lines above)");
        return;
    };
    println!(
        "% of peak is against the kernel's own probe (else {}'s), sampled alternately with each kernel run",
        peak_kind.name()
    );
    println!(
        "{:<16} {:<12} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "shape (M,K,N)", "kernel", "GOPS", "best", "peak", "%med", "%best"
    );
    for (m, k, n) in summary_shapes() {
        let (mut full, mut narrow) = (Problem::new(m, k, n), Problem::narrow(m, k, n));
        let runs = summary_kinds().into_iter().flat_map(|kind| {
            let narrow_too = Kernel::new(kind).is_some_and(|k| k.gains_from_narrow_weights());
            [(kind, false), (kind, true)].into_iter().take(if narrow_too { 2 } else { 1 })
        });
        for (kind, seven_bit) in runs.collect::<Vec<_>>() {
            let Some(kern) = Kernel::new(kind) else {
                println!("{:<16} {:<12} SKIPPED: not detected", format!("({m},{k},{n})"), kind.name());
                continue;
            };
            let p = if seven_bit { &mut narrow } else { &mut full };
            let name = if seven_bit { format!("{} 7-bit", kind.name()) } else { kind.name().to_string() };
            let ops = p.ops();
            // Enough repetitions for ~1 ms samples.
            let once = gops_of(&mut || {
                p.run(&kern);
                ops
            });
            let reps = ((1e-3 * once * 1e9 / ops as f64).ceil() as usize).max(1);
            let t = if kind == KernelKind::Scalar { 3000 } else { 1500 };
            let (med, best, rmed, rbest, pk) = interleaved(
                if probe::run(kind, 1).is_some() { kind } else { peak_kind },
                || {
                    for _ in 0..reps {
                        p.run(&kern);
                    }
                    ops * reps as u64
                },
                Duration::from_millis(t),
            );
            println!(
                "{:<16} {:<12} {:>8.1} {:>8.1} {:>8.1} {:>8.1}% {:>8.1}%",
                format!("({m},{k},{n})"),
                name,
                med,
                best,
                pk,
                100.0 * rmed,
                100.0 * rbest
            );
        }
    }
}

fn main() {
    let summary_only = std::env::args().any(|a| a == "--summary-only");
    if !summary_only {
        let mut c = Criterion::default().warm_up_time(Duration::from_millis(500)).configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    summary();
}
