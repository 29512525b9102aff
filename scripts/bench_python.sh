#!/usr/bin/env bash
# The Python package's numbers (issue 15), every peer measured in the same run:
#   1. per-call overhead for a batch of 32 SST-2 sentences (Python run_text / predict vs the C
#      call) on the conformance suite's tiny classifier, 1 thread;
#   2. Model.encode of 10,000 SST-2 sentences with the int8 all-MiniLM-L6-v2 vs the C library on
#      the same batches and threads (bench/c_batches.c);
#   3. Spark local[2] vs one process on 20,000 SST-2 sentences (bench/bench_spark.py).
# Needs what scripts/test_python_package.sh needs, plus the trainer (to quantize MiniLM; the
# model is cached in $Q8BERT_CACHE, default ~/.cache/q8bert). On a shared machine run the whole
# script under the CPU lock (e.g. `flock /tmp/q8bert-cpu.lock bash scripts/bench_python.sh`).
#   bash scripts/bench_python.sh [encode|spark|all]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
what="${1:-all}"
sst2="${Q8BERT_SST2:-$root/../shared/data/glue/SST-2/train.tsv}"
[ -f "$sst2" ] || { echo "bench_python: $sst2 not found (the shared GLUE data beside the checkout)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/q8bert-pybench.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet -p q8bert-capi -p q8bert --example make_conformance_model
cargo build --release --quiet -p trainer
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target/release/examples/make_conformance_model" "$work/suite" >/dev/null
cache="${Q8BERT_CACHE:-$HOME/.cache/q8bert}"
minilm="${Q8BERT_MINILM_Q8B:-$cache/minilm-$(git rev-parse --short HEAD).q8b}"
if [ ! -f "$minilm" ]; then
  "$target/release/trainer" quantize --model "$(bash scripts/fetch_minilm.sh)" --output "$minilm.tmp" >&2
  mv "$minilm.tmp" "$minilm"
fi
bash scripts/install.sh --prefix "$work/prefix" --no-build >/dev/null
lib="$work/prefix/lib"
cc -O2 -Wall -Wextra -I"$work/prefix/include" bindings/python/bench/c_batches.c -L"$lib" -lq8bert \
   -Wl,-rpath,"$lib" -o "$work/c_batches"
export Q8BERT_LIBRARY="$lib/libq8bert.so.0" PYTHONPATH="$root/bindings/python"

echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores, $(python3 -c 'import platform; print(platform.python_implementation(), platform.python_version())'), q8bert $(git rev-parse --short HEAD)"
if [ "$what" = all ] || [ "$what" = encode ]; then
  python3 bindings/python/bench/bench_encode.py --c-bench "$work/c_batches" --embed "$minilm" --passes "${PASSES:-5}" \
      --tiny "$work/suite/classify.q8b" --sst2 "$sst2"
fi
if [ "$what" = all ] || [ "$what" = spark ]; then
  python3 bindings/python/bench/bench_spark.py --model "$minilm" --sst2 "$sst2" --runs "${RUNS:-3}"
fi
