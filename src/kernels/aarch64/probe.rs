//! Peak probes: independent `sdot` / `smmla` chains on registers only, so the loop is bound by
//! the int8 ports alone. Benches express GOPS as % of this peak (as the x86 `vpdpbusd` probes).

use core::arch::aarch64::*;

/// Independent accumulators: enough to cover a 3-4 cycle latency at up to 4 per cycle.
const CHAINS: usize = 16;
const UNROLL: usize = 4;

/// Returns int8 ops executed (2 per MAC; 16 MACs per `sdot`).
///
/// # Safety
/// The CPU must support FEAT_DotProd.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn sdot(iters: u64) -> u64 {
    let a = vreinterpretq_s8_s32(vdupq_n_s32(core::hint::black_box(0x0102_0304)));
    let b = vreinterpretq_s8_s32(vdupq_n_s32(core::hint::black_box(0x0101_0101)));
    let mut acc = [vdupq_n_s32(0); CHAINS];
    for _ in 0..iters {
        for _ in 0..UNROLL {
            for x in acc.iter_mut() {
                *x = super::neon_dotprod::sdot_lane::<0>(*x, a, b);
            }
        }
    }
    core::hint::black_box(acc.iter().fold(vdupq_n_s32(0), |s, &x| vaddq_s32(s, x)));
    iters * (CHAINS * UNROLL) as u64 * 16 * 2
}

/// Returns int8 ops executed (2 per MAC; 32 MACs per `smmla`).
///
/// # Safety
/// The CPU must support FEAT_I8MM.
#[target_feature(enable = "neon,i8mm")]
pub(crate) unsafe fn smmla(iters: u64) -> u64 {
    let a = vreinterpretq_s8_s32(vdupq_n_s32(core::hint::black_box(0x0102_0304)));
    let b = vreinterpretq_s8_s32(vdupq_n_s32(core::hint::black_box(0x0101_0101)));
    let mut acc = [vdupq_n_s32(0); CHAINS];
    for _ in 0..iters {
        for _ in 0..UNROLL {
            for x in acc.iter_mut() {
                *x = super::neon_i8mm::smmla(*x, a, b);
            }
        }
    }
    core::hint::black_box(acc.iter().fold(vdupq_n_s32(0), |s, &x| vaddq_s32(s, x)));
    iters * (CHAINS * UNROLL) as u64 * 32 * 2
}
