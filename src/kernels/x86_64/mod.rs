//! x86-64 SIMD kernels. All `#[target_feature]` code of the kernels module lives here.

pub(crate) mod attention_avx512;
pub(crate) mod avx2;
pub(crate) mod avx512_vnni;
pub(crate) mod avx_vnni;
pub(crate) mod probe;

/// CPU feature checks: run time with `std`, compile time without.
pub(crate) mod detect {
    #[cfg(feature = "std")]
    pub(crate) fn avx512_vnni() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(feature = "std")]
    pub(crate) fn avx_vnni() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(feature = "std")]
    pub(crate) fn avx2() -> bool {
        // FMA too: attention's fused multiply-adds must be instructions, not libm calls.
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    #[cfg(not(feature = "std"))]
    pub(crate) fn avx512_vnni() -> bool {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512dq",
            target_feature = "avx512vnni"
        ))
    }
    #[cfg(not(feature = "std"))]
    pub(crate) fn avx_vnni() -> bool {
        cfg!(all(target_feature = "avx2", target_feature = "fma", target_feature = "avxvnni"))
    }
    #[cfg(not(feature = "std"))]
    pub(crate) fn avx2() -> bool {
        cfg!(all(target_feature = "avx2", target_feature = "fma"))
    }
}

/// Runs `f` compiled for AVX-512 (its inlined body is vectorized 16 floats wide). Rust never
/// reassociates or fuses float operations, so the results equal the baseline build's bit for bit.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ (guaranteed where an Avx512Vnni kernel exists).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
pub(crate) unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f` compiled for AVX2 and FMA (8 floats wide), for the AVX-VNNI and AVX2 kernels;
/// bit-identical to the baseline build for the same reason as [`with_avx512`] (FMA instructions
/// appear only where the source asks for a fused multiply-add).
///
/// # Safety
/// The CPU must support AVX2 and FMA (guaranteed where an AvxVnni or Avx2 kernel exists).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
