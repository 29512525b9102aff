#!/usr/bin/env bash
# Builds the Java binding with plain javac (no Maven: Debian's JNA jar is the only dependency)
# and, with `test DIR`, runs the conformance suite against the installed library.
#   bash bindings/java/build.sh                 -> build/q8bert.jar, build/tests, build/examples
#   bash bindings/java/build.sh test DIR        (library from -Djna.library.path=$Q8BERT_LIBDIR
#                                                or pkg-config's libdir)
set -euo pipefail
cd "$(dirname "$0")"
JNA="${JNA_JAR:-/usr/share/java/jna.jar}"
[ -f "$JNA" ] || { echo "JNA not found at $JNA (apt-get install libjna-java)" >&2; exit 1; }
rm -rf build && mkdir -p build/classes build/tests build/examples
javac -Xlint:all -Werror --release 17 -cp "$JNA" -d build/classes $(find src/main -name '*.java')
jar --create --file build/q8bert.jar -C build/classes .
javac -Xlint:all -Werror --release 17 -cp "$JNA:build/q8bert.jar" -d build/tests $(find src/test -name '*.java')
javac -Xlint:all -Werror --release 17 -cp "$JNA:build/q8bert.jar" -d build/examples $(find src/example -name '*.java')
if [ "${1:-}" = test ]; then
    libdir="${Q8BERT_LIBDIR:-$(pkg-config --variable=libdir q8bert)}"
    java -Djna.library.path="$libdir" -cp "$JNA:build/q8bert.jar:build/tests" org.q8bert.ConformanceTest "${2:?conformance dir}"
fi
