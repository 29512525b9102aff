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
    println!("cargo:rerun-if-env-changed=Q8BERT_CMSIS_NN");
    println!("cargo:rustc-check-cfg=cfg(cmsis_nn)");
    if let Some(cmsis) = std::env::var_os("Q8BERT_CMSIS_NN") {
        build_cmsis_nn(&PathBuf::from(cmsis), &dir, &out, &target);
    }
}

/// With Q8BERT_CMSIS_NN=<CMSIS-NN checkout> (Cortex-M targets): compiles its s8 fully-connected
/// kernel and cmsis_nn/fc_bench.c with arm-none-eabi-gcc for the board's CPU and links them, so
/// the firmware also counts CMSIS-NN's instructions on the same GEMM (scripts/bench_cmsis_nn.sh).
fn build_cmsis_nn(cmsis: &std::path::Path, dir: &std::path::Path, out: &std::path::Path, target: &str) {
    let cpu: &[&str] = if target.starts_with("thumbv7em") {
        &["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    } else if target.starts_with("thumbv8m.main") {
        &["-mcpu=cortex-m55", "-mfloat-abi=hard"] // Helium (MVE) on
    } else {
        panic!("Q8BERT_CMSIS_NN: CMSIS-NN is for the Cortex-M targets, not {target}");
    };
    let sources = [
        dir.join("cmsis_nn/fc_bench.c"),
        cmsis.join("Source/FullyConnectedFunctions/arm_fully_connected_s8.c"),
        cmsis.join("Source/FullyConnectedFunctions/arm_vector_sum_s8.c"),
        cmsis.join("Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c"),
    ];
    let mut objects = Vec::new();
    for source in &sources {
        let object = out.join(source.file_stem().unwrap()).with_extension("o");
        let status = std::process::Command::new("arm-none-eabi-gcc")
            .args(cpu)
            .args(["-mthumb", "-O3", "-ffunction-sections", "-c", "-I"])
            .arg(cmsis.join("Include"))
            .arg(source)
            .arg("-o")
            .arg(&object)
            .status()
            .expect("arm-none-eabi-gcc (Debian: gcc-arm-none-eabi)");
        assert!(status.success(), "compiling {}", source.display());
        objects.push(object);
    }
    let status = std::process::Command::new("arm-none-eabi-ar")
        .arg("crs")
        .arg(out.join("libcmsisnn.a"))
        .args(&objects)
        .status()
        .expect("arm-none-eabi-ar");
    assert!(status.success());
    println!("cargo:rustc-link-lib=static=cmsisnn");
    println!("cargo:rustc-cfg=cmsis_nn");
    println!("cargo:rerun-if-changed=cmsis_nn");
}
