#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/): `scripts/fuzz.sh [target|all] [seconds]`, one target at a
# time for `seconds` each (default: all targets, 60 s). Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). New corpus entries go to fuzz/corpus/<target>
# (not committed); the checked-in seeds are fuzz/seeds/<target>. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail.
#
# Environment: FUZZ_LOCK=file builds under `flock file` (shared build machines);
# FUZZ_NICE=n runs the fuzzer at that niceness; FUZZ_PIDFILE=file receives the fuzzer's PID;
# FUZZ_LOG=dir keeps each run's log there; FUZZ_TIMEOUT=s is libFuzzer's per-input limit
# (wall clock, default 20 s; raise it for a niced fuzzer on a busy machine, where a starved
# process can exceed it without any slow input).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(load tokenizer run c_api)
which="${1:-all}"
seconds="${2:-60}"
if [ "$which" != all ]; then targets=("$which"); fi

# The loader seeds are whole model files (~10 KB); every other input is small.
max_len() { case "$1" in load) echo 65536 ;; *) echo 4096 ;; esac; }

build=(cargo +nightly fuzz build --fuzz-dir fuzz)
if [ -n "${FUZZ_LOCK:-}" ]; then build=(flock "$FUZZ_LOCK" "${build[@]}"); fi
"${build[@]}" "${targets[@]:0:1}" >/dev/null
for t in "${targets[@]:1}"; do "${build[@]}" "$t" >/dev/null; done

bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
log_dir="${FUZZ_LOG:-$(mktemp -d)}"
mkdir -p "$log_dir"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$log_dir/$t.log"
  echo "fuzzing $t for ${seconds}s (log: $log)"
  # -malloc_limit_mb: any single allocation above 256 MB is reported as a crash, so a file or
  # argument that claims a huge size cannot make the library allocate it.
  nice -n "${FUZZ_NICE:-0}" "$bin_dir/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -malloc_limit_mb=256 \
    -timeout="${FUZZ_TIMEOUT:-20}" -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 &
  pid=$!
  if [ -n "${FUZZ_PIDFILE:-}" ]; then echo "$pid" >"$FUZZ_PIDFILE"; fi
  status=0
  wait "$pid" || status=$?
  # libFuzzer's last status line: executions, coverage (cov) and features (ft).
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $t FAILED (exit $status); see $log and fuzz/artifacts/$t/" >&2
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 >&2 || true
    exit 1
  fi
done
