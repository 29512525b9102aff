#!/usr/bin/env bash
# Installs q8bert like a C library:
#   PREFIX/include/q8bert.h
#   PREFIX/lib/libq8bert.so.X.Y.Z, libq8bert.so.0 (the SONAME), libq8bert.so, libq8bert.a
#   PREFIX/lib/pkgconfig/q8bert.pc
#   PREFIX/lib/cmake/q8bert/q8bertConfig.cmake, q8bertConfigVersion.cmake (target q8bert::q8bert)
#
#   bash scripts/install.sh --prefix DIR [--no-build] [--strip]
#
# The .pc and CMake files locate the prefix relative to themselves, so the tree can be moved or
# staged (DESTDIR-style) and packaged as is. Why not cargo-c: docs/PACKAGING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="" build=1 strip=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --no-build) build=0; shift ;;
        --strip) strip=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix DIR is required" >&2; exit 2; }

# Version and ABI from the sources, so nothing here needs editing on a release.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
abi=$(sed -n 's/^const ABI_VERSION: u32 = \([0-9]*\);/\1/p' capi/build.rs)
[ -n "$version" ] && [ -n "$abi" ] || { echo "install.sh: cannot read version/ABI" >&2; exit 1; }

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ "$build" = 1 ]; then
    ${Q8BERT_LOCK:+flock "$Q8BERT_LOCK"} cargo build --release -p q8bert-capi --quiet
fi
rel="$target_dir/release"
for f in libq8bert.so libq8bert.a; do
    [ -f "$rel/$f" ] || { echo "install.sh: $rel/$f missing (build first)" >&2; exit 1; }
done

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib="$prefix/lib" inc="$prefix/include"
install -d "$lib/pkgconfig" "$lib/cmake/q8bert" "$inc"
install -m 644 include/q8bert.h "$inc/q8bert.h"
install -m 755 "$rel/libq8bert.so" "$lib/libq8bert.so.$version"
install -m 644 "$rel/libq8bert.a" "$lib/libq8bert.a"
if [ "$strip" = 1 ]; then
    strip --strip-debug "$lib/libq8bert.so.$version" "$lib/libq8bert.a"
fi
ln -sfn "libq8bert.so.$version" "$lib/libq8bert.so.$abi"
ln -sfn "libq8bert.so.$abi" "$lib/libq8bert.so"

# What Rust's std needs when linking the static library (rustc --print native-static-libs on
# Linux/glibc).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

cat > "$lib/pkgconfig/q8bert.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: q8bert
Description: Embeddable int8 BERT inference runtime (Q8BERT), C API
Version: $version
Libs: -L\${libdir} -lq8bert
Libs.private: $static_libs
Cflags: -I\${includedir}
PC

cat > "$lib/cmake/q8bert/q8bertConfig.cmake" <<CM
# q8bert $version. Imported targets:
#   q8bert::q8bert         the shared library (SONAME libq8bert.so.$abi)
#   q8bert::q8bert_static  the static library with the system libraries it needs
get_filename_component(_q8bert_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET q8bert::q8bert)
  add_library(q8bert::q8bert SHARED IMPORTED)
  set_target_properties(q8bert::q8bert PROPERTIES
    IMPORTED_LOCATION "\${_q8bert_prefix}/lib/libq8bert.so.$version"
    IMPORTED_SONAME "libq8bert.so.$abi"
    INTERFACE_INCLUDE_DIRECTORIES "\${_q8bert_prefix}/include")
endif()
if(NOT TARGET q8bert::q8bert_static)
  add_library(q8bert::q8bert_static STATIC IMPORTED)
  set_target_properties(q8bert::q8bert_static PROPERTIES
    IMPORTED_LOCATION "\${_q8bert_prefix}/lib/libq8bert.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_q8bert_prefix}/include"
    INTERFACE_LINK_LIBRARIES "gcc_s;util;rt;pthread;m;dl")
endif()
set(q8bert_VERSION $version)
set(q8bert_INCLUDE_DIRS "\${_q8bert_prefix}/include")
set(q8bert_LIBRARIES q8bert::q8bert)
unset(_q8bert_prefix)
CM

# Before 1.0 a minor release may break the API (Rust/semver rule): 0.1 satisfies 0.1.x only.
cat > "$lib/cmake/q8bert/q8bertConfigVersion.cmake" <<CM
set(PACKAGE_VERSION "$version")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
if(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_FIND_VERSION_MAJOR EQUAL "${version%%.*}" AND NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  if(NOT PACKAGE_FIND_VERSION_MAJOR EQUAL 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL "$(echo "$version" | cut -d. -f2)")
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
endif()
if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
if(DEFINED CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")   # unset in projects without languages
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
CM

echo "installed q8bert $version (SONAME libq8bert.so.$abi) to $prefix"
