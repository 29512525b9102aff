#!/usr/bin/env bash
# Per-call overhead of each language binding: one short-text classification ("a gripping, funny
# film.", 8 tokens) on the conformance suite's tiny classifier, one thread, median µs over CALLS
# calls after a warm-up, every language measured in the same run against the installed library.
# The model is tiny on purpose so the call path, not the forward pass, dominates.
#   bash scripts/bench_bindings.sh [CALLS]          (Q8BERT_LOCK=/path: measure under flock)
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-5000}"
lock() { if [ -n "${Q8BERT_LOCK:-}" ]; then flock "$Q8BERT_LOCK" "$@"; else "$@"; fi; }
work=$(mktemp -d "${TMPDIR:-/tmp}/q8bert-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

lock cargo build --release -p q8bert-capi -p q8bert --example bench_call --example make_conformance_model --quiet
bash scripts/install.sh --prefix "$prefix" --no-build >/dev/null
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/examples/make_conformance_model" "$work/suite" >/dev/null
model="$work/suite/classify.q8b"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
libdir="$prefix/lib"

cc -O2 $(pkg-config --cflags q8bert) c_examples/bench_call.c $(pkg-config --libs q8bert) -Wl,-rpath,"$libdir" -o "$work/bench_c"
(cd bindings/go && CGO_LDFLAGS="-Wl,-rpath,$libdir" go build -o "$work/bench_go" ./cmd/q8bert-bench)
bash bindings/java/build.sh >/dev/null

# All measurements in one lock hold, one after the other.
lock bash -c '
  "$1/release/examples/bench_call" "$2" "$3"
  "$4/bench_c" "$2" "$3"
  "$4/bench_go" "$2" "$3"
  java -Djna.library.path="$5" -cp /usr/share/java/jna.jar:bindings/java/build/q8bert.jar:bindings/java/build/examples \
      org.q8bert.example.Bench "$2" "$3"
  PYTHONPATH=bindings/python Q8BERT_LIBRARY="$5/libq8bert.so.0" python3 bindings/python/bench/bench_call.py "$2" "$3"
' _ "$target_dir" "$model" "$calls" "$work" "$libdir" >"$work/results"

echo "one short-text classification per call, 1 thread, median of $calls calls ($(date -u +%F), $(nproc) cores)"
python3 - "$work/results" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
base = float(rows[0][1])
names = {"rust": "Rust (direct)", "c": "C", "go": "Go (cgo)", "java": "Java (JNA direct mapping)", "python": "Python (ctypes + numpy)"}
print(f"| language | median µs/call | overhead vs Rust |")
print(f"|---|---:|---:|")
for lang, us in rows:
    us = float(us)
    print(f"| {names.get(lang, lang)} | {us:.2f} | {us - base:+.2f} µs ({us / base:.2f}x) |")
PY
