//! Picks the memory map of the QEMU board for the target (memory/<board>.x as memory.x) and
//! puts it and link.x on the linker's search path.
use std::path::PathBuf;

fn main() {
    let target = std::env::var("TARGET").unwrap();
    let (board, cpu) = if target.starts_with("thumbv7em") {
        ("mps2-an386", "Cortex-M4")
    } else if target.starts_with("thumbv8m.main") {
        ("mps3-an547", "Cortex-M55")
    } else if target.starts_with("riscv32") {
        ("virt", "RV32IMAC") // 64 MiB of RAM
    } else {
        panic!("no QEMU board for target {target}: build for thumbv7em-none-eabihf, thumbv8m.main-none-eabihf or riscv32imac-unknown-none-elf");
    };
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::copy(dir.join(format!("memory/{board}.x")), out.join("memory.x")).unwrap();
    let link = if target.starts_with("riscv32") { "link_riscv.x" } else { "link_cortex_m.x" };
    std::fs::copy(dir.join(link), out.join("link.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-env=FIRMWARE_BOARD={cpu} ({board})");
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed={link}");
    println!("cargo:rerun-if-env-changed=Q8BERT_FIRMWARE_MODELS");
}
