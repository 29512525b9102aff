#!/usr/bin/env bash
# Wall-time A/B of two bench_e2e builds, alternating runs so that a noisy machine drifts equally
# on both sides; prints both medians and the median of the per-round ratios A/B (> 1: B faster).
#
#   bash scripts/ab_e2e.sh ROUNDS "SHAPE BATCH SEQ THREADS" BIN_A BIN_B [bench_e2e args...]
#   e.g. bash scripts/ab_e2e.sh 3 "bert-base 8 128 2" old/bench_e2e target/release/examples/bench_e2e --per-token
#
# Each run holds /tmp/q8bert-build.lock. For the per-op split use scripts/op_ab.py.
set -euo pipefail
rounds=$1
read -r shape batch seq threads <<<"$2"
a=$3
b=$4
shift 4
for _ in $(seq "$rounds"); do
  for side in A B; do
    exe=$a
    [ "$side" = B ] && exe=$b
    ms=$(flock /tmp/q8bert-build.lock "$exe" --shape "$shape" --batch "$batch" --seq "$seq" --threads "$threads" \
      --min-time-ms "${MIN_TIME_MS:-2000}" "$@" 2>/dev/null |
      python3 -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["median_ms"])')
    echo "$side $ms"
  done
done | python3 -c '
import statistics, sys
d = {"A": [], "B": []}
for line in sys.stdin:
    side, ms = line.split()
    d[side].append(float(ms))
ratios = [x / y for x, y in zip(d["A"], d["B"])]
print("A median %.2f ms, B median %.2f ms, A/B per round %s, median %.3f"
      % (statistics.median(d["A"]), statistics.median(d["B"]), " ".join("%.2f" % r for r in ratios), statistics.median(ratios)))'
