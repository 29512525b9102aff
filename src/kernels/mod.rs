//! int8 x int8 -> int32 GEMM kernels over weights packed in the file's P16K4 layout.
//! One dispatch point: a [`Kernel`] is chosen once per model; the scalar kernel is the
//! reference every other kernel must match bit-exactly, and the portable fallback.

use alloc::vec::Vec;

mod scalar;

/// Output rows per packed panel.
pub const PANEL: usize = 16;
/// Consecutive K values per 4-byte group (one `vpdpbusd` lane).
pub const KGROUP: usize = 4;

/// Bytes of an [N, K] weight matrix in the packed layout.
pub fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(PANEL) * PANEL * k.div_ceil(KGROUP) * KGROUP
}

/// Byte index of element (n, k) in the packed layout.
#[inline(always)]
pub fn packed_index(n: usize, k: usize, k_total: usize) -> usize {
    let k4 = k_total.div_ceil(KGROUP);
    ((n / PANEL) * k4 + k / KGROUP) * (PANEL * KGROUP) + (n % PANEL) * KGROUP + (k % KGROUP)
}

/// Packs a row-major [n][k] int8 matrix (PyTorch Linear layout); padding is zero.
pub fn pack_weights(w: &[i8], n: usize, k: usize) -> Vec<u8> {
    assert_eq!(w.len(), n * k, "weight matrix is not n*k");
    let mut out = alloc::vec![0u8; packed_len(n, k)];
    for row in 0..n {
        for col in 0..k {
            out[packed_index(row, col, k)] = w[row * k + col] as u8;
        }
    }
    out
}

/// Per-output-row sums of the weights, for the +128 activation offset of `vpdpbusd`.
pub fn weight_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
    (0..n).map(|row| w[row * k..(row + 1) * k].iter().map(|&v| v as i32).sum()).collect()
}

/// Kernel implementations. Numbers are reported through the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum KernelKind {
    Scalar = 1,
    Avx2 = 2,
    AvxVnni = 3,
    Avx512Vnni = 4,
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Scalar => "scalar",
            KernelKind::Avx2 => "avx2",
            KernelKind::AvxVnni => "avx-vnni",
            KernelKind::Avx512Vnni => "avx512-vnni",
        }
    }

    pub fn from_name(name: &str) -> Option<KernelKind> {
        [KernelKind::Scalar, KernelKind::Avx2, KernelKind::AvxVnni, KernelKind::Avx512Vnni]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    pub fn from_u32(v: u32) -> Option<KernelKind> {
        [KernelKind::Scalar, KernelKind::Avx2, KernelKind::AvxVnni, KernelKind::Avx512Vnni]
            .into_iter()
            .find(|k| *k as u32 == v)
    }
}

/// A GEMM implementation that is compiled in and supported by this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    kind: KernelKind,
}

impl Kernel {
    pub fn scalar() -> Kernel {
        Kernel { kind: KernelKind::Scalar }
    }

    /// The fastest kernel that is both built and detected.
    pub fn best_available() -> Kernel {
        Kernel::scalar()
    }

    /// `None` if `kind` is not compiled in or this CPU lacks the instructions.
    pub fn new(kind: KernelKind) -> Option<Kernel> {
        match kind {
            KernelKind::Scalar => Some(Kernel::scalar()),
            _ => None,
        }
    }

    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// `out[i*out_stride + j] = sum_{k<K} A[i][k] * W[j][k]` exactly, for `i < m` and
    /// `j in n_begin..n_end` (`n_begin` a multiple of [`PANEL`]). `A` is int8 row-major with
    /// `a_stride >= round_up(k, 4)`; bytes between `k` and `a_stride` are ignored.
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
        assert!(n_begin % PANEL == 0 && n_begin <= n_end && n_end <= n, "bad column range");
        assert!(a_stride >= k.div_ceil(KGROUP) * KGROUP, "activation stride too small");
        assert!(m == 0 || a.len() >= (m - 1) * a_stride + k, "activation slice too short");
        assert!(w_packed.len() >= packed_len(n, k) && wsum.len() >= n, "weight slices too short");
        assert!(m == 0 || out.len() >= (m - 1) * out_stride + n_end, "output slice too short");
        match self.kind {
            _ => scalar::gemm_i8(a, a_stride, m, w_packed, n, k, n_begin, n_end, out, out_stride),
        }
    }
}
