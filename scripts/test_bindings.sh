#!/usr/bin/env bash
# Tests q8bert the way its users consume it: builds the library once, installs it to a temporary
# prefix, checks its exported symbols, generates the conformance suite
# (examples/make_conformance_model.rs), then builds and runs against the INSTALLED copy:
#   C/C++   with pkg-config (shared and static) and with CMake find_package(q8bert)
#   Go      go test -race (bindings/go)
#   Java    JNA, plain javac + test main (bindings/java)
#   Python  ctypes + pytest (bindings/python; the Spark tests run in scripts/test_python_package.sh)
# Needs: cc, c++, pkg-config, cmake, go, javac + /usr/share/java/jna.jar, python3 with numpy
# and pytest (.ci/run installs them). Set Q8BERT_LOCK=/path to run each CPU-heavy step under
# flock on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lock() { if [ -n "${Q8BERT_LOCK:-}" ]; then flock "$Q8BERT_LOCK" "$@"; else "$@"; fi; }
step() { printf '\n=== %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/q8bert-bindings.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix" suite="$work/suite"

step "build, install to $prefix, symbols"
lock cargo build --release -p q8bert-capi --quiet
bash scripts/install.sh --prefix "$prefix" --no-build
bash scripts/check_symbols.sh "$prefix/lib/libq8bert.so.0"
step "conformance suite"
lock cargo run --release --quiet --example make_conformance_model -- "$suite"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig" Q8BERT_CONFORMANCE_DIR="$suite"
[ -n "${HOME:-}${GOCACHE:-}" ] || export GOCACHE="$work/go-cache"   # go needs a cache dir
libdir=$(pkg-config --variable=libdir q8bert)
results=() failures=0
record() { # name, then the command; a failing section does not stop the others
    local name="$1" rc; shift
    # Not `if "$@"`: errexit is off inside a condition, so a section would not stop at its error.
    local t0=$SECONDS
    set +e; (set -e; "$@"); rc=$?; set -e
    local took="($((SECONDS - t0)) s)"
    if [ "$rc" = 0 ]; then results+=("ok   $name $took"); else results+=("FAIL $name $took"); failures=$((failures + 1)); fi
}

c_pkgconfig() {
    local b="$work/c" cflags libs
    mkdir -p "$b"
    cflags=$(pkg-config --cflags q8bert) libs="$(pkg-config --libs q8bert) -Wl,-rpath,$libdir"
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 $cflags c_examples/threads.c $libs -pthread -o "$b/threads"
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 $cflags c_examples/classify.c $libs -lm -o "$b/classify"
    c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -O2 $cflags c_examples/cpp/conformance.cpp $libs -o "$b/conformance_cpp"
    c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -O2 $cflags c_examples/cpp/classify.cpp $libs -o "$b/classify_cpp"
    # Static: the archive plus what `pkg-config --static` lists for Rust's std.
    c++ -std=c++17 -O2 $cflags c_examples/cpp/conformance.cpp -L"$libdir" -Wl,-Bstatic -lq8bert -Wl,-Bdynamic \
        $(pkg-config --static --libs-only-l q8bert | sed 's/-lq8bert//') -o "$b/conformance_cpp_static"
    if ldd "$b/conformance_cpp_static" | grep -q libq8bert; then echo "static build needs libq8bert.so"; return 1; fi
    lock "$b/conformance_cpp" "$suite" | tail -1
    lock "$b/conformance_cpp_static" "$suite" | tail -1
    lock "$b/threads" "$suite/classify.q8b" 8 50 "a gripping, funny film." "Dull." "Naïve café owners 東京 🎉"
    "$b/classify" "$suite/classify.q8b" "a gripping, funny film." | grep -q "label: "
    "$b/classify_cpp" "$suite/classify.q8b" "a gripping, funny film." | grep -q "label: "
}

c_cmake() {
    local b="$work/cmake"
    cmake -S c_examples -B "$b" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" \
        || { cat "$work/cmake.log"; return 1; }
    lock cmake --build "$b" -j 2 >>"$work/cmake.log" || { cat "$work/cmake.log"; return 1; }
    lock "$b/conformance_cpp" "$suite" | tail -1
    lock "$b/conformance_cpp_static" "$suite" | tail -1
    lock "$b/threads" "$suite/classify.q8b" 4 20 "a gripping, funny film." "Dull." | tail -1
    # The version file: 0.1 is compatible, 0.2 (a breaking minor before 1.0) is not.
    mkdir -p "$work/cmake-ver"
    printf 'cmake_minimum_required(VERSION 3.16)\nproject(v NONE)\nfind_package(q8bert ${WANT} REQUIRED)\n' \
        >"$work/cmake-ver/CMakeLists.txt"
    cmake -S "$work/cmake-ver" -B "$work/cmake-ver/b1" -DCMAKE_PREFIX_PATH="$prefix" -DWANT=0.1 >/dev/null
    if cmake -S "$work/cmake-ver" -B "$work/cmake-ver/b2" -DCMAKE_PREFIX_PATH="$prefix" -DWANT=0.2 >/dev/null 2>&1; then
        echo "find_package(q8bert 0.2) accepted 0.1"; return 1
    fi
    echo "cmake: find_package(q8bert 0.1) found, 0.2 rejected"
}

go_tests() {
    (cd bindings/go && export CGO_LDFLAGS="-Wl,-rpath,$libdir" && go vet ./... && lock go test -race -count=1 ./...)
}

java_tests() {
    Q8BERT_LIBDIR="$libdir" lock bash bindings/java/build.sh test "$suite"
}

python_tests() {
    (cd bindings/python && lock python3 -m pytest -q -p no:cacheprovider -m "not spark")
}

step "C/C++ via pkg-config"; record "C/C++ (pkg-config, shared + static)" c_pkgconfig
step "C/C++ via CMake";      record "C/C++ (CMake find_package)" c_cmake
step "Go";                   record "Go (go test -race)" go_tests
step "Java";                 record "Java (JNA)" java_tests
step "Python";               record "Python (ctypes, pytest)" python_tests

step "summary"
printf '%s\n' "${results[@]}"
echo "total: ${SECONDS} s (build, install and suite generation included)"
echo "bindings: $(( ${#results[@]} - failures )) passed, $failures failed"
[ "$failures" = 0 ]
