//! int8 GEMM kernels over the packed "P16K4" weight layout.
//!
//! Layout: byte of W(n, k) is at `((n/16)*K4 + k/4)*64 + (n%16)*4 + (k%4)`, zero padded,
//! so one 64-byte group is one zmm operand of `vpdpbusd` (16 columns x 4 k).
//!
//! Needs `extern crate alloc` at the crate root; with the `std` feature the best kernel is
//! picked at run time, without it only kernels enabled at compile time (plus scalar) exist.
#![deny(unsafe_op_in_unsafe_fn)]

use alloc::vec::Vec;

pub mod attention;
mod portable;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
mod arm;

/// Output columns per packed panel.
pub const PANEL: usize = 16;
/// Consecutive k per packed group.
pub const KGROUP: usize = 4;
/// Bytes per (panel, k-group) block.
const GROUP_BYTES: usize = PANEL * KGROUP;

#[inline]
fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Number of bytes of the packed form of an `[n, k]` weight matrix.
pub fn packed_len(n: usize, k: usize) -> usize {
    div_ceil(n, PANEL) * div_ceil(k, KGROUP) * GROUP_BYTES
}

/// Packs row-major `w[n][k]` into the P16K4 layout (zero padded).
pub fn pack_weights(w: &[i8], n: usize, k: usize) -> Vec<u8> {
    assert!(w.len() >= n * k, "pack_weights: w.len() {} < n*k {}", w.len(), n * k);
    let k4 = div_ceil(k, KGROUP);
    let mut out = alloc::vec![0u8; packed_len(n, k)];
    for (j, row) in w.chunks_exact(k.max(1)).take(n).enumerate() {
        let panel_base = (j / PANEL) * k4 * GROUP_BYTES + (j % PANEL) * KGROUP;
        for (kk, &v) in row[..k].iter().enumerate() {
            out[panel_base + (kk / KGROUP) * GROUP_BYTES + kk % KGROUP] = v as u8;
        }
    }
    out
}

/// `wsum[n] = sum_k w[n][k]`, used to undo the +128 activation offset of the VNNI kernels.
pub fn weight_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
    assert!(w.len() >= n * k, "weight_sums: w.len() {} < n*k {}", w.len(), n * k);
    (0..n).map(|j| w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum()).collect()
}

/// What the kernels may assume about the values of a packed weight matrix, beyond the GEMM
/// contract (-127..=127). Results are the same either way; only the speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WeightRange {
    /// Any value in -127..=127.
    #[default]
    Full,
    /// Every value in -63..=63 (7-bit weights: `trainer quantize --weight-bits 7`). On CPUs
    /// without VNNI the AVX2 kernel then feeds `vpmaddubsw` the activations + 128 directly,
    /// whose 16-bit pair sums (at most 2 * 255 * 63) cannot saturate: three instructions per
    /// 32 multiply-adds instead of the sign trick's four. Other kernels ignore it.
    Narrow,
}

impl WeightRange {
    /// The largest magnitude of a [`WeightRange::Narrow`] weight.
    pub const NARROW_MAX: i8 = 63;

    /// `Narrow` if every byte of `w` (a packed matrix: its zero padding is in range) read as
    /// i8 is within ±[`Self::NARROW_MAX`], else `Full`. Stops at the first block holding a
    /// wider value, so a full-range matrix costs a few cache lines.
    pub fn of(w: &[u8]) -> WeightRange {
        // v + 63 (wrapping, as u8) <= 126 exactly when v is in -63..=63; a max per block
        // vectorizes where `all` (one early exit per byte) would not.
        let narrow = w.chunks(1024).all(|block| {
            block.iter().fold(0u8, |m, &v| m.max(v.wrapping_add(Self::NARROW_MAX as u8))) <= 2 * Self::NARROW_MAX as u8
        });
        if narrow {
            WeightRange::Narrow
        } else {
            WeightRange::Full
        }
    }
}

/// Which implementation a [`Kernel`] runs. Discriminants are stable (stored/logged by callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum KernelKind {
    Scalar = 1,
    Avx2 = 2,
    AvxVnni = 3,
    Avx512Vnni = 4,
    /// aarch64 baseline: NEON `smull`/`smlal`/`sadalp` (every ARMv8-A core).
    Neon = 5,
    /// aarch64 dot-product extension: `sdot` (ARMv8.2+ with FEAT_DotProd).
    NeonDotprod = 6,
    /// aarch64 int8 matrix multiply: `smmla` (ARMv8.6 FEAT_I8MM).
    NeonI8mm = 7,
    /// x86-64 AMX-INT8 tiles (`tdpbssd`), with AVX-512 for the fp32 code.
    Amx = 8,
    /// 32-bit Arm (Cortex-M) DSP extension: `SXTB16` + `SMLAD`; compiled in where the target
    /// has the `dsp` feature (thumbv7em, or `-C target-feature=+dsp` on v8-M mainline).
    ArmDsp = 9,
    /// Arm Helium (MVE, Cortex-M55/M85): `VMLADAVA.S8`; compiled in with `--cfg q8bert_helium`
    /// (and `-C target-feature=+mve,+dsp`).
    ArmHelium = 10,
    /// Portable blocked Rust (4 columns per pass, no per-byte index arithmetic): every target;
    /// the best there is on cores without int8 SIMD (RV32IMAC, Cortex-M0+).
    Portable = 11,
}

impl KernelKind {
    /// All kinds, best first (each architecture's kinds in its own order; scalar last).
    pub const ALL: [KernelKind; 11] = [
        KernelKind::Amx,
        KernelKind::Avx512Vnni,
        KernelKind::AvxVnni,
        KernelKind::Avx2,
        KernelKind::NeonI8mm,
        KernelKind::NeonDotprod,
        KernelKind::Neon,
        KernelKind::ArmHelium,
        KernelKind::ArmDsp,
        KernelKind::Portable,
        KernelKind::Scalar,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Scalar => "scalar",
            KernelKind::Avx2 => "avx2",
            KernelKind::AvxVnni => "avx-vnni",
            KernelKind::Avx512Vnni => "avx512-vnni",
            KernelKind::Neon => "neon",
            KernelKind::NeonDotprod => "neon-dotprod",
            KernelKind::NeonI8mm => "neon-i8mm",
            KernelKind::Amx => "amx",
            KernelKind::ArmDsp => "arm-dsp",
            KernelKind::ArmHelium => "arm-helium",
            KernelKind::Portable => "portable",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s))
    }

    /// The kind with this C ABI number (`Q8BERT_KERNEL_*`).
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }
}

/// A GEMM implementation that is known to run on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    // Invariant: `kind` is built into this binary and supported by the running CPU.
    kind: KernelKind,
}

/// Whether `kind` is compiled in and usable on this CPU.
fn available(kind: KernelKind) -> bool {
    match kind {
        KernelKind::Scalar | KernelKind::Portable => true,
        #[cfg(target_arch = "x86_64")]
        KernelKind::Amx => x86_64::detect::amx_int8(),
        #[cfg(target_arch = "x86_64")]
        KernelKind::Avx512Vnni => x86_64::detect::avx512_vnni(),
        #[cfg(target_arch = "x86_64")]
        KernelKind::AvxVnni => x86_64::detect::avx_vnni(),
        #[cfg(target_arch = "x86_64")]
        KernelKind::Avx2 => x86_64::detect::avx2(),
        #[cfg(target_arch = "aarch64")]
        KernelKind::Neon => true,
        #[cfg(target_arch = "aarch64")]
        KernelKind::NeonDotprod => aarch64::detect::dotprod(),
        #[cfg(target_arch = "aarch64")]
        KernelKind::NeonI8mm => aarch64::detect::i8mm(),
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        KernelKind::ArmDsp => true,
        #[cfg(all(target_arch = "arm", target_feature = "dsp", q8bert_helium))]
        KernelKind::ArmHelium => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Validated arguments shared by all kernels.
// The scalar kernel reads only some fields; the SIMD kernels read them all.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) struct GemmArgs<'a> {
    pub a: &'a [i8],
    pub a_stride: usize,
    pub m: usize,
    pub w: &'a [u8],
    pub wsum: &'a [i32],
    pub k: usize,
    /// ceil(k / 4): groups per panel in `w`.
    pub k4: usize,
    pub n_begin: usize,
    pub n_end: usize,
    pub out_stride: usize,
    /// What the caller promises about the values of `w` (only the AVX2 kernel uses it).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub range: WeightRange,
}

impl Kernel {
    pub fn scalar() -> Kernel {
        Kernel { kind: KernelKind::Scalar }
    }

    /// The fastest kernel that is both built and supported by this CPU.
    pub fn best_available() -> Kernel {
        KernelKind::ALL.into_iter().find_map(Kernel::new).unwrap_or_else(Kernel::scalar)
    }

    /// `None` if `kind` is not built into this binary or not supported by this CPU.
    pub fn new(kind: KernelKind) -> Option<Kernel> {
        available(kind).then_some(Kernel { kind })
    }

    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Whether [`WeightRange::Narrow`] weights make this kernel faster (only AVX2 without VNNI,
    /// where they save the sign step), so that callers scan weights only where it pays.
    pub fn gains_from_narrow_weights(&self) -> bool {
        self.kind == KernelKind::Avx2
    }

    /// Rows of the x86 SIMD GEMMs' register tile: a block of rows that is a multiple of it runs
    /// no narrower tail tiles (which load the same weights for fewer rows). 1 elsewhere: the
    /// AMX tier has its own task sizes, and the aarch64 tiles were not measured on hardware.
    pub(crate) fn row_tile(&self) -> usize {
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512Vnni => x86_64::avx512_vnni::MR,
            #[cfg(target_arch = "x86_64")]
            KernelKind::AvxVnni => x86_64::avx_vnni::MR,
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2 => x86_64::avx2::MR,
            _ => 1,
        }
    }

    /// Whether this kernel's CPU level has AVX-512 (F/BW/VL/DQ): its fp32 code runs 16 wide.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn has_avx512(&self) -> bool {
        matches!(self.kind, KernelKind::Avx512Vnni | KernelKind::Amx)
    }

    /// Runs the fp32 code in `f` compiled for the widest vectors this kernel's CPU level has.
    /// The scalar kernel keeps the baseline build, so comparing kernels also compares fp32
    /// code paths (they are bit-identical: the float operations and their order do not change).
    #[inline(always)]
    pub fn with_fp32_simd<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        if self.has_avx512() {
            // SAFETY: Avx512Vnni and Amx kernels exist only where AVX-512 F/BW/VL/DQ/VNNI were
            // detected (detect::avx512_vnni, which detect::amx_int8 requires too).
            return unsafe { x86_64::with_avx512(f) };
        }
        #[cfg(target_arch = "x86_64")]
        if matches!(self.kind, KernelKind::AvxVnni | KernelKind::Avx2) {
            // SAFETY: these kernels exist only where AVX2 and FMA were detected.
            return unsafe { x86_64::with_avx2(f) };
        }
        f()
    }

    /// Attention scores of `QUERY_ROWS` query rows against `W` keys ([`attention::KEY_TILE`] or
    /// [`attention::KEY_TILE_NARROW`]); same bits as [`attention::scores_tile_reference`].
    #[inline]
    pub fn attention_scores_tile<const W: usize>(&self, q: &[f32], dh: usize, kt: &[f32], kt_stride: usize, out: &mut [[f32; W]; attention::QUERY_ROWS]) {
        #[cfg(target_arch = "x86_64")]
        if self.has_avx512() {
            // SAFETY: Avx512Vnni and Amx kernels exist only where AVX-512 F was detected.
            return unsafe { x86_64::attention_avx512::scores_tile(q, dh, kt, kt_stride, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if matches!(self.kind, KernelKind::AvxVnni | KernelKind::Avx2) {
            // SAFETY: these kernels exist only where AVX2 and FMA were detected.
            return unsafe { x86_64::attention_avx2::scores_tile(q, dh, kt, kt_stride, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if self.kind != KernelKind::Scalar {
            // SAFETY: NEON (with its fused vector multiply-add) is part of every aarch64 CPU.
            return unsafe { aarch64::attention_neon::scores_tile(q, dh, kt, kt_stride, out) };
        }
        attention::scores_tile_reference(q, dh, kt, kt_stride, out)
    }

    /// A [`attention::TRANSPOSE_BLOCK`]-square block of `src` transposed into `dst`; same bits
    /// as [`attention::transpose_block_reference`] (a copy).
    #[inline]
    pub fn transpose_block(&self, src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.has_avx512() {
            // SAFETY: Avx512Vnni and Amx kernels exist only where AVX-512 F was detected.
            return unsafe { x86_64::attention_avx512::transpose_block(src, src_stride, dst, dst_stride) };
        }
        attention::transpose_block_reference(src, src_stride, dst, dst_stride)
    }

    /// Probability-weighted sum of `len` value rows for `QUERY_ROWS` rows and `W` features
    /// (`VALUE_TILE` or `VALUE_TILE_HALF`); same bits as [`attention::values_tile_reference`].
    #[inline]
    pub fn attention_values_tile<const W: usize>(&self, p: &[f32], p_stride: usize, len: usize, v: &[f32], v_stride: usize, out: &mut [[f32; W]; attention::QUERY_ROWS]) {
        #[cfg(target_arch = "x86_64")]
        if self.has_avx512() {
            // SAFETY: Avx512Vnni and Amx kernels exist only where AVX-512 F was detected.
            return unsafe { x86_64::attention_avx512::values_tile::<W>(p, p_stride, len, v, v_stride, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if matches!(self.kind, KernelKind::AvxVnni | KernelKind::Avx2) {
            // SAFETY: these kernels exist only where AVX2 and FMA were detected.
            return unsafe { x86_64::attention_avx2::values_tile::<W>(p, p_stride, len, v, v_stride, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if self.kind != KernelKind::Scalar {
            // SAFETY: NEON is part of every aarch64 CPU.
            return unsafe { aarch64::attention_neon::values_tile::<W>(p, p_stride, len, v, v_stride, out) };
        }
        attention::values_tile_reference(p, p_stride, len, v, v_stride, out)
    }

    /// `out[i*out_stride + j] = sum_{k<K} A[i][k] * W[j][k]` (exact, i32) for `i < m` and
    /// `j` in `[n_begin, n_end)`. `n_begin` must be a multiple of 16. Other elements of `out`
    /// are untouched. Uses a thread-local scratch buffer with `std`, a fresh one without.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_i8(
        &self,
        a: &[i8],
        a_stride: usize,
        m: usize,
        w_packed: &[u8],
        wsum: &[i32],
        n: usize,
        k: usize,
        n_begin: usize,
        n_end: usize,
        out: &mut [i32],
        out_stride: usize,
    ) {
        self.gemm_i8_ranged(WeightRange::Full, a, a_stride, m, w_packed, wsum, n, k, n_begin, n_end, out, out_stride)
    }

    /// [`Kernel::gemm_i8`] for weights whose values `range` describes (the same result, faster
    /// on some CPUs for [`WeightRange::Narrow`]). `range` must be true of `w_packed`, as
    /// [`WeightRange::of`] finds it: a `Narrow` claim for wider weights gives wrong results
    /// on the AVX2 kernel (never undefined behaviour); debug builds check it.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_i8_ranged(
        &self,
        range: WeightRange,
        a: &[i8],
        a_stride: usize,
        m: usize,
        w_packed: &[u8],
        wsum: &[i32],
        n: usize,
        k: usize,
        n_begin: usize,
        n_end: usize,
        out: &mut [i32],
        out_stride: usize,
    ) {
        #[cfg(feature = "std")]
        {
            use core::cell::RefCell;
            std::thread_local! {
                static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
            }
            let mut args = Some((a, w_packed, wsum, &mut *out));
            let _ = SCRATCH.try_with(|s| {
                if let Ok(mut s) = s.try_borrow_mut() {
                    let (a, w, ws, o) = args.take().unwrap();
                    self.gemm_i8_in(range, a, a_stride, m, w, ws, n, k, n_begin, n_end, o, out_stride, &mut s);
                }
            });
            // TLS being torn down or re-entered: fall back to a private buffer.
            if let Some((a, w, ws, o)) = args {
                let mut s = Vec::new();
                self.gemm_i8_in(range, a, a_stride, m, w, ws, n, k, n_begin, n_end, o, out_stride, &mut s);
            }
        }
        #[cfg(not(feature = "std"))]
        {
            let mut s = Vec::new();
            self.gemm_i8_in(range, a, a_stride, m, w_packed, wsum, n, k, n_begin, n_end, out, out_stride, &mut s);
        }
    }

    /// [`Kernel::gemm_i8`] with a caller-owned scratch buffer (grown as needed, reusable).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_i8_with_scratch(
        &self,
        a: &[i8],
        a_stride: usize,
        m: usize,
        w_packed: &[u8],
        wsum: &[i32],
        n: usize,
        k: usize,
        n_begin: usize,
        n_end: usize,
        out: &mut [i32],
        out_stride: usize,
        scratch: &mut Vec<u8>,
    ) {
        self.gemm_i8_in(WeightRange::Full, a, a_stride, m, w_packed, wsum, n, k, n_begin, n_end, out, out_stride, scratch)
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm_i8_in(
        &self,
        range: WeightRange,
        a: &[i8],
        a_stride: usize,
        m: usize,
        w_packed: &[u8],
        wsum: &[i32],
        n: usize,
        k: usize,
        n_begin: usize,
        n_end: usize,
        out: &mut [i32],
        out_stride: usize,
        scratch: &mut Vec<u8>,
    ) {
        assert!(n_begin.is_multiple_of(PANEL), "gemm_i8: n_begin {n_begin} not a multiple of {PANEL}");
        assert!(n_begin <= n_end && n_end <= n, "gemm_i8: bad column range {n_begin}..{n_end} of {n}");
        assert!(
            w_packed.len() >= packed_len(n, k),
            "gemm_i8: w_packed.len() {} < packed_len {}",
            w_packed.len(),
            packed_len(n, k)
        );
        assert!(wsum.len() >= n_end, "gemm_i8: wsum.len() {} < n_end {n_end}", wsum.len());
        debug_assert!(range == WeightRange::Full || WeightRange::of(&w_packed[..packed_len(n, k)]) == range, "gemm_i8: weights wider than {range:?}");
        if m == 0 || n_begin == n_end {
            return;
        }
        let a_need = (m - 1).checked_mul(a_stride).and_then(|x| x.checked_add(k));
        assert!(
            a_need.is_some_and(|x| x <= a.len()),
            "gemm_i8: a.len() {} too small for m={m} a_stride={a_stride} k={k}",
            a.len()
        );
        assert!(m == 1 || a_stride >= k, "gemm_i8: a_stride {a_stride} < k {k}");
        let out_need = (m - 1).checked_mul(out_stride).and_then(|x| x.checked_add(n_end));
        assert!(
            out_need.is_some_and(|x| x <= out.len()),
            "gemm_i8: out.len() {} too small for m={m} out_stride={out_stride} n_end={n_end}",
            out.len()
        );
        assert!(m == 1 || out_stride >= n_end, "gemm_i8: out_stride {out_stride} < n_end {n_end}");
        if k == 0 {
            for i in 0..m {
                out[i * out_stride + n_begin..i * out_stride + n_end].fill(0);
            }
            return;
        }
        let args = GemmArgs {
            a,
            a_stride,
            m,
            w: w_packed,
            wsum,
            k,
            k4: div_ceil(k, KGROUP),
            n_begin,
            n_end,
            out_stride,
            range,
        };
        match self.kind {
            KernelKind::Scalar => {
                let _ = scratch; // only the SIMD kernels pack A
                scalar::gemm(&args, out)
            }
            KernelKind::Portable => portable::gemm(&args, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel` is only constructed for kinds whose CPU features were detected
            // (or enabled at compile time); `args` and `out` were bounds-checked above.
            KernelKind::Avx512Vnni => unsafe { x86_64::avx512_vnni::gemm(&args, out, scratch) },
            // An inner dimension shorter than one 64-byte tile row (attention's QKᵀ with heads
            // of 32) would go through AMX's zero-padded scratch tiles on every call: the
            // AVX-512 VNNI kernel, which every AMX CPU has, is faster there (same bits).
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an Amx kernel exists only where AVX-512 VNNI was detected too (detect::amx_int8).
            KernelKind::Amx if k < 64 => unsafe { x86_64::avx512_vnni::gemm(&args, out, scratch) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AMX-TILE/INT8 with the OS's tile-state grant.
            KernelKind::Amx => unsafe { x86_64::amx::gemm(&args, out, scratch) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX-VNNI + AVX2.
            KernelKind::AvxVnni => unsafe { x86_64::avx_vnni::gemm(&args, out, scratch) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2.
            KernelKind::Avx2 => unsafe { x86_64::avx2::gemm(&args, out, scratch) },
            // NEON is part of the aarch64 baseline; `args` and `out` were bounds-checked above.
            #[cfg(target_arch = "aarch64")]
            KernelKind::Neon => aarch64::neon::gemm(&args, out, scratch),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a NeonDotprod kernel is only constructed where FEAT_DotProd was detected
            // (or enabled at compile time); `args` and `out` were bounds-checked above.
            KernelKind::NeonDotprod => unsafe { aarch64::neon_dotprod::gemm(&args, out, scratch) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as above, for FEAT_I8MM.
            KernelKind::NeonI8mm => unsafe { aarch64::neon_i8mm::gemm(&args, out, scratch) },
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            KernelKind::ArmDsp => arm::dsp::gemm(&args, out, scratch),
            #[cfg(all(target_arch = "arm", target_feature = "dsp", q8bert_helium))]
            KernelKind::ArmHelium => arm::helium::gemm(&args, out, scratch),
            #[allow(unreachable_patterns)]
            _ => unreachable!("kernel {:?} is never constructed on this target", self.kind),
        }
    }
}

/// Peak-throughput probes (independent dot-product chains, no memory traffic), for benches.
pub mod probe {
    /// Runs `iters` iterations of the probe for `kind`; returns int8 ops done
    /// (2 per multiply-add), or `None` if the kind is unavailable or has no probe.
    pub fn run(kind: super::KernelKind, iters: u64) -> Option<u64> {
        super::Kernel::new(kind)?;
        let _ = iters; // no probe on targets without SIMD dot products
        match kind {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU features for `kind` were checked just above.
            super::KernelKind::Avx512Vnni => Some(unsafe { super::x86_64::probe::dpbusd_zmm(iters) }),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            super::KernelKind::Amx => Some(unsafe { super::x86_64::amx::probe(iters) }),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            super::KernelKind::AvxVnni => Some(unsafe { super::x86_64::probe::dpbusd_ymm(iters) }),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            super::KernelKind::Avx2 => Some(unsafe { super::x86_64::probe::maddubs_ymm(iters) }),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: FEAT_DotProd was checked just above.
            super::KernelKind::NeonDotprod => Some(unsafe { super::aarch64::probe::sdot(iters) }),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: FEAT_I8MM was checked just above.
            super::KernelKind::NeonI8mm => Some(unsafe { super::aarch64::probe::smmla(iters) }),
            _ => None,
        }
    }

    /// A reference ceiling, not a q8bert kernel's: the AVX2 step without the sign instruction
    /// (u8 activations times s8 weights, 16-bit pair sums that saturate), which runtimes with
    /// zero-point activations run on CPUs without VNNI. Int8 ops done, or `None` without AVX2.
    pub fn run_unsigned_avx2_reference(iters: u64) -> Option<u64> {
        super::Kernel::new(super::KernelKind::Avx2)?;
        let _ = iters;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was checked just above.
        return Some(unsafe { super::x86_64::probe::maddubs_unsigned_ymm(iters) });
        #[allow(unreachable_code)]
        None
    }
}

/// Packs rows of A for the SIMD kernels: for each row block of `rows` rows starting at
/// `r0` (pack offset `r0 * kc_pad`), layout `[chunk][row][64 bytes]` covering k bytes
/// `[k0, k0 + kc)` (clipped at `k`). Bytes are XORed with `xor`; tail bytes hold `xor`
/// (value 0 before the XOR; their weights are zero anyway). `kc_pad` = chunks * 64.
///
/// Only real A bytes (< k per row) are read, so row padding and the end of `a` never are.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn pack_a_block(
    p: &GemmArgs<'_>,
    i0: usize,
    blocks: &[(usize, usize)],
    k0: usize,
    kc_pad: usize,
    xor: u8,
    dst: &mut [u8],
) {
    let chunks = kc_pad / 64;
    for &(r0, rows) in blocks {
        let blk = &mut dst[r0 * kc_pad..(r0 + rows) * kc_pad];
        for r in 0..rows {
            let row = &p.a[(i0 + r0 + r) * p.a_stride..];
            for c in 0..chunks {
                let d: &mut [u8; 64] =
                    (&mut blk[(c * rows + r) * 64..(c * rows + r + 1) * 64]).try_into().unwrap();
                let ks = k0 + c * 64;
                let len = p.k.saturating_sub(ks).min(64);
                if len == 0 {
                    d.fill(xor);
                } else if len == 64 {
                    let s: &[i8; 64] = row[ks..ks + 64].try_into().unwrap();
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d = (s as u8) ^ xor;
                    }
                } else {
                    for (d, &s) in d.iter_mut().zip(&row[ks..ks + len]) {
                        *d = (s as u8) ^ xor;
                    }
                    d[len..].fill(xor);
                }
            }
        }
    }
}

/// Splits `m` rows into blocks of `mr` rows, then the remainder greedily into `tails`
/// (descending, must end in 1). Returns `(first_row, rows)` pairs into `out`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn row_blocks(m: usize, mr: usize, tails: &[usize], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut r = 0;
    while m - r >= mr {
        out.push((r, mr));
        r += mr;
    }
    for &t in tails {
        while m - r >= t {
            out.push((r, t));
            r += t;
        }
    }
    debug_assert_eq!(r, m);
}

/// Blocking over k-groups: returns the group count per block (a multiple of 16 groups =
/// one 64-byte A chunk, except the last block), balanced so no block exceeds `max_groups`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline]
pub(crate) fn k_block_groups(k4: usize, max_groups: usize) -> usize {
    let nb = div_ceil(k4, max_groups);
    div_ceil(div_ceil(k4, nb), 16) * 16
}

/// Rows per packed A block: a multiple of `mr` (>= `mr`) keeping a block of `row_bytes`-byte
/// rows within `budget` bytes, balanced so the last block is not a sliver.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline]
pub(crate) fn m_block_rows(m: usize, row_bytes: usize, budget: usize, mr: usize) -> usize {
    let max_rows = (budget / row_bytes.max(1) / mr).max(1) * mr;
    let nb = div_ceil(m, max_rows);
    (div_ceil(div_ceil(m, nb), mr) * mr).min(m)
}

/// Ensures `v` can hold `len` bytes starting at a 64-byte aligned offset; returns that slice.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn aligned_scratch(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if v.len() < len + 64 {
        v.resize(len + 64, 0);
    }
    let off = v.as_ptr().align_offset(64).min(64);
    &mut v[off..off + len]
}
