#!/usr/bin/env bash
# The project's test command (README, CI), in stages:
#   1. every Rust test (including the C examples compiled against the header and library), the
#      test-only panic hook, benches and the profiling build compile, the no_std core build;
#   2. the language bindings against an installed copy of the library (C/C++, Go, Java, Python);
#   python: the Python package as users get it (scripts/test_python_package.sh): pip install in a
#      clean venv (the wheel carries libq8bert), the manylinux wheel, the API and the Spark
#      local[2] tests (20,000 SST-2 sentences from ../shared);
#   3. hardening: sanitizers (ASan Rust tests, ASan+UBSan C examples, valgrind) and a short smoke
#      run of every fuzz target (docs/HARDENING.md);
#   4. aarch64: cross build and the runtime suite under QEMU with three CPUs, C example outputs
#      bit-equal to x86 (scripts/test_aarch64.sh, docs/ARM64.md);
#   5. baremetal: the no_std core for Cortex-M0+/M4F/M55 and RV32IMAC, warnings as errors, and
#      the firmware example under QEMU on three boards, bit-identical to the host
#      (scripts/test_baremetal.sh).
# Stages 2-5 need the tools `scripts/install_test_deps.sh` installs; a missing tool is an error.
# Q8BERT_TEST_STAGES=rust,bindings,python,hardening,aarch64,baremetal picks stages;
# Q8BERT_FUZZ_SMOKE_SECONDS (default 20 per target).
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${Q8BERT_TEST_STAGES:-rust,bindings,python,hardening,aarch64,baremetal}
has() { [[ ",$stages," == *",$1,"* ]]; }

missing=()
if has rust; then
  # trainer/tests/transformers_parity.rs runs transformers' own (Flax) models; roberta/distilbert need numpy.
  python3 -c 'import numpy, transformers, flax, jax' 2>/dev/null || missing+=("python3 numpy+transformers+flax+jax")
fi
if has bindings; then
  for t in c++ pkg-config cmake go javac; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ -f /usr/share/java/jna.jar ] || missing+=("jna.jar (libjna-java)")
  python3 -c 'import numpy, pytest' 2>/dev/null || missing+=("python3 numpy+pytest")
fi
if has python; then
  command -v java >/dev/null || missing+=("java (17, for Spark)")
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3 venv+ensurepip")
  python3 -c 'import numpy, pytest, pyspark, pyarrow, pandas' 2>/dev/null || missing+=("python3 numpy+pytest+pyspark+pyarrow+pandas")
  python3 -m auditwheel --version >/dev/null 2>&1 || missing+=("auditwheel")
  command -v patchelf >/dev/null || missing+=(patchelf)
fi
if has hardening; then
  command -v valgrind >/dev/null || missing+=(valgrind)
  rustup toolchain list | grep -q '^nightly' || missing+=("rust nightly")
  command -v cargo-fuzz >/dev/null || missing+=(cargo-fuzz)
fi
if has aarch64; then
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib ] || missing+=("Debian rustc-web with libstd-rust-web-dev:arm64")
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
fi
if has baremetal; then
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] || missing+=("Debian rustc-web with rust-web-src")
  command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
  command -v qemu-system-riscv32 >/dev/null || missing+=(qemu-system-misc)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: missing: ${missing[*]}" >&2
  echo "install them with 'bash scripts/install_test_deps.sh' (as root; .ci/run does), or pick stages with Q8BERT_TEST_STAGES=rust" >&2
  exit 2
fi

if has rust; then
  echo "=== stage: rust"
  cargo test --workspace
  # The panic boundary, with the test-only fault injection compiled in.
  cargo test -p q8bert --features test-hooks --test panic_hook
  # Benchmarks must keep compiling (they run with `cargo bench`).
  cargo bench --workspace --no-run --quiet
  # The per-op profiling build (examples/bench_e2e --profile-ops) must keep compiling too.
  cargo check --quiet --features op-timing --example bench_e2e
  # The runtime core (format, model, kernels, forward pass, tokenizer) builds with core + alloc only.
  cargo build -p q8bert --lib --no-default-features --quiet
  cargo build -p q8bert --lib --no-default-features --features text --quiet
  echo "no_std build (with and without text input): ok"
fi
if has bindings; then
  echo "=== stage: bindings"
  bash scripts/test_bindings.sh
fi
if has python; then
  echo "=== stage: python"
  start=$SECONDS
  bash scripts/test_python_package.sh
  echo "python package stage took $((SECONDS - start)) s"
fi
if has hardening; then
  echo "=== stage: hardening"
  start=$SECONDS
  bash scripts/sanitize.sh
  echo "sanitizers took $((SECONDS - start)) s"
  start=$SECONDS
  bash scripts/fuzz.sh all "${Q8BERT_FUZZ_SMOKE_SECONDS:-20}"
  echo "fuzz smoke run took $((SECONDS - start)) s"
fi
if has aarch64; then
  echo "=== stage: aarch64"
  start=$SECONDS
  bash scripts/test_aarch64.sh
  echo "aarch64 stage took $((SECONDS - start)) s"
fi
if has baremetal; then
  echo "=== stage: baremetal"
  start=$SECONDS
  bash scripts/test_baremetal.sh
  echo "baremetal stage took $((SECONDS - start)) s"
fi
echo "all test stages passed: $stages"
