#!/usr/bin/env bash
# Instructions per int8 MAC of q8bert's MCU kernels against CMSIS-NN's s8 fully-connected kernel
# (TensorFlow Lite Micro's), same GEMM (8 x 128 -> 512), same CPU, same QEMU board, counted by the
# firmware under -icount (docs/EMBEDDED.md).
#
#   bash scripts/bench_cmsis_nn.sh CMSIS_NN_CHECKOUT
#
# Needs what scripts/test_baremetal.sh needs, plus arm-none-eabi-gcc (Debian: gcc-arm-none-eabi)
# and a CMSIS-NN checkout (github.com/ARM-software/CMSIS-NN; not vendored: it is only compared).
set -euo pipefail
cmsis=$(cd "${1:?usage: bench_cmsis_nn.sh CMSIS_NN_CHECKOUT}" && pwd)
cd "$(dirname "$0")/.."
host_target_dir="${CARGO_TARGET_DIR:-target}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$host_target_dir/baremetal-cmsis"
models="$CARGO_TARGET_DIR/firmware-models"
env -u RUSTC -u RUSTC_BOOTSTRAP CARGO_TARGET_DIR="$host_target_dir" cargo run --quiet --release --example make_firmware_models -- "$models" >/dev/null
export Q8BERT_FIRMWARE_MODELS="$(cd "$models" && pwd)" Q8BERT_CMSIS_NN="$cmsis"
lld=$(command -v rust-lld || command -v ld.lld || ls /usr/bin/ld.lld-* 2>/dev/null | sort -V | tail -1)
echo "CMSIS-NN $(git -C "$cmsis" log -1 --format='%h %cs' 2>/dev/null || echo '(not a git checkout)'), $(arm-none-eabi-gcc --version | head -1)"
run() { # target, QEMU command...
  local target=$1; shift
  local var="CARGO_TARGET_$(echo "$target" | tr 'a-z.-' 'A-Z__')_LINKER"
  env "$var=$lld" /usr/bin/cargo build --quiet --release --manifest-path firmware/Cargo.toml -Zbuild-std=core,alloc --target "$target"
  local log="$CARGO_TARGET_DIR/firmware-$target.txt"
  timeout 300 "$@" -nographic -icount shift=0 -kernel "$CARGO_TARGET_DIR/$target/release/q8bert-firmware" >"$log" 2>&1 </dev/null
  grep -q 'signs agree with q8bert: true' "$log" || { echo "FAIL $target"; cat "$log"; exit 1; }
  awk -v board="$(sed -n 's/^q8bert [^ ]* on //p' "$log")" '
    $1 == "instructions" && $2 == "gemm" { split($3, s, "x"); per[$4] = $5 / (s[1] * s[2] * s[3]); order[++n] = $4 }
    END { printf "%s:", board; for (i = 1; i <= n; i++) printf " %s %.3f", order[i], per[order[i]]; printf " instructions per MAC; q8bert / CMSIS-NN %.2f\n", per[order[1]] / per["cmsis-nn"] }' "$log"
}
run thumbv7em-none-eabihf qemu-system-arm -M mps2-an386 -cpu cortex-m4 -semihosting
CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-feature=+mve,+dsp --cfg q8bert_helium" \
  run thumbv8m.main-none-eabihf qemu-system-arm -M mps3-an547 -cpu cortex-m55 -semihosting
