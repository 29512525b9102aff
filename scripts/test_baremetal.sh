#!/usr/bin/env bash
# The no_std core (core + alloc) for bare-metal targets, warnings as errors: Cortex-M0+ (thumbv6m:
# no compare-and-swap), Cortex-M4F, Cortex-M55 (v8-M mainline) and RV32IMAC. Debian's rustc 1.96
# with rust-web-src (the machine's rustup has no rust-src to download): -Zbuild-std builds core and
# alloc for each target (the first run fetches their dependencies from crates.io). Then the
# firmware example (firmware/) under QEMU on three boards, its digests against the host's.
set -euo pipefail
cd "$(dirname "$0")/.."
host_target_dir="${CARGO_TARGET_DIR:-target}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$host_target_dir/baremetal"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf riscv32imac-unknown-none-elf; do
  /usr/bin/cargo rustc -p q8bert --lib --no-default-features --quiet \
    -Zbuild-std=core,alloc --target "$target" -- -D warnings
  echo "no_std core for $target: builds with -D warnings"
done
# The tokenizers (feature `text`) are no_std too.
/usr/bin/cargo rustc -p q8bert --lib --no-default-features --features text --quiet \
  -Zbuild-std=core,alloc --target thumbv6m-none-eabi -- -D warnings
echo "no_std core with text input for thumbv6m-none-eabi: builds with -D warnings"
# The caller's arena as the global allocator (the firmware below uses it on the other targets).
/usr/bin/cargo rustc -p q8bert --lib --no-default-features --features arena --quiet \
  -Zbuild-std=core,alloc --target thumbv6m-none-eabi -- -D warnings
echo "no_std core with the arena allocator for thumbv6m-none-eabi: builds with -D warnings"
/usr/bin/cargo rustc -p q8bert --lib --no-default-features --quiet -Zbuild-std=core,alloc \
  --target thumbv8m.main-none-eabihf -- -D warnings -C target-feature=+mve,+dsp --cfg q8bert_helium
echo "no_std core for thumbv8m.main-none-eabihf with Helium: builds with -D warnings"

# Firmware: firmware/ depends on the core as a user's firmware would, embeds the models of
# examples/make_firmware_models.rs and prints the digests of their outputs; under QEMU's system
# boards (Cortex-M4 mps2-an386, Cortex-M55 mps3-an547, RV32 virt) they must equal the host's,
# which make_firmware_models checked against every kernel of this CPU.
models="$CARGO_TARGET_DIR/firmware-models"
# (The host's own toolchain and target directory: the rust stage has built the release profile.)
env -u RUSTC -u RUSTC_BOOTSTRAP CARGO_TARGET_DIR="$host_target_dir" cargo run --quiet --release --example make_firmware_models -- "$models" >/dev/null
lld=$(command -v rust-lld || command -v ld.lld || ls /usr/bin/ld.lld-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$lld" ] || { echo "no lld linker (rust-lld, ld.lld or ld.lld-NN; Debian: lld-22)" >&2; exit 1; }
export Q8BERT_FIRMWARE_MODELS="$(cd "$models" && pwd)"  # absolute: include_bytes! resolves from firmware/
run_board() { # target, QEMU command...
  local target=$1; shift
  local var="CARGO_TARGET_$(echo "$target" | tr 'a-z.-' 'A-Z__')_LINKER"
  env "$var=$lld" /usr/bin/cargo build --quiet --release --manifest-path firmware/Cargo.toml \
    -Zbuild-std=core,alloc --target "$target"
  local elf="$CARGO_TARGET_DIR/$target/release/q8bert-firmware" log="$CARGO_TARGET_DIR/firmware-$target.txt"
  # Output to a file, input from /dev/null: a closed pipe would hang semihosting.
  timeout 300 "$@" -nographic -icount shift=0 -kernel "$elf" >"$log" 2>&1 </dev/null \
    || { echo "FAIL $target: QEMU exited with $?"; cat "$log"; exit 1; }
  local expected="$models/expected.txt"
  [[ $target != riscv32* ]] || expected="$models/expected_rv32.txt" # + the MiniLM-L3-sized model
  if ! diff <(grep -E '^[a-z0-9]+ [0-9a-f]{16}$' "$log") "$expected" >/dev/null; then
    echo "FAIL $target: digests differ from the host's"; echo "--- firmware:"; cat "$log"; echo "--- host:"; cat "$expected"; exit 1
  fi
  echo "firmware on $(sed -n 's/^q8bert [^ ]* on //p' "$log"): $(wc -l <"$expected") outputs bit-identical to the host ($(size -A "$elf" 2>/dev/null | awk '$1==".text"{print $2}') bytes of code, arena peak $(sed -n 's/^arena peak //p' "$log"))"
  # Instruction counts (QEMU -icount): the 0.6 MB model's forward pass and the lone GEMM, per int8 MAC.
  awk -v macs="$(cat "$models/bench_macs.txt")" '
    $1 == "instructions" && $2 == "bench" { printf "  bench model forward: %.0f instructions, %.2f per int8 MAC\n", $4, $4 / macs }
    $1 == "instructions" && $2 == "minilm3" { printf "  MiniLM-L3-sized model (~17 MB), one 16-token sentence: %.0f instructions\n", $4 }
    $1 == "memory" && $2 != "bench" { printf "  %s model: arena peak %d bytes, the arena open asks for %d, stack %d\n", $2, $4, $6, $8 }
    $1 == "rerun" { printf "  %s reran in an arena of %d bytes: same digest\n", $2, $7 }
    # Issue 21: a tiny model (hidden 32) runs in 64 KiB of RAM, arena and stack, no allocator.
    # (The firmware reruns each model that fits in an arena of exactly that size: "rerun" lines.)
    $1 == "memory" && ($2 == "classify" || $2 == "embed" || $2 == "states") && $6 + $8 > 65536 { print "FAIL: " $2 " needs more than 64 KiB (arena + stack)"; failed = 1 }
    $1 == "rerun" { reruns++ }
    END { if (reruns < 3) { print "FAIL: " reruns + 0 " of the 3 tiny models reran in an arena of the size they need"; failed = 1 }; exit failed }
    $1 == "instructions" && $2 == "gemm" { split($3, s, "x"); printf "  gemm %s (%s kernel): %.0f instructions, %.2f per MAC\n", $3, $4, $5, $5 / (s[1] * s[2] * s[3]) }' "$log"
}
run_board thumbv7em-none-eabihf qemu-system-arm -M mps2-an386 -cpu cortex-m4 -semihosting
# q8bert's own code in that firmware (opt-level "s", LTO): text symbols of the q8bert crate and
# the generic code instantiated for it, the firmware's own functions left out.
nm=$(command -v llvm-nm || ls /usr/bin/llvm-nm-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$nm" ] || { echo "no llvm-nm for the code-size check (Debian: llvm)" >&2; exit 1; }
"$nm" -S -C "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/q8bert-firmware" | python3 -c '
import sys
total = 0
for line in sys.stdin:
    f = line.split(None, 3)
    if len(f) == 4 and f[2] in "tT" and "q8bert" in f[3] and "q8bert_firmware::" not in f[3]:
        total += int(f[1], 16)
print("  q8bert code in the M4 firmware: %d bytes (%.1f KiB; issue 21 target 64 KiB)" % (total, total / 1024))
if total > 64 * 1024:
    sys.exit("FAIL: q8bert code in the M4 firmware is over 64 KiB; docs/EMBEDDED.md has what it is made of (the list: llvm-nm -S -C --size-sort)")'
# Cortex-M55 with its DSP and Helium (MVE) extensions, hence the arm-helium kernel.
CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-feature=+mve,+dsp --cfg q8bert_helium" \
  run_board thumbv8m.main-none-eabihf qemu-system-arm -M mps3-an547 -cpu cortex-m55 -semihosting
run_board riscv32imac-unknown-none-elf qemu-system-riscv32 -M virt -bios none -m 64M
