#!/usr/bin/env bash
# Checks a built libq8bert.so: its SONAME, and that it exports exactly the functions declared in
# include/q8bert.h (no Rust or dependency symbols leak into the dynamic symbol table).
#   bash scripts/check_symbols.sh [path/to/libq8bert.so]
set -euo pipefail
cd "$(dirname "$0")/.."
lib="${1:-target/release/libq8bert.so}"

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
abi=$(sed -n 's/^const ABI_VERSION: u32 = \([0-9]*\);/\1/p' capi/build.rs)
[ "$soname" = "libq8bert.so.$abi" ] || { echo "FAIL SONAME is '$soname', expected libq8bert.so.$abi"; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sort)
declared=$(grep -oE '\bq8bert_[a-z0-9_]+\(' include/q8bert.h | tr -d '(' | sort -u)
stray=$(comm -23 <(echo "$exported") <(echo "$declared"))
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
if [ -n "$stray" ] || [ -n "$missing" ]; then
    [ -z "$stray" ] || printf 'FAIL exported but not in the header:\n%s\n' "$stray"
    [ -z "$missing" ] || printf 'FAIL declared but not exported:\n%s\n' "$missing"
    exit 1
fi
echo "symbols ok: SONAME $soname, $(echo "$exported" | wc -l) exported symbols, all q8bert_* and declared in q8bert.h"
