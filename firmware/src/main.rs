//! q8bert on bare metal: runs the models of `examples/make_firmware_models.rs` (embedded with
//! `include_bytes!`, 64-byte aligned) on one fixed input and prints each output's FNV-1a digest,
//! then exits QEMU. scripts/test_baremetal.sh compares the digests with the host's.
//!
//! Output and exit: Arm semihosting (`bkpt 0xab`) on Cortex-M, the 16550 UART and the SiFive
//! test device on the RISC-V `virt` board. Memory: no allocator of its own; q8bert's `arena`
//! feature makes one static buffer (the caller's arena) the only memory anything allocates.
#![no_std]
#![no_main]

extern crate alloc;

use core::fmt::Write;

use q8bert::arena::{open_bound, working_bound, ARENA, RESERVE};
use q8bert::{Input, Kernel, Options};

/// The input of every run (the host uses the same ids): one sequence of 8 tokens.
const INPUT_IDS: [i32; 8] = [2, 7, 11, 5, 19, 23, 8, 3];

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// A model file embedded in the `.models` section (the linker scripts place it: flash on the M4
/// and RV32 boards, the M55 board's DDR, whose ITCM is too small for the 0.6 MB model).
macro_rules! model {
    ($name:literal) => {{
        const FILE: &[u8] = include_bytes!(concat!(env!("Q8BERT_FIRMWARE_MODELS"), "/", $name, ".q8b"));
        #[link_section = ".models"]
        static BYTES: Aligned<[u8; FILE.len()]> = Aligned(*FILE.first_chunk().unwrap());
        ($name, &BYTES.0[..])
    }};
}

fn fnv1a(values: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn run_all() -> Result<(), q8bert::Error> {
    let models: [(&str, &[u8]); 4] = [model!("classify"), model!("embed"), model!("states"), model!("bench")];
    let per_count = platform::instructions_per_count();
    let _ = writeln!(Console, "counter calibration {per_count:.3} instructions per count");
    for (name, bytes) in models {
        run_model(name, bytes, &INPUT_IDS, per_count)?;
    }
    // One GEMM alone, the FFN-in shape of the bench model (8 tokens x 128 -> 512), through the
    // kernel this build selects: its instructions per MAC, apart from the rest of the pass.
    let (m, k, n) = (8usize, 128usize, 512usize);
    let a: alloc::vec::Vec<i8> = (0..m * k).map(|i| ((i * 37 % 255) as i32 - 127) as i8).collect();
    let w: alloc::vec::Vec<i8> = (0..n * k).map(|i| ((i * 91 % 255) as i32 - 127) as i8).collect();
    let (packed, sums) = (q8bert::kernels::pack_weights(&w, n, k), q8bert::kernels::weight_sums(&w, n, k));
    let kernel = Kernel::best_available();
    let mut out = alloc::vec![0i32; m * n];
    let mut scratch = alloc::vec::Vec::new();
    let start = platform::counter();
    kernel.gemm_i8_with_scratch(&a, k, m, &packed, &sums, n, k, 0, n, &mut out, n, &mut scratch);
    let counts = platform::counter().wrapping_sub(start);
    let _ = writeln!(Console, "gemm {:016x}", fnv1a_i32(&out));
    let _ = writeln!(Console, "instructions gemm {m}x{k}x{n} {} {:.0}", kernel.kind().name(), counts as f64 * per_count);
    // The 64 MiB RV32 board also runs a MiniLM-L3-sized model (~17 MB) on a 16-token sentence.
    #[cfg(target_arch = "riscv32")]
    {
        const SENTENCE_IDS: [i32; 16] = [2, 7592, 1010, 2023, 2003, 1037, 2460, 6251, 2005, 1996, 2034, 14055, 2944, 2006, 1012, 3];
        let (name, bytes) = model!("minilm3");
        run_model(name, bytes, &SENTENCE_IDS, per_count)?;
    }
    Ok(())
}

/// Runs one embedded model on `ids` and prints its output digest, the instructions its forward
/// pass took, and its memory: the arena's peak, the arena size `open` asks for, the stack.
fn run_model(name: &str, bytes: &[u8], ids: &[i32], per_count: f64) -> Result<(), q8bert::Error> {
    let (before, stack) = (ARENA.used(), StackProbe::paint());
    ARENA.reset_peak();
    let run = run_once(bytes, ids)?;
    // Stack: the deepest byte below this frame that changed (taken before the printing below,
    // whose float formatting has deep frames of its own).
    let (peak, stack) = (ARENA.peak() - before, stack.used());
    // Everything the model and its run took is back.
    assert_eq!(ARENA.used(), before);
    let _ = writeln!(Console, "{name} {:016x}", run.digest);
    let _ = writeln!(Console, "instructions {name} forward {:.0}", run.counts as f64 * per_count);
    let _ = writeln!(Console, "memory {name} arena {peak} needs {} stack {stack}", run.needs);
    // A model that fits 64 KiB runs again in an arena of exactly the size `open` asked for.
    if run.needs <= 64 << 10 && before == 0 {
        // SAFETY: a raw pointer only (no reference); the arena is its one user.
        let memory = unsafe { core::ptr::addr_of_mut!(ARENA_MEMORY.0) } as *mut u8;
        // SAFETY: no block is live (checked above): the same memory, given back shorter.
        unsafe { ARENA.provide_raw(memory, run.needs) };
        let again = run_once(bytes, ids);
        // SAFETY: as above; `run_once` dropped everything it allocated.
        unsafe { ARENA.provide_raw(memory, ARENA_BYTES) };
        if again?.digest != run.digest {
            return Err(q8bert::Error::new(q8bert::Status::Internal, "the rerun in a smaller arena changed the output"));
        }
        let _ = writeln!(Console, "rerun {name} in an arena of {} bytes: same digest", run.needs);
    }
    Ok(())
}

/// One open and run of a model in the arena as it is.
struct Run {
    /// The output's digest.
    digest: u64,
    /// Counter ticks of the run (not the open).
    counts: u64,
    /// The arena bytes `Arena::open` asks for at this shape.
    needs: usize,
}

fn run_once(bytes: &[u8], ids: &[i32]) -> Result<Run, q8bert::Error> {
    let before = ARENA.used();
    let (model, mut workspace) = ARENA.open(bytes, &Options::default(), 1, ids.len())?;
    let opened = ARENA.used() - before;
    let mut output = alloc::vec![0f32; model.output_len(1, ids.len())];
    let input = Input { input_ids: ids, token_type_ids: None, attention_mask: None, batch: 1, seq_len: ids.len(), pooling_skip: 0 };
    let start = platform::counter();
    model.run_with(&mut workspace, &input, &mut output)?;
    let counts = platform::counter().wrapping_sub(start);
    let needs = RESERVE + open_bound(bytes).max(opened + working_bound(&model, 1, ids.len())?);
    Ok(Run { digest: fnv1a(&output), counts, needs })
}

fn fnv1a_i32(values: &[i32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn main() -> ! {
    // SAFETY: the only reference ever made to ARENA_MEMORY, before anything allocates.
    ARENA.provide(unsafe { &mut *core::ptr::addr_of_mut!(ARENA_MEMORY.0) });
    let _ = writeln!(Console, "q8bert {} on {}", q8bert::VERSION, env!("FIRMWARE_BOARD"));
    match run_all() {
        Ok(()) => {
            let _ = writeln!(Console, "arena peak {} bytes", ARENA.peak());
            platform::exit(true)
        }
        Err(e) => {
            let _ = writeln!(Console, "error: {e}");
            platform::exit(false)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "panic: {info}");
    platform::exit(false)
}

/// Stack high-water mark: fills the 64 KiB below the caller's frame with a pattern, then finds
/// the lowest byte that no longer holds it.
struct StackProbe {
    top: usize,
}

const STACK_PROBE_BYTES: usize = 64 << 10;
const STACK_PATTERN: u32 = 0xA5C3_5A3C;

impl StackProbe {
    #[inline(never)]
    fn paint() -> StackProbe {
        let top = platform::stack_pointer() - 256; // below this function's own frame
        let base = (top - STACK_PROBE_BYTES) & !3;
        let mut at = base;
        while at < top {
            // SAFETY: unused stack: below the live frames, above the board's .bss (the RAM maps
            // give the stack megabytes); nothing else runs concurrently.
            unsafe { (at as *mut u32).write_volatile(STACK_PATTERN) };
            at += 4;
        }
        StackProbe { top }
    }

    fn used(&self) -> usize {
        let mut at = (self.top - STACK_PROBE_BYTES) & !3;
        // SAFETY: the words `paint` wrote.
        while at < self.top && unsafe { (at as *const u32).read_volatile() } == STACK_PATTERN {
            at += 4;
        }
        self.top - at
    }
}

/// Text output of the board.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        platform::write(s.as_bytes());
        Ok(())
    }
}

/// The caller's arena: 512 KiB; 16 MiB on the 64 MiB RV32 board, for the MiniLM-L3-sized model.
const ARENA_BYTES: usize = if cfg!(target_arch = "riscv32") { 16 << 20 } else { 512 << 10 };
static mut ARENA_MEMORY: Aligned<[u8; ARENA_BYTES]> = Aligned([0; ARENA_BYTES]);

#[cfg(target_arch = "arm")]
mod platform {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU32, Ordering};

    /// Arm semihosting call `op` with parameter block `arg`.
    fn semihost(op: usize, arg: usize) -> usize {
        let r: usize;
        // SAFETY: QEMU (-semihosting) services `bkpt 0xab`; the call reads only `arg`'s block.
        unsafe { asm!("bkpt 0xab", inout("r0") op => r, in("r1") arg, options(nostack)) };
        r
    }

    pub fn write(bytes: &[u8]) {
        for b in bytes {
            // SYS_WRITEC: one character to the debug console.
            semihost(0x03, b as *const u8 as usize);
        }
    }

    pub fn exit(ok: bool) -> ! {
        // SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit and the exit code.
        let block = [0x20026usize, if ok { 0 } else { 1 }];
        semihost(0x20, block.as_ptr() as usize);
        loop {}
    }

    const SYST_CSR: *mut u32 = 0xE000_E010 as *mut u32;
    const SYST_RVR: *mut u32 = 0xE000_E014 as *mut u32;
    const SYST_CVR: *mut u32 = 0xE000_E018 as *mut u32;
    /// SysTick periods (2^24 counts) elapsed, counted by its interrupt.
    static SYSTICK_WRAPS: AtomicU32 = AtomicU32::new(0);

    /// SysTick counts since reset. Under `qemu -icount shift=0` every instruction advances the
    /// virtual clock by 1 ns, and SysTick runs from the board's CPU clock, so counts are
    /// instructions times a constant that [`instructions_per_count`] measures.
    pub fn counter() -> u64 {
        loop {
            let wraps = SYSTICK_WRAPS.load(Ordering::Relaxed);
            // SAFETY: the SysTick current-value register, readable at any time.
            let current = unsafe { SYST_CVR.read_volatile() } & 0xFF_FFFF;
            if SYSTICK_WRAPS.load(Ordering::Relaxed) == wraps {
                return ((wraps as u64) << 24) | (0xFF_FFFF - current) as u64;
            }
        }
    }

    /// Instructions per [`counter`] count, from a loop of a known instruction count.
    pub fn instructions_per_count() -> f64 {
        const ITERATIONS: u32 = 1 << 21;
        let start = counter();
        // SAFETY: register-only loop: 2 instructions per iteration.
        unsafe { asm!("2:", "subs {n}, {n}, #1", "bne 2b", n = inout(reg) ITERATIONS => _, options(nomem, nostack)) };
        (2 * ITERATIONS) as f64 / counter().wrapping_sub(start) as f64
    }

    pub fn stack_pointer() -> usize {
        let sp: usize;
        // SAFETY: reads sp.
        unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }

    /// Reset: enable the FPU (CP10/CP11 full access) before any float instruction runs; start
    /// SysTick (full period, CPU clock, interrupt on wrap) as the instruction counter.
    #[no_mangle]
    unsafe extern "C" fn reset() -> ! {
        // SAFETY: CPACR is at 0xE000ED88 on every Cortex-M with an FPU; SysTick's registers
        // are at 0xE000E010.. on every Cortex-M.
        unsafe {
            let cpacr = 0xE000_ED88 as *mut u32;
            cpacr.write_volatile(cpacr.read_volatile() | (0xF << 20));
            asm!("dsb", "isb", options(nostack, preserves_flags));
            SYST_RVR.write_volatile(0xFF_FFFF);
            SYST_CVR.write_volatile(0);
            SYST_CSR.write_volatile(0b111);
        }
        run()
    }

    unsafe extern "C" fn systick() {
        SYSTICK_WRAPS.fetch_add(1, Ordering::Relaxed);
    }

    #[inline(never)]
    fn run() -> ! {
        super::main()
    }

    unsafe extern "C" fn fault() {
        write(b"fault exception\n");
        exit(false)
    }

    #[link_section = ".vector_table.reset"]
    #[no_mangle]
    static RESET_VECTOR: unsafe extern "C" fn() -> ! = reset;

    #[link_section = ".vector_table.exceptions"]
    #[no_mangle]
    static EXCEPTIONS: [unsafe extern "C" fn(); 14] = {
        // Vectors 2..15; the last is SysTick.
        let mut table: [unsafe extern "C" fn(); 14] = [fault; 14];
        table[13] = systick;
        table
    };
}

#[cfg(target_arch = "riscv32")]
mod platform {
    const UART: *mut u8 = 0x1000_0000 as *mut u8;
    const TEST_DEVICE: *mut u32 = 0x0010_0000 as *mut u32;

    pub fn write(bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: the virt board's 16550 transmit register; QEMU never reports it busy.
            unsafe { UART.write_volatile(b) };
        }
    }

    pub fn stack_pointer() -> usize {
        let sp: usize;
        // SAFETY: reads sp.
        unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }

    /// Instructions retired (`minstret`; under `qemu -icount` exactly the guest's count).
    pub fn counter() -> u64 {
        loop {
            let (high, low, high_again): (u32, u32, u32);
            // SAFETY: reading the machine counters has no side effects (the firmware runs in M-mode).
            unsafe {
                core::arch::asm!("csrr {0}, minstreth", "csrr {1}, minstret", "csrr {2}, minstreth",
                    out(reg) high, out(reg) low, out(reg) high_again, options(nomem, nostack))
            };
            if high == high_again {
                return ((high as u64) << 32) | low as u64;
            }
        }
    }

    /// Instructions per [`counter`] count (1 if `minstret` counts right), from a known loop.
    pub fn instructions_per_count() -> f64 {
        const ITERATIONS: u32 = 1 << 21;
        let start = counter();
        // SAFETY: register-only loop: 2 instructions per iteration.
        unsafe { core::arch::asm!("2:", "addi {n}, {n}, -1", "bnez {n}, 2b", n = inout(reg) ITERATIONS => _, options(nomem, nostack)) };
        (2 * ITERATIONS) as f64 / counter().wrapping_sub(start) as f64
    }

    pub fn exit(ok: bool) -> ! {
        // SAFETY: the SiFive test device: 0x5555 = pass, (code << 16) | 0x3333 = fail.
        unsafe { TEST_DEVICE.write_volatile(if ok { 0x5555 } else { (1 << 16) | 0x3333 }) };
        loop {}
    }

    core::arch::global_asm!(
        ".section .text.start, \"ax\"",
        ".globl _start",
        "_start:",
        "  la sp, _stack_top",
        "  call {main}",
        main = sym start_rust,
    );

    extern "C" fn start_rust() -> ! {
        super::main()
    }
}
