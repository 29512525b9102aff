//! Peak probes: many independent `vpdpbusd` chains with register operands only, so the
//! loop is bound by the VNNI ports alone (on CPUs without VNNI, the AVX2 kernel's own
//! four-instruction step). Used by benches to express GOPS as % of peak. One probe is no
//! kernel's: the saturating three-instruction AVX2 step, a reference for comparisons only.

use core::arch::x86_64::*;

/// Independent accumulators: enough to cover latency (~5) x throughput (2/cycle).
const CHAINS: usize = 24;
/// dpbusd per chain per loop iteration.
const UNROLL: usize = 4;

/// Returns int8 ops executed (2 per MAC; 64 MACs per zmm dpbusd).
///
/// # Safety
/// CPU must support AVX512F + AVX512-VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn dpbusd_zmm(iters: u64) -> u64 {
    let a = _mm512_set1_epi32(core::hint::black_box(0x0102_0304));
    let b = _mm512_set1_epi32(core::hint::black_box(0x0101_0101));
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for _ in 0..iters {
        for _ in 0..UNROLL {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
    }
    let mut s = _mm512_setzero_si512();
    for x in acc {
        s = _mm512_add_epi32(s, x);
    }
    core::hint::black_box(_mm512_reduce_add_epi32(s));
    iters * (CHAINS * UNROLL) as u64 * 64 * 2
}

/// Returns int8 ops executed (32 MACs per ymm dpbusd). 12 chains: only 16 ymm registers
/// are assumed (AVX-VNNI CPUs without AVX-512).
///
/// # Safety
/// CPU must support AVX2 + AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) unsafe fn dpbusd_ymm(iters: u64) -> u64 {
    let a = _mm256_set1_epi32(core::hint::black_box(0x0102_0304));
    let b = _mm256_set1_epi32(core::hint::black_box(0x0101_0101));
    let mut acc = [_mm256_setzero_si256(); 12];
    for _ in 0..iters {
        for _ in 0..UNROLL {
            for x in acc.iter_mut() {
                *x = _mm256_dpbusd_avx_epi32(*x, a, b);
            }
        }
    }
    keep_ymm(&acc);
    iters * (12 * UNROLL) as u64 * 32 * 2
}

/// Returns int8 ops executed by chains of the AVX2 kernel's step (`vpsignb`, `vpmaddubsw`,
/// `vpmaddwd`, `vpaddd`: 32 signed MACs), register operands only: the int8 peak of a CPU
/// without VNNI, bound by its vector ALU ports rather than by one dot-product instruction.
///
/// # Safety
/// CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn maddubs_ymm(iters: u64) -> u64 {
    maddubs_chains::<true>(iters)
}

/// Returns int8 ops executed by chains of the step without `vpsignb` (`vpmaddubsw` on an
/// unsigned activation, `vpmaddwd`, `vpaddd`): what runtimes with u8 activations and a zero point
/// run on CPUs without VNNI, whose 16-bit pair sums saturate. q8bert cannot use it (its results
/// are exact and the same on every kernel); benches print it as the ceiling those runtimes have.
///
/// # Safety
/// CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn maddubs_unsigned_ymm(iters: u64) -> u64 {
    maddubs_chains::<false>(iters)
}

/// The two AVX2 probes' chains: the step with `vpsignb` (`SIGNED`) or without it.
#[target_feature(enable = "avx2")]
fn maddubs_chains<const SIGNED: bool>(iters: u64) -> u64 {
    // 6 chains: 6 accumulators + 6 weights + `a` + `ones` fit the 16 ymm registers (8 spilled
    // two accumulators to the stack, and their chains ran through store-to-load forwarding).
    const C: usize = 6;
    let mut a = _mm256_set1_epi32(core::hint::black_box(0x0102_0304));
    let ones = _mm256_set1_epi16(1);
    let mut w = [_mm256_setzero_si256(); C];
    for (i, x) in w.iter_mut().enumerate() {
        *x = _mm256_set1_epi32(core::hint::black_box(0x0101_0101 * (i as i32 + 1)));
    }
    let mut acc = [_mm256_setzero_si256(); C];
    for _ in 0..iters {
        for _ in 0..UNROLL {
            for (x, &w) in acc.iter_mut().zip(&w) {
                let signed = if SIGNED { _mm256_sign_epi8(w, a) } else { w };
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(a, signed), ones));
                if !SIGNED {
                    // Without the sign step LLVM computed products of later rounds early and
                    // spilled accumulators to the stack; a fresh opaque `a` per chain stops it.
                    // SAFETY: an empty asm block that only claims to change a register.
                    unsafe { core::arch::asm!("/* {0} */", inout(ymm_reg) a, options(nomem, nostack, preserves_flags)) };
                }
            }
            // An opaque copy of `a` each step: unlike the VNNI probes, the products do not
            // depend on the accumulators, so LLVM would hoist them out of the loop.
            // SAFETY: an empty asm block that only claims to change a register.
            unsafe { core::arch::asm!("/* {0} */", inout(ymm_reg) a, options(nomem, nostack, preserves_flags)) };
        }
    }
    keep_ymm(&acc);
    iters * (C * UNROLL) as u64 * 32 * 2
}

/// Sums the accumulators and hands the lanes to `black_box`, so the chains are not dead code.
#[target_feature(enable = "avx2")]
fn keep_ymm(acc: &[__m256i]) {
    let s = acc.iter().fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi32(s, x));
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), s) };
    core::hint::black_box(lanes);
}
