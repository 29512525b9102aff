//! Every kernel kind against the scalar reference, bit-exact, on shared cases.

mod common;

use q8bert::kernels::{
    pack_weights, packed_len, weight_sums, Kernel, KernelKind, WeightRange, KGROUP, PANEL,
};

/// Fixed-seed xorshift64* so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Contract range [-127, 127].
    fn i8v(&mut self) -> i8 {
        (self.below(255) as i32 - 127) as i8
    }
}

/// One GEMM problem; `a` has row stride `a_stride` with garbage in the padding.
#[derive(Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<i8>,
    a_stride: usize,
    w: Vec<i8>, // row-major [n][k]
    n_begin: usize,
    n_end: usize,
    out_stride: usize,
}

impl Case {
    /// Random values; `pad` extra bytes of stride beyond round_up(k, 4), filled with garbage
    /// (including -128, outside the contract, to prove it is never used). The last row of
    /// `a` is cut right after k so any read past it is out of bounds (ASan).
    fn random(rng: &mut Rng, m: usize, n: usize, k: usize, pad: usize) -> Case {
        let a_stride = k.div_ceil(4) * 4 + pad;
        let len = if m == 0 { 0 } else { (m - 1) * a_stride + k };
        let mut a = vec![0i8; len];
        for (i, v) in a.iter_mut().enumerate() {
            *v = if i % a_stride < k { rng.i8v() } else { rng.next() as i8 };
        }
        let w = (0..n * k).map(|_| rng.i8v()).collect();
        Case { m, n, k, a, a_stride, w, n_begin: 0, n_end: n, out_stride: n }
    }

    fn filled(
        m: usize,
        n: usize,
        k: usize,
        av: impl Fn(usize, usize) -> i8,
        wv: impl Fn(usize, usize) -> i8,
    ) -> Case {
        let a_stride = k.div_ceil(4) * 4;
        let mut a = vec![0x55i8; if m == 0 { 0 } else { (m - 1) * a_stride + k }];
        for i in 0..m {
            for kk in 0..k {
                a[i * a_stride + kk] = av(i, kk);
            }
        }
        let mut w = vec![0i8; n * k];
        for j in 0..n {
            for kk in 0..k {
                w[j * k + kk] = wv(j, kk);
            }
        }
        Case { m, n, k, a, a_stride, w, n_begin: 0, n_end: n, out_stride: n }
    }

    fn desc(&self) -> String {
        format!(
            "m={} n={} k={} a_stride={} cols={}..{} out_stride={}",
            self.m, self.n, self.k, self.a_stride, self.n_begin, self.n_end, self.out_stride
        )
    }
}

const SENTINEL: i32 = 0x5A5A_5A5A;

/// Runs `kernel` on `c`; untouched output elements keep SENTINEL. Weights that fit 7 bits
/// are passed as [`WeightRange::Narrow`], as the model does.
fn run(kernel: &Kernel, c: &Case) -> Vec<i32> {
    let wp = pack_weights(&c.w, c.n, c.k);
    let ws = weight_sums(&c.w, c.n, c.k);
    let mut out = vec![SENTINEL; c.m * c.out_stride];
    kernel.gemm_i8_ranged(WeightRange::of(&wp), &c.a, c.a_stride, c.m, &wp, &ws, c.n, c.k, c.n_begin, c.n_end, &mut out, c.out_stride);
    out
}

/// Plain triple loop on the unpacked weights: checks the scalar kernel itself.
fn naive(c: &Case) -> Vec<i32> {
    let mut out = vec![SENTINEL; c.m * c.out_stride];
    for i in 0..c.m {
        for j in c.n_begin..c.n_end {
            out[i * c.out_stride + j] =
                (0..c.k).map(|kk| c.a[i * c.a_stride + kk] as i32 * c.w[j * c.k + kk] as i32).sum();
        }
    }
    out
}

/// The shared driver: every kernel kind on every case, compared with scalar bit-exactly.
/// A kind this CPU lacks is reported as SKIPPED.
fn check_all_kernels(test: &str, cases: &[Case]) {
    let scalar = Kernel::scalar();
    let want: Vec<Vec<i32>> = cases.iter().map(|c| run(&scalar, c)).collect();
    for kind in KernelKind::ALL {
        let Some(kernel) = Kernel::new(kind) else {
            eprintln!("[{test}] SKIPPED: {} not detected", kind.name());
            continue;
        };
        assert_eq!(kernel.kind(), kind);
        for (c, want) in cases.iter().zip(&want) {
            let got = run(&kernel, c);
            if &got != want {
                let idx = got.iter().zip(want).position(|(g, w)| g != w).unwrap();
                panic!(
                    "[{test}] {} differs from scalar on {}: first at row {} col {}: got {} want {}",
                    kind.name(),
                    c.desc(),
                    idx / c.out_stride.max(1),
                    idx % c.out_stride.max(1),
                    got[idx],
                    want[idx]
                );
            }
        }
        eprintln!("[{test}] ran {}: {} cases bit-exact vs scalar", kind.name(), cases.len());
    }
}

#[test]
fn scalar_matches_naive() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..200 {
        let (m, n, k) = (1 + rng.below(9), 1 + rng.below(40), 1 + rng.below(70));
        let pad = rng.below(3) * 4 + rng.below(2);
        let mut c = Case::random(&mut rng, m, n, k, pad);
        c.n_begin = rng.below(n.div_ceil(16)) * 16;
        c.n_end = c.n_begin + rng.below(n - c.n_begin + 1);
        c.out_stride = n + rng.below(3);
        assert_eq!(run(&Kernel::scalar(), &c), naive(&c), "{}", c.desc());
    }
    eprintln!("[scalar_matches_naive] ran scalar: 200 cases equal to the unpacked triple loop");
}

#[test]
fn edge_shapes() {
    let mut rng = Rng(0xE1);
    let mut cases = Vec::new();
    for m in [1, 2, 3, 5, 7, 8, 11, 12, 13, 25] {
        for n in [1, 5, 15, 16, 17, 31, 32, 33, 48, 50] {
            for k in [1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 67, 129] {
                cases.push(Case::random(&mut rng, m, n, k, 0));
            }
        }
    }
    check_all_kernels("edge_shapes", &cases);
}

#[test]
fn large_k_and_blocking() {
    let mut rng = Rng(0xB10C);
    let cases = vec![
        Case::random(&mut rng, 13, 40, 3072, 0),
        Case::random(&mut rng, 12, 33, 3073, 4), // k4 = 769: uneven k blocks, K % 4 != 0
        Case::random(&mut rng, 3, 17, 3075, 0),
        Case::random(&mut rng, 1, 1, 3072, 0),
        Case::random(&mut rng, 100, 20, 3072, 0), // two M blocks in the AVX-512 kernel
        Case::random(&mut rng, 13, 35, 3100, 0),  // k4 = 775 > 768: two k blocks everywhere
        Case::random(&mut rng, 1300, 17, 800, 0), // two M blocks in the AVX-512 and AMX kernels
        Case::random(&mut rng, 400, 20, 100, 0),
        Case::random(&mut rng, 777, 49, 770, 12),
        Case::random(&mut rng, 128, 96, 768, 0), // BERT-like tile
        // Several AMX column blocks (384 KiB of weights each), the next one prefetched.
        Case::random(&mut rng, 40, 700, 768, 0),
        Case::random(&mut rng, 33, 300, 3100, 0), // and two k blocks with a k tail
    ];
    let mut sub = Case::random(&mut rng, 17, 600, 770, 8);
    sub.n_begin = 48;
    sub.n_end = 590;
    let mut cases = cases;
    cases.push(sub);
    check_all_kernels("large_k_and_blocking", &cases);
}

#[test]
fn extremes_no_overflow_or_saturation() {
    let k = 3072;
    let mut cases = Vec::new();
    for (av, wv) in [(127i8, 127i8), (-127, -127), (127, -127), (-127, 127)] {
        cases.push(Case::filled(13, 35, k, |_, _| av, |_, _| wv));
        cases.push(Case::filled(5, 17, k - 1, |_, _| av, |_, _| wv));
    }
    // Alternating signs: worst case for i16 pair sums in the AVX2 path.
    cases.push(Case::filled(
        9,
        33,
        k,
        |i, kk| if (i + kk) % 2 == 0 { 127 } else { -127 },
        |j, kk| if (j + kk) % 3 == 0 { -127 } else { 127 },
    ));
    cases.push(Case::filled(
        7,
        16,
        4,
        |_, kk| if kk < 2 { 127 } else { -127 },
        |_, kk| if kk < 2 { 127 } else { -127 },
    ));
    // Exact expected values, independent of any kernel.
    for kind in KernelKind::ALL {
        let Some(kernel) = Kernel::new(kind) else { continue };
        for (av, wv) in [(127i8, 127i8), (-127, 127)] {
            let c = Case::filled(13, 35, k, |_, _| av, |_, _| wv);
            let want = av as i32 * wv as i32 * k as i32;
            assert!(run(&kernel, &c).iter().all(|&x| x == want), "{} extreme {av}x{wv}", kind.name());
        }
    }
    check_all_kernels("extremes", &cases);
}

/// Weights in -63..=63 take the AVX2 kernel's unsigned step (A + 128 times W, whose 16-bit
/// pair sums reach 2 * 255 * 63 at the extremes): exact on every kernel, over random shapes,
/// the extremes, and k long enough for several k blocks.
#[test]
fn narrow_weights_are_exact() {
    let mut rng = Rng(0x7B17);
    let mut cases: Vec<Case> = (0..120)
        .map(|_| {
            let (m, n, k, pad) = (1 + rng.below(40), 1 + rng.below(100), 1 + rng.below(900), rng.below(20));
            let mut c = Case::random(&mut rng, m, n, k, pad);
            c.w.iter_mut().for_each(|w| *w = (rng.below(127) as i32 - 63) as i8);
            c
        })
        .collect();
    for (av, wv) in [(127i8, 63i8), (-127, -63), (127, -63), (-127, 63)] {
        cases.push(Case::filled(13, 35, 3072, |_, _| av, |_, _| wv));
        cases.push(Case::filled(5, 17, 1601, |_, _| av, |_, _| wv));
    }
    cases.push(Case::filled(9, 33, 2000, |i, kk| if (i + kk) % 2 == 0 { 127 } else { -127 }, |j, kk| if (j + kk) % 3 == 0 { -63 } else { 63 }));
    // Column ranges not starting at 0 (the weight sums are indexed by absolute column),
    // output rows wider than the range, and enough rows and k for several row and k blocks
    // (the -128 * wsum start is redone for every row block's first k block).
    let narrowed = |mut c: Case, rng: &mut Rng| {
        c.w.iter_mut().for_each(|w| *w = (rng.below(127) as i32 - 63) as i8);
        c
    };
    for (n_begin, n_end, out_stride) in [(48, 100, 100), (16, 33, 120), (96, 97, 130)] {
        let mut c = narrowed(Case::random(&mut rng, 14, 100, 77, 3), &mut rng);
        (c.n_begin, c.n_end, c.out_stride) = (n_begin, n_end, out_stride);
        cases.push(c);
    }
    cases.push(narrowed(Case::random(&mut rng, 777, 49, 3100, 12), &mut rng));
    for c in &cases {
        assert_eq!(WeightRange::of(&pack_weights(&c.w, c.n, c.k)), WeightRange::Narrow, "{}", c.desc());
        assert_eq!(run(&Kernel::scalar(), c), naive(c), "scalar vs naive on {}", c.desc());
    }
    check_all_kernels("narrow_weights", &cases);
}

/// A Narrow claim for weights that are not is a caller bug: debug builds catch it.
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "weights wider than Narrow")]
fn false_narrow_claim_is_caught_in_debug_builds() {
    let c = Case::filled(2, 16, 8, |_, _| 1, |_, kk| if kk == 3 { 64 } else { 1 });
    let (wp, ws) = (pack_weights(&c.w, c.n, c.k), weight_sums(&c.w, c.n, c.k));
    let mut out = vec![0; c.m * c.n];
    Kernel::scalar().gemm_i8_ranged(WeightRange::Narrow, &c.a, c.a_stride, c.m, &wp, &ws, c.n, c.k, 0, c.n, &mut out, c.n);
}

/// `WeightRange::of` says Narrow only when no byte is outside -63..=63, wherever the wider one
/// is (in or across its 1024-byte blocks).
#[test]
fn weight_range_finds_any_wider_value() {
    assert_eq!(WeightRange::of(&[]), WeightRange::Narrow);
    let narrow: Vec<u8> = (0..5000i32).map(|i| (i % 127 - 63) as i8 as u8).collect();
    assert_eq!(WeightRange::of(&narrow), WeightRange::Narrow);
    for at in [0, 1, 1023, 1024, 2047, 4999] {
        for wide in [64i8, -64, 127, -127, -128] {
            let mut w = narrow.clone();
            w[at] = wide as u8;
            assert_eq!(WeightRange::of(&w), WeightRange::Full, "{wide} at {at}");
        }
    }
}

#[test]
fn random_shapes() {
    let mut rng = Rng(0xC0FFEE);
    let cases: Vec<Case> = (0..150)
        .map(|_| {
            let m = 1 + rng.below(40);
            let n = 1 + rng.below(100);
            let k = 1 + rng.below(900);
            let pad = rng.below(20);
            Case::random(&mut rng, m, n, k, pad)
        })
        .collect();
    check_all_kernels("random_shapes", &cases);
}

#[test]
fn column_subranges() {
    let mut rng = Rng(0x5AB);
    let mut cases = Vec::new();
    let base = Case::random(&mut rng, 14, 100, 77, 3);
    for n_begin in [0, 16, 32, 48, 96] {
        for n_end in [n_begin, n_begin + 1, n_begin + 15, n_begin + 16, n_begin + 17, n_begin + 33, 99, 100] {
            if n_end < n_begin || n_end > 100 {
                continue;
            }
            let mut c = base.clone();
            c.n_begin = n_begin;
            c.n_end = n_end;
            cases.push(c);
        }
    }
    // Wider output rows than n_end: the gap must stay untouched (SENTINEL compared too).
    let mut c = base.clone();
    c.n_begin = 32;
    c.n_end = 70;
    c.out_stride = 123;
    cases.push(c);
    check_all_kernels("column_subranges", &cases);
}

#[test]
fn stride_padding_is_ignored() {
    let mut rng = Rng(0xFADE);
    let mut cases = Vec::new();
    for k in [1, 3, 4, 6, 64, 65, 130] {
        for pad in [1, 4, 60, 64] {
            cases.push(Case::random(&mut rng, 13, 37, k, pad));
        }
    }
    // Same A values with two different garbage paddings must give identical outputs.
    let c1 = Case::random(&mut rng, 9, 40, 70, 10);
    let mut c2 = c1.clone();
    for (i, v) in c2.a.iter_mut().enumerate() {
        if i % c2.a_stride >= c2.k {
            *v = !*v;
        }
    }
    for kind in KernelKind::ALL {
        if let Some(kern) = Kernel::new(kind) {
            assert_eq!(run(&kern, &c1), run(&kern, &c2), "{} reads stride padding", kind.name());
        }
    }
    check_all_kernels("stride_padding", &cases);
}

#[test]
fn scratch_reuse_and_k_zero() {
    let mut rng = Rng(0x77);
    for kind in KernelKind::ALL {
        let Some(kern) = Kernel::new(kind) else {
            eprintln!("[scratch_reuse] SKIPPED: {} not detected", kind.name());
            continue;
        };
        let mut scratch = Vec::new();
        for (m, n, k) in [(50, 40, 900), (3, 5, 7), (130, 20, 3000), (1, 1, 1)] {
            let c = Case::random(&mut rng, m, n, k, 0);
            let wp = pack_weights(&c.w, n, k);
            let ws = weight_sums(&c.w, n, k);
            let mut out = vec![SENTINEL; m * n];
            kern.gemm_i8_with_scratch(&c.a, c.a_stride, m, &wp, &ws, n, k, 0, n, &mut out, n, &mut scratch);
            assert_eq!(out, naive(&c), "{} {}", kind.name(), c.desc());
        }
        let mut out = vec![SENTINEL; 6];
        kern.gemm_i8(&[], 0, 2, &[], &[0; 3], 3, 0, 0, 3, &mut out, 3);
        assert_eq!(out, vec![0; 6], "{} k=0", kind.name());
        eprintln!("[scratch_reuse] ran {}", kind.name());
    }
}

#[test]
fn pack_layout_matches_formula() {
    let mut rng = Rng(0x9);
    for (n, k) in [(1, 1), (17, 5), (33, 64), (16, 4), (5, 130)] {
        let w: Vec<i8> = (0..n * k).map(|_| rng.i8v()).collect();
        let p = pack_weights(&w, n, k);
        let k4 = k.div_ceil(KGROUP);
        assert_eq!(p.len(), packed_len(n, k));
        assert_eq!(p.len(), n.div_ceil(PANEL) * PANEL * k4 * KGROUP);
        let mut seen = vec![false; p.len()];
        for j in 0..n {
            for kk in 0..k {
                let idx = ((j / 16) * k4 + kk / 4) * 64 + (j % 16) * 4 + (kk % 4);
                assert_eq!(p[idx] as i8, w[j * k + kk]);
                seen[idx] = true;
            }
        }
        assert!(p.iter().zip(&seen).all(|(&b, &s)| s || b == 0), "padding must be zero");
        let ws = weight_sums(&w, n, k);
        for j in 0..n {
            assert_eq!(ws[j], w[j * k..(j + 1) * k].iter().map(|&x| x as i32).sum::<i32>());
        }
    }
}

#[test]
fn names_round_trip() {
    for kind in KernelKind::ALL {
        assert_eq!(KernelKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(KernelKind::from_name("avx512"), None);
    assert_eq!(Kernel::scalar().kind(), KernelKind::Scalar);
}

#[test]
#[should_panic(expected = "not a multiple of 16")]
fn rejects_unaligned_n_begin() {
    let w = pack_weights(&[1; 40], 20, 2);
    let mut out = vec![0; 20];
    Kernel::best_available().gemm_i8(&[1, 1], 2, 1, &w, &[2; 20], 20, 2, 8, 20, &mut out, 20);
}

#[test]
#[should_panic(expected = "a.len()")]
fn rejects_short_a() {
    let w = pack_weights(&[1; 40], 20, 2);
    let mut out = vec![0; 40];
    Kernel::best_available().gemm_i8(&[1, 1, 1], 4, 2, &w, &[2; 20], 20, 2, 0, 20, &mut out, 20);
}

/// On this machine every SIMD kernel must actually run, not be skipped. Needs run-time
/// detection (`std`); without it kernels exist only if enabled at compile time.
#[cfg(all(target_arch = "x86_64", target_os = "linux", feature = "std"))]
#[test]
fn kernels_present_when_cpu_has_them() {
    let info = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    let flags: Vec<&str> =
        info.lines().find(|l| l.starts_with("flags")).expect("flags line").split_whitespace().collect();
    let has = |f: &str| flags.contains(&f);
    eprintln!(
        "cpu flags: avx2={} avx_vnni={} avx512f={} avx512bw={} avx512_vnni={}",
        has("avx2"),
        has("avx_vnni"),
        has("avx512f"),
        has("avx512bw"),
        has("avx512_vnni")
    );
    if has("avx2") {
        assert!(Kernel::new(KernelKind::Avx2).is_some(), "avx2 in cpuinfo but kernel unavailable");
    }
    if has("avx2") && has("avx_vnni") {
        assert!(Kernel::new(KernelKind::AvxVnni).is_some(), "avx_vnni in cpuinfo but kernel unavailable");
    }
    if has("avx512f") && has("avx512bw") && has("avx512_vnni") {
        assert!(
            Kernel::new(KernelKind::Avx512Vnni).is_some(),
            "avx512_vnni in cpuinfo but kernel unavailable"
        );
        // With AMX (the kernel also needs the kernel's tile-state grant, which Linux gives
        // every process that asks) the tile kernel is the default; else 512-bit VNNI.
        let amx = has("amx_tile") && has("amx_int8");
        assert_eq!(Kernel::new(KernelKind::Amx).is_some(), amx, "amx_tile/amx_int8 in cpuinfo: {amx}");
        let best = if amx { KernelKind::Amx } else { KernelKind::Avx512Vnni };
        assert_eq!(Kernel::best_available().kind(), best);
    }
    for kind in KernelKind::ALL {
        eprintln!(
            "{}: {}",
            kind.name(),
            if Kernel::new(kind).is_some() { "available" } else { "SKIPPED: not detected" }
        );
    }
}

/// The fp32 attention tiles: every kernel gives the reference's bits (same sums, same order,
/// one rounding per multiply-add), for several head sizes, key counts and strides; the narrow
/// scores tile gives each key the same bits as the 64-key tile.
#[test]
fn attention_tiles_match_reference_bit_for_bit() {
    use q8bert::kernels::attention::{scores_tile_reference, values_tile_reference, KEY_TILE, KEY_TILE_NARROW, QUERY_ROWS, VALUE_TILE, VALUE_TILE_HALF};
    let mut rng = Rng(0x5EED_0A77);
    let f = |rng: &mut Rng| (rng.below(2001) as f32 - 1000.0) / 337.0;
    for &(dh, stride, len) in &[(1usize, 64usize, 1usize), (8, 64, 5), (32, 128, 77), (64, 192, 130), (48, 80, 64)] {
        let q: Vec<f32> = (0..QUERY_ROWS * dh).map(|_| f(&mut rng)).collect();
        let kt: Vec<f32> = (0..dh * stride).map(|_| f(&mut rng)).collect();
        let p: Vec<f32> = (0..QUERY_ROWS * stride).map(|_| f(&mut rng).abs() / 3.0).collect();
        let v: Vec<f32> = (0..len * stride).map(|_| f(&mut rng)).collect();
        let mut want_s = [[0.0f32; KEY_TILE]; QUERY_ROWS];
        scores_tile_reference(&q, dh, &kt, stride, &mut want_s);
        // Narrow tiles at 16-key offsets (the last one ends where `kt` does when the stride is 64).
        let narrow_at = [0, 16, 48];
        let mut want_narrow = [[[0.0f32; KEY_TILE_NARROW]; QUERY_ROWS]; 3];
        for (w, &j0) in want_narrow.iter_mut().zip(&narrow_at) {
            scores_tile_reference(&q, dh, &kt[j0..], stride, w);
            for r in 0..QUERY_ROWS {
                assert_eq!(w[r][..], want_s[r][j0..j0 + KEY_TILE_NARROW], "narrow reference tile at key {j0}, dh {dh}");
            }
        }
        let mut want_v = [[0.0f32; VALUE_TILE]; QUERY_ROWS];
        values_tile_reference(&p, stride, len.min(stride), &v, stride, &mut want_v);
        let mut want_half = [[0.0f32; VALUE_TILE_HALF]; QUERY_ROWS];
        values_tile_reference(&p, stride, len.min(stride), &v[7..], stride, &mut want_half);
        // The reference sums in a fixed order with fused multiply-adds: recompute one element
        // by hand, and check that for the longer sums this differs from separate mul and add.
        let (mut fused, mut separate) = (0.0f32, 0.0f32);
        for d in 0..dh {
            fused = q[dh + d].mul_add(kt[d * stride + 3], fused);
            separate += q[dh + d] * kt[d * stride + 3];
        }
        assert_eq!(want_s[1][3], fused);
        if dh >= 32 {
            let differs = (0..QUERY_ROWS).any(|r| {
                (0..KEY_TILE).any(|l| want_s[r][l] != (0..dh).fold(0.0f32, |a, d| a + q[r * dh + d] * kt[d * stride + l]))
            });
            assert!(differs, "dh {dh}: fused and separate sums agree everywhere (separate {separate})");
        }
        for kind in KernelKind::ALL {
            let Some(kernel) = Kernel::new(kind) else {
                eprintln!("SKIPPED: kernel {} is not available on this CPU", kind.name());
                continue;
            };
            let mut got_s = [[1.0f32; KEY_TILE]; QUERY_ROWS];
            kernel.attention_scores_tile(&q, dh, &kt, stride, &mut got_s);
            assert_eq!(got_s, want_s, "scores, kernel {}, dh {dh}", kind.name());
            for (want, &j0) in want_narrow.iter().zip(&narrow_at) {
                let mut got = [[1.0f32; KEY_TILE_NARROW]; QUERY_ROWS];
                kernel.attention_scores_tile(&q, dh, &kt[j0..], stride, &mut got);
                assert_eq!(&got, want, "narrow scores at key {j0}, kernel {}, dh {dh}", kind.name());
            }
            let mut got_v = [[1.0f32; VALUE_TILE]; QUERY_ROWS];
            kernel.attention_values_tile(&p, stride, len.min(stride), &v, stride, &mut got_v);
            assert_eq!(got_v, want_v, "values, kernel {}, len {len}", kind.name());
            let mut got_half = [[1.0f32; VALUE_TILE_HALF]; QUERY_ROWS];
            kernel.attention_values_tile(&p, stride, len.min(stride), &v[7..], stride, &mut got_half);
            assert_eq!(got_half, want_half, "half-width values, kernel {}, len {len}", kind.name());
        }
    }
}

/// The narrow scores tile at the smallest stride it takes (16: a sequence of up to 16 keys, the
/// common case for sentences): every kernel gives the reference's bits, and the reference is
/// the fused dot product in d order.
#[test]
fn narrow_scores_tile_at_stride_16_matches_reference() {
    use q8bert::kernels::attention::{scores_tile_reference, KEY_TILE_NARROW as W, QUERY_ROWS};
    let mut rng = Rng(0x16_0A77);
    let f = |rng: &mut Rng| (rng.below(2001) as f32 - 1000.0) / 337.0;
    for dh in [1usize, 7, 32, 64] {
        let q: Vec<f32> = (0..QUERY_ROWS * dh).map(|_| f(&mut rng)).collect();
        let kt: Vec<f32> = (0..dh * W).map(|_| f(&mut rng)).collect();
        let mut want = [[0.0f32; W]; QUERY_ROWS];
        scores_tile_reference(&q, dh, &kt, W, &mut want);
        for r in 0..QUERY_ROWS {
            for l in 0..W {
                let by_hand = (0..dh).fold(0.0f32, |a, d| q[r * dh + d].mul_add(kt[d * W + l], a));
                assert_eq!(want[r][l], by_hand, "reference, dh {dh}, row {r}, key {l}");
            }
        }
        for kind in KernelKind::ALL {
            let Some(kernel) = Kernel::new(kind) else {
                eprintln!("SKIPPED: kernel {} is not available on this CPU", kind.name());
                continue;
            };
            let mut got = [[1.0f32; W]; QUERY_ROWS];
            kernel.attention_scores_tile(&q, dh, &kt, W, &mut got);
            assert_eq!(got, want, "kernel {}, dh {dh}", kind.name());
        }
    }
}

/// The K^T block transpose: every kernel copies each element to its transposed place and
/// writes nothing else, for several strides (K rows are 3H floats apart in the forward pass).
#[test]
fn transpose_block_matches_reference() {
    use q8bert::kernels::attention::{transpose_block_reference, TRANSPOSE_BLOCK as N};
    let mut rng = Rng(0x7A25_0B10);
    for &(src_stride, dst_stride) in &[(16usize, 16usize), (2304, 144), (17, 33), (1152, 128)] {
        let src: Vec<f32> = (0..(N - 1) * src_stride + N).map(|_| rng.below(1 << 20) as f32 - 524288.0).collect();
        let mut want = vec![-1.0f32; (N - 1) * dst_stride + N];
        transpose_block_reference(&src, src_stride, &mut want, dst_stride);
        for (i, &x) in want.iter().enumerate() {
            let (c, r) = (i / dst_stride, i % dst_stride);
            if r < N {
                assert_eq!(x, src[r * src_stride + c], "reference at column {c}, row {r}");
            } else {
                assert_eq!(x, -1.0, "reference wrote past the block at {i}");
            }
        }
        for kind in KernelKind::ALL {
            let Some(kernel) = Kernel::new(kind) else {
                eprintln!("SKIPPED: kernel {} is not available on this CPU", kind.name());
                continue;
            };
            let mut got = vec![-1.0f32; want.len()];
            kernel.transpose_block(&src, src_stride, &mut got, dst_stride);
            assert_eq!(got, want, "kernel {}, strides {src_stride}/{dst_stride}", kind.name());
        }
    }
}

/// Exactly the kernels this CPU has are available. `Q8BERT_EXPECT_KERNELS` (a comma list of
/// names; scripts/test_aarch64.sh sets it for each emulated CPU) gives the set; without it, on
/// aarch64 Linux, the CPU's features in /proc/cpuinfo (asimddp, i8mm) decide. A CPU without
/// FEAT_DotProd (Cortex-A53) must not get the `sdot` kernel (it would be SIGILL).
#[test]
fn available_kernels_are_exactly_the_cpus() {
    let mut available: Vec<&str> =
        KernelKind::ALL.into_iter().filter(|&k| Kernel::new(k).is_some()).map(KernelKind::name).collect();
    available.sort_unstable();
    eprintln!("available kernels: {available:?}; best: {}", Kernel::best_available().kind().name());
    if let Ok(list) = std::env::var("Q8BERT_EXPECT_KERNELS") {
        let mut expected: Vec<&str> = list.split(',').map(str::trim).collect();
        expected.sort_unstable();
        assert_eq!(available, expected, "Q8BERT_EXPECT_KERNELS={list}");
        let best = KernelKind::ALL.into_iter().find(|k| list.split(',').any(|n| n.trim() == k.name())).unwrap();
        assert_eq!(Kernel::best_available().kind(), best, "the best listed kernel is the default");
        return;
    }
    #[cfg(all(target_arch = "aarch64", target_os = "linux", feature = "std"))]
    {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some(line) = info.lines().find(|l| l.starts_with("Features")) {
            let has = |f: &str| line.split_whitespace().any(|w| w == f);
            assert!(Kernel::new(KernelKind::Neon).is_some());
            assert_eq!(Kernel::new(KernelKind::NeonDotprod).is_some(), has("asimddp"), "{line}");
            assert_eq!(Kernel::new(KernelKind::NeonI8mm).is_some(), has("i8mm"), "{line}");
            return;
        }
    }
    eprintln!("SKIPPED: no Q8BERT_EXPECT_KERNELS and no aarch64 /proc/cpuinfo to compare with");
}

/// Forcing a kernel (Rust `Options::kernel`, C `q8bert_options.kernel`) runs exactly it when the
/// CPU has it and is refused with KernelUnavailable otherwise, never falls back silently.
#[test]
fn forcing_a_kernel_runs_it_or_is_refused() {
    use common::{tiny_config, Aligned, FpModel};
    use q8bert::builder::Head;
    use q8bert::ffi::*;
    use q8bert::{Model, Options, Status};
    let bytes = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).bytes();
    let buf = Aligned::new(&bytes);
    let mut refused = 0;
    for kind in KernelKind::ALL {
        let rust = Model::from_bytes(buf.bytes(), &Options { kernel: Some(kind), ..Default::default() });
        let mut opts = std::mem::MaybeUninit::<q8bert_options>::uninit();
        // SAFETY: writable storage for the options, which the call initializes.
        let mut opts = unsafe {
            q8bert_options_init(opts.as_mut_ptr());
            opts.assume_init()
        };
        opts.kernel = kind as u32;
        let mut m = std::ptr::null_mut();
        // SAFETY: valid buffer, options and output pointer.
        let st = unsafe { q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), &opts, &mut m) };
        // SAFETY: q8bert_kernel_name returns a static string.
        let c_name = unsafe { std::ffi::CStr::from_ptr(q8bert_kernel_name(kind as u32)) };
        assert_eq!(c_name.to_str().unwrap(), kind.name());
        if Kernel::new(kind).is_some() {
            assert_eq!(rust.unwrap().kernel().kind(), kind);
            assert_eq!(st, Status::Ok);
            let mut info = std::mem::MaybeUninit::<q8bert_info>::uninit();
            // SAFETY: m is a live model; info is writable.
            assert_eq!(unsafe { q8bert_model_info(m, info.as_mut_ptr()) }, Status::Ok);
            // SAFETY: filled by the successful call above.
            assert_eq!(unsafe { info.assume_init() }.kernel, kind as u32);
            // SAFETY: m came from the successful create above and is freed once.
            unsafe { q8bert_free(m) };
        } else {
            assert_eq!(rust.err().map(|e| e.status), Some(Status::KernelUnavailable), "{}", kind.name());
            assert_eq!(st, Status::KernelUnavailable, "{}", kind.name());
            assert!(m.is_null());
            refused += 1;
        }
    }
    // Every build lacks the other architecture's kernels at least.
    assert!(refused >= 3, "only {refused} kernels refused");
}

#[test]
fn peak_probes_count_ops_linearly_and_only_where_available() {
    use q8bert::kernels::probe;
    for kind in KernelKind::ALL {
        let (one, three) = (probe::run(kind, 1), probe::run(kind, 3));
        if Kernel::new(kind).is_none() {
            assert_eq!((one, three), (None, None), "{} probe ran on a CPU without it", kind.name());
        }
        if let (Some(one), Some(three)) = (one, three) {
            assert!(one > 0 && three == 3 * one, "{}: {one} ops for 1 iteration, {three} for 3", kind.name());
        }
    }
    let reference = (probe::run_unsigned_avx2_reference(1), probe::run_unsigned_avx2_reference(3));
    match Kernel::new(KernelKind::Avx2) {
        // 6 chains x 4 steps x 32 MACs x 2 ops per iteration, as the AVX2 probe.
        Some(_) => assert_eq!(reference, (Some(1536), Some(4608))),
        None => assert_eq!(reference, (None, None)),
    }
}
