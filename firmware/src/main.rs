//! q8bert on bare metal: runs the models of `examples/make_firmware_models.rs` (embedded with
//! `include_bytes!`, 64-byte aligned) on one fixed input and prints each output's FNV-1a digest,
//! then exits QEMU. scripts/test_baremetal.sh compares the digests with the host's.
//!
//! Output and exit: Arm semihosting (`bkpt 0xab`) on Cortex-M, the 16550 UART and the SiFive
//! test device on the RISC-V `virt` board. Memory: a bump allocator over a static buffer (the
//! runtime's heap path; a caller-given arena is issue 21's next step).
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt::Write;

use q8bert::{Model, Options};

/// The input of every run (the host uses the same ids): one sequence of 8 tokens.
const INPUT_IDS: [i32; 8] = [2, 7, 11, 5, 19, 23, 8, 3];

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

macro_rules! model {
    ($name:literal) => {{
        static BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("Q8BERT_FIRMWARE_MODELS"), "/", $name, ".q8b")));
        ($name, &BYTES.0)
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
    let models: [(&str, &[u8]); 3] = [model!("classify"), model!("embed"), model!("states")];
    for (name, bytes) in models {
        let model = Model::from_bytes(bytes, &Options::default())?;
        let mut output = alloc::vec![0f32; model.output_len(1, INPUT_IDS.len())];
        model.run(&INPUT_IDS, None, None, 1, INPUT_IDS.len(), &mut output)?;
        let _ = writeln!(Console, "{name} {:016x}", fnv1a(&output));
    }
    Ok(())
}

fn main() -> ! {
    let _ = writeln!(Console, "q8bert {} on {}", q8bert::VERSION, env!("FIRMWARE_BOARD"));
    match run_all() {
        Ok(()) => {
            let _ = writeln!(Console, "heap used {} bytes", HEAP.used());
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

/// Text output of the board.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        platform::write(s.as_bytes());
        Ok(())
    }
}

/// A bump allocator over a static buffer: enough for these models (frees are not reused).
struct Bump {
    memory: UnsafeCell<[u8; HEAP_BYTES]>,
    next: UnsafeCell<usize>,
}

const HEAP_BYTES: usize = 512 << 10;

// SAFETY: the firmware runs one thread and no interrupt handler allocates.
unsafe impl Sync for Bump {}

impl Bump {
    fn used(&self) -> usize {
        // SAFETY: single-threaded (see the Sync impl).
        unsafe { *self.next.get() }
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see the Sync impl); the returned range lies in `memory`.
        unsafe {
            let base = self.memory.get() as *mut u8;
            let next = &mut *self.next.get();
            let start = (base as usize + *next).next_multiple_of(layout.align()) - base as usize;
            match start.checked_add(layout.size()) {
                Some(end) if end <= HEAP_BYTES => {
                    *next = end;
                    base.add(start)
                }
                _ => core::ptr::null_mut(),
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump { memory: UnsafeCell::new([0; HEAP_BYTES]), next: UnsafeCell::new(0) };

#[cfg(target_arch = "arm")]
mod platform {
    use core::arch::asm;

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

    /// Reset: enable the FPU (CP10/CP11 full access) before any float instruction runs.
    #[no_mangle]
    unsafe extern "C" fn reset() -> ! {
        // SAFETY: CPACR is at 0xE000ED88 on every Cortex-M with an FPU.
        unsafe {
            let cpacr = 0xE000_ED88 as *mut u32;
            cpacr.write_volatile(cpacr.read_volatile() | (0xF << 20));
            asm!("dsb", "isb", options(nostack, preserves_flags));
        }
        run()
    }

    #[inline(never)]
    fn run() -> ! {
        super::main()
    }

    unsafe extern "C" fn fault() -> ! {
        write(b"fault exception\n");
        exit(false)
    }

    #[link_section = ".vector_table.reset"]
    #[no_mangle]
    static RESET_VECTOR: unsafe extern "C" fn() -> ! = reset;

    #[link_section = ".vector_table.exceptions"]
    #[no_mangle]
    static EXCEPTIONS: [unsafe extern "C" fn() -> !; 14] = [fault; 14];
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
