#!/usr/bin/env bash
# Peak RSS of a process that opens a BERT-base-shaped model and runs batch 1 x seq 128, against
# the issue's bound: model file size + 64 MiB of working memory. Also the open time.
#   bash scripts/measure_memory.sh [shape] [batch] [seq] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-bert-base} batch=${2:-1} seq=${3:-128} threads=${4:-1}
cargo build --release --quiet --example bench_e2e
bin=target/release/examples/bench_e2e
# First call builds and caches the random model; measure a second, clean process.
"$bin" --shape "$shape" --batch 1 --seq 8 --min-time-ms 1 >/dev/null
file=$(ls "$HOME"/.cache/q8bert/bench/"$shape"-v*.q8b | tail -1)
file_bytes=$(stat -c %s "$file")
log=$(mktemp)
/usr/bin/time -v "$bin" --shape "$shape" --batch "$batch" --seq "$seq" --threads "$threads" --min-time-ms 1 2>"$log" >/dev/null
rss_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
rm -f "$log"
python3 - "$shape" "$batch" "$seq" "$threads" "$file_bytes" "$rss_kib" <<'PY'
import sys
shape, batch, seq, threads, file_bytes, rss_kib = sys.argv[1], *map(int, sys.argv[2:])
mib = 1 << 20
rss = rss_kib * 1024
bound = file_bytes + 64 * mib
print(f"{shape} {batch}x{seq}, {threads} thread(s): peak RSS {rss / mib:.1f} MiB; model file {file_bytes / mib:.1f} MiB; "
      f"RSS - file = {(rss - file_bytes) / mib:.1f} MiB; bound file + 64 MiB = {bound / mib:.1f} MiB: "
      + ("within" if rss <= bound else "EXCEEDED"))
sys.exit(0 if rss <= bound else 1)
PY
