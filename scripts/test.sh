#!/usr/bin/env bash
# The project's test command (README, CI): every Rust test (including the C examples compiled
# against the header and library), plus the no_std build of the runtime core.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
# Benchmarks must keep compiling (they run with `cargo bench`).
cargo bench --workspace --no-run --quiet
# The per-op profiling build (examples/bench_e2e --profile-ops) must keep compiling too.
cargo check --quiet --features op-timing --example bench_e2e
# The runtime core (format, model, kernels, forward pass, tokenizer) builds with core + alloc only.
cargo rustc --lib --no-default-features --crate-type rlib --quiet
echo "no_std build: ok"
