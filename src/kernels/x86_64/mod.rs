//! x86-64 SIMD kernels. All `#[target_feature]` code of the kernels module lives here.

pub(crate) mod amx;
pub(crate) mod attention_avx2;
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

    /// AMX-TILE + AMX-INT8 in the CPU, their state enabled in XCR0, and (Linux) the process
    /// granted the tile data state; AVX-512 too, since this kernel's fp32 code runs 16 wide.
    /// Asked once: the grant is per process and permanent.
    #[cfg(feature = "std")]
    pub(crate) fn amx_int8() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| avx512_vnni() && cpu_amx_int8() && os_grants_amx())
    }

    #[cfg(feature = "std")]
    fn cpu_amx_int8() -> bool {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        // cpuid exists on every x86-64 CPU (safe since Rust 1.88); leaf 7 on every AVX-512 one.
        let (l1, l7) = (__cpuid(1), __cpuid_count(7, 0));
        let tile = l7.edx >> 24 & 1 == 1;
        let int8 = l7.edx >> 25 & 1 == 1;
        let osxsave = l1.ecx >> 27 & 1 == 1;
        // SAFETY: xgetbv is available when the OS has set CR4.OSXSAVE (checked first).
        tile && int8 && osxsave && (unsafe { xcr0() } >> 17) & 3 == 3
    }

    #[cfg(feature = "std")]
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: the caller checked OSXSAVE, so xgetbv does not fault.
        unsafe { core::arch::x86_64::_xgetbv(0) }
    }

    /// Linux hands out the 8 KiB tile data state only on request (arch_prctl
    /// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); using tiles without it is SIGILL.
    #[cfg(all(feature = "std", target_os = "linux"))]
    fn os_grants_amx() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain syscall that only changes this process's permitted xsave features;
        // `syscall` clobbers rcx and r11, declared here.
        unsafe {
            core::arch::asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// Other systems: not used until someone can test how they grant the tile state.
    #[cfg(all(feature = "std", not(target_os = "linux")))]
    fn os_grants_amx() -> bool {
        false
    }

    /// Without std nothing asks the OS for the tile state: never.
    #[cfg(not(feature = "std"))]
    pub(crate) fn amx_int8() -> bool {
        false
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
