#!/usr/bin/env bash
# The aarch64 stage of scripts/test.sh (docs/ARM64.md): cross-builds q8bert for
# aarch64-unknown-linux-gnu on this x86-64 machine and runs it under QEMU user mode.
#   1. tools: Debian's rustc/cargo 1.96 (rustc-web) with its arm64 std, GCC's aarch64 linker,
#      qemu-aarch64 (scripts/install_test_deps.sh installs them);
#   2. cross build: the tests, benches and examples, libq8bert.so/.a, the no_std core;
#   3. the whole runtime test suite under `-cpu max` (NEON, dotprod and i8mm all present), then
#      the kernel tests under `-cpu neoverse-n1` (dotprod only) and `-cpu cortex-a53` (neither:
#      the dispatch must refuse the sdot/smmla kernels), each run told which kernels its CPU
#      must have (Q8BERT_EXPECT_KERNELS). Every kernel those CPUs have also runs under `max`, so
#      their forward-pass, hardening and C-API runs repeated it (dropped for CI time);
#   4. the C example cross-compiled against the aarch64 libq8bert.so and libq8bert.a, run under
#      each CPU with each of its kernels: outputs bit-equal (printed %.9g) to the x86 build's.
# Set Q8BERT_LOCK=/path to run each CPU-heavy step under flock on a shared machine;
# Q8BERT_AARCH64_STEPS=build,tests,c (the default) picks steps 2-4 (the build is incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lock() { if [ -n "${Q8BERT_LOCK:-}" ]; then flock "$Q8BERT_LOCK" "$@"; else "$@"; fi; }
step() { printf '\n=== aarch64: %s\n' "$*"; }
steps=${Q8BERT_AARCH64_STEPS:-build,tests,c}
want() { [[ ",$steps," == *",$1,"* ]]; }
t_start=$SECONDS
target=aarch64-unknown-linux-gnu

step "tools"
missing=()
[ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || missing+=("Debian rustc/cargo (rustc-web cargo-web)")
[ -d /usr/lib/rustlib/$target/lib ] || missing+=("the $target std (libstd-rust-web-dev:arm64)")
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-aarch64 (qemu-user)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test_aarch64.sh: missing: ${missing[*]}" >&2
  echo "install them with 'bash scripts/install_test_deps.sh' (as root), or leave the stage out: Q8BERT_TEST_STAGES=rust,bindings,hardening" >&2
  exit 2
fi
/usr/bin/rustc --version
qemu-aarch64 --version | head -1
# rustup's cargo/rustc on PATH would not find this std: use Debian's pair, in its own target dir.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="${Q8BERT_AARCH64_TARGET_DIR:-$root/target-aarch64}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
cargo=/usr/bin/cargo
# Never `-L /usr/aarch64-linux-gnu`: the arm64 multiarch glibc (/lib/ld-linux-aarch64.so.1,
# installed with the arm64 std) is the one the binaries find; mixing the two hangs threads.
runner() { export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $1"; }
runner max

libdir="$CARGO_TARGET_DIR/$target/debug"
if want build; then
step "cross build"
t0=$SECONDS
lock $cargo build -p q8bert-capi --target $target --quiet
lock $cargo test -p q8bert --target $target --no-run --quiet 2>&1 | grep -v '^ *Executable' || true
# Benches and examples a board user runs as-is (`cargo bench --bench gemm`, examples/bench_e2e).
lock $cargo build -p q8bert --target $target --benches --examples --quiet
# The no_std core (core + alloc, kernels chosen at compile time) for aarch64 as well.
lock $cargo build -p q8bert --target $target --lib --no-default-features --quiet
echo "no_std core for $target: ok"
if [ -d /usr/lib/rustlib/aarch64-unknown-none/lib ]; then
  lock $cargo build -p q8bert --target aarch64-unknown-none --lib --no-default-features --quiet
  echo "no_std core for aarch64-unknown-none: ok"
else
  echo "aarch64-unknown-none: no Debian std package for it (not built)"
fi
echo "cross build took $((SECONDS - t0)) s"
fi

# What each emulated CPU must offer (the dispatch is also checked to refuse the rest).
declare -A expect=(
  [max]="neon-i8mm,neon-dotprod,neon,portable,scalar"
  [neoverse-n1]="neon-dotprod,neon,portable,scalar"
  [cortex-a53]="neon,portable,scalar"
)
export Q8BERT_EXPECT_QEMU=1 Q8BERT_C_CC=aarch64-linux-gnu-gcc Q8BERT_C_LIB_DIR="$libdir"
summary=()
run_tests() { # cpu, then cargo test arguments
  local cpu=$1 t0=$SECONDS log; shift
  log=$(mktemp)
  runner "$cpu"
  echo "--- -cpu $cpu: cargo test $*"
  set +e
  Q8BERT_EXPECT_KERNELS="${expect[$cpu]}" Q8BERT_C_EMULATOR="qemu-aarch64 -cpu $cpu" \
    lock $cargo test -p q8bert --target $target "$@" -- --test-threads=2 >"$log" 2>&1
  local rc=$?
  set -e
  local passed failed
  passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
  failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
  summary+=("-cpu $cpu: $passed passed, $failed failed, $(grep -c '^test result' "$log") test binaries ($((SECONDS - t0)) s) [kernels: ${expect[$cpu]}]")
  if [ "$rc" != 0 ]; then
    cat "$log"
    echo "aarch64 tests failed under -cpu $cpu" >&2
    exit 1
  fi
  grep -E '^test result|SKIPPED under' "$log" | sort | uniq -c
  rm -f "$log"
}

if want tests; then
step "runtime suite under qemu-aarch64"
run_tests max
# The kernels these CPUs have all run under `max` above (forward pass, hardening, C API); here
# the dispatch is what differs, which tests/kernels.rs checks.
for cpu in neoverse-n1 cortex-a53; do
  run_tests "$cpu" --test kernels
done
fi

if want c; then
step "C example: aarch64 (.so and .a, every CPU and kernel) vs x86, bit for bit"
work=$(mktemp -d "${TMPDIR:-/tmp}/q8bert-aarch64.XXXXXX")
trap 'rm -rf "$work"' EXIT
# x86 side: rustup's toolchain and the default target dir, as the rest of scripts/test.sh.
(
  unset RUSTC RUSTDOC CARGO_TARGET_DIR
  lock cargo build -p q8bert-capi --quiet
  lock cargo run -p q8bert --quiet --example make_conformance_model -- "$work/suite" >/dev/null
)
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -I "$root/include")
# The library's SONAME is libq8bert.so.0 (capi/build.rs): the loader looks for that name.
for d in "$root/target/debug" "$libdir"; do [ -e "$d/libq8bert.so.0" ] || ln -s libq8bert.so "$d/libq8bert.so.0"; done
cc "${cflags[@]}" c_examples/run_ids.c -o "$work/run_ids.x86" -L "$root/target/debug" -lq8bert -Wl,-rpath,"$root/target/debug"
aarch64-linux-gnu-gcc "${cflags[@]}" c_examples/run_ids.c -o "$work/run_ids.so" -L "$libdir" -lq8bert -Wl,-rpath,"$libdir"
aarch64-linux-gnu-gcc "${cflags[@]}" c_examples/run_ids.c -o "$work/run_ids.a" "$libdir/libq8bert.a" -lpthread -ldl -lm
file "$work/run_ids.so" | grep -q 'ARM aarch64' || { echo "run_ids.so is not an aarch64 program" >&2; exit 1; }
# Two batches of two sequences (one padded) per model; the kernel line differs by design.
inputs=(2 7 9 11 3 1996 2143 -- 2 30 3 -- 2 2023 2003 1037 3231 1012 3 -- 2 4 3)
outputs() { grep -v 'kernel=' | grep -v '^ *$'; }
checks=0
for model in classify embed; do
  "$work/run_ids.x86" "$work/suite/$model.q8b" "${inputs[@]}" | outputs >"$work/$model.x86"
  [ "$(grep -c '^sequence ' "$work/$model.x86")" = 4 ] || { cat "$work/$model.x86"; exit 1; }
  for cpu in max neoverse-n1 cortex-a53; do
    IFS=, read -ra kernels <<<"${expect[$cpu]}"
    for kernel in "${kernels[@]}"; do
      for link in so a; do
        Q8BERT_KERNEL=$kernel lock qemu-aarch64 -cpu "$cpu" "$work/run_ids.$link" "$work/suite/$model.q8b" "${inputs[@]}" \
          >"$work/out" 2>&1 || { cat "$work/out"; echo "run_ids ($model, -cpu $cpu, $kernel, .$link) failed" >&2; exit 1; }
        grep -q "kernel=$kernel" "$work/out" || { cat "$work/out"; echo "forced kernel $kernel not reported" >&2; exit 1; }
        if ! diff <(outputs <"$work/out") "$work/$model.x86" >/dev/null; then
          diff <(outputs <"$work/out") "$work/$model.x86" | head -20
          echo "aarch64 output differs from x86 ($model, -cpu $cpu, kernel $kernel, .$link)" >&2
          exit 1
        fi
        checks=$((checks + 1))
      done
    done
  done
  # A kernel the CPU lacks is refused with a status, not a SIGILL.
  set +e
  Q8BERT_KERNEL=neon-dotprod qemu-aarch64 -cpu cortex-a53 "$work/run_ids.so" "$work/suite/$model.q8b" 2 3 >"$work/out" 2>&1
  rc=$?
  set -e
  if [ "$rc" != 1 ] || ! grep -q 'not supported by this CPU' "$work/out"; then
    cat "$work/out"; echo "forcing neon-dotprod on cortex-a53 must fail cleanly (exit 1), got $rc" >&2; exit 1
  fi
done
summary+=("C example run_ids: $checks aarch64 runs (2 models x CPU x kernel x .so/.a) bit-equal to x86; neon-dotprod on cortex-a53 refused cleanly")
fi

step "summary"
printf '%s\n' "${summary[@]}"
echo "aarch64 stage took $((SECONDS - t_start)) s"
