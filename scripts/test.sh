#!/usr/bin/env bash
# The project's test command (README, CI): every Rust test (including the C examples compiled
# against the header and library), plus the no_std build of the runtime core.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
# The panic boundary, with the test-only fault injection compiled in.
cargo test -p q8bert --features test-hooks --test panic_hook
# Benchmarks must keep compiling (they run with `cargo bench`).
cargo bench --workspace --no-run --quiet
# The runtime core (format, model, kernels, forward pass, tokenizer) builds with core + alloc only.
cargo rustc --lib --no-default-features --crate-type rlib --quiet
echo "no_std build: ok"
