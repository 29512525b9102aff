#!/usr/bin/env bash
# Memory-safety checks (docs/HARDENING.md), each must end with zero reports:
#  1. the Rust tests that reach unsafe code (format reader, model, forward pass and kernels,
#     thread pool, tokenizer, C ABI called from Rust) under AddressSanitizer + LeakSanitizer
#     (nightly, -Zsanitizer=address);
#  2. the C examples, test_errors.c included, built with -fsanitize=address,undefined against
#     the library (leak checking covers the library's allocations too);
#  3. the same C examples under valgrind memcheck (if installed): no errors, 0 bytes definitely lost;
#  4. (`miri` only, not part of `all`: ~2 min more) tests/miri_smoke.rs under Miri: model storage,
#     thread pool and task slots, C ABI, on a micro model (needs `rustup component add miri`).
# Usage: scripts/sanitize.sh [asan|c|valgrind|miri|all]. Set SANITIZE_LOCK=file to build under flock.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
lock=()
if [ -n "${SANITIZE_LOCK:-}" ]; then lock=(flock "$SANITIZE_LOCK"); fi
export Q8BERT_SANITIZER=1

if [ "$what" = all ] || [ "$what" = asan ]; then
  echo "== Rust tests under AddressSanitizer"
  # --target keeps build scripts and proc macros uninstrumented; own target dir for the flags.
  # A 32 MB quarantine (default 256): the RSS-flatness test of tests/hardening.rs measures leaks,
  # and with the default its RSS grows until the quarantine is full, which takes longer than the
  # test's warm-up when a cycle frees little (LeakSanitizer checks leaks independently).
  RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:quarantine_size_mb=32" \
    "${lock[@]}" cargo +nightly test -p q8bert --target x86_64-unknown-linux-gnu --target-dir target/asan \
    --lib --test format --test forward --test kernels --test text --test hardening --test working_memory \
    --test tokenizer_fuzz --test tokenizer_alloc --test arena
fi

if [ "$what" = all ] || [ "$what" = c ]; then
  echo "== C examples with -fsanitize=address,undefined"
  Q8BERT_C_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "${lock[@]}" cargo test -p q8bert --test c_api -- --test-threads=1
fi

if [ "$what" = all ] || [ "$what" = valgrind ]; then
  if command -v valgrind >/dev/null; then
    echo "== C examples under valgrind memcheck"
    Q8BERT_C_RUNNER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite" \
      "${lock[@]}" cargo test -p q8bert --test c_api -- --test-threads=1
  else
    echo "valgrind not installed: skipped"
  fi
fi
if [ "$what" = miri ]; then
  echo "== tests/miri_smoke.rs under Miri"
  MIRIFLAGS="-Zmiri-disable-isolation" "${lock[@]}" cargo +nightly miri test -p q8bert --test miri_smoke
fi
echo "sanitizers: ok"
