#!/usr/bin/env bash
# The no_std core (core + alloc) for bare-metal targets, warnings as errors: Cortex-M0+ (thumbv6m:
# no compare-and-swap), Cortex-M4F, Cortex-M55 (v8-M mainline) and RV32IMAC. Debian's rustc 1.96
# with rust-web-src (the machine's rustup has no rust-src to download): -Zbuild-std builds core and
# alloc for each target (the first run fetches their dependencies from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/baremetal"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf riscv32imac-unknown-none-elf; do
  /usr/bin/cargo rustc -p q8bert --lib --no-default-features --quiet \
    -Zbuild-std=core,alloc --target "$target" -- -D warnings
  echo "no_std core for $target: builds with -D warnings"
done
