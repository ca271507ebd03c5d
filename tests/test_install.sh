#!/bin/bash
# Packaging test: `cmake --install` into a temporary prefix, then examples/quantize_tensor.c is
# built outside the source tree twice, with find_package(wquant) (examples/CMakeLists.txt) and with
# pkg-config (examples/Makefile), and run. Each group's error must stay within half its scale (the
# RTN bound), and the scales must equal the asymmetric int4 formula recomputed here with awk:
# scale = (max(w, 0) - min(w, 0)) / 15 over the group of W[r][c] = sin(0.1 (r*64 + c)) (1 + r).
# Usage: tests/test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/wq-install-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() {
    echo "test_install: FAIL: $*" >&2
    exit 1
}
cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" || fail "cmake --install: $(cat "$T/install.log")"
for f in include/wquant.h lib/libwquant.a lib/cmake/wquant/wquantConfig.cmake \
    lib/cmake/wquant/wquantConfigVersion.cmake lib/cmake/wquant/wquantTargets.cmake \
    lib/pkgconfig/wquant.pc bin/wquant; do
    [[ -s $T/prefix/$f ]] || fail "not installed: $f"
done
cp -r "$SRC/examples" "$T/ex" # outside the source tree

# 1. CMake package
cmake -S "$T/ex" -B "$T/b-cmake" -DCMAKE_PREFIX_PATH="$T/prefix" >"$T/cmake.log" 2>&1 ||
    fail "configure with find_package: $(cat "$T/cmake.log")"
cmake --build "$T/b-cmake" >"$T/build.log" 2>&1 || fail "build (cmake): $(cat "$T/build.log")"
# 2. pkg-config
PKG_CONFIG_PATH=$T/prefix/lib/pkgconfig make -C "$T/ex" O="$T" >"$T/make.log" 2>&1 ||
    fail "build (pkg-config): $(cat "$T/make.log")"
[[ $(PKG_CONFIG_PATH=$T/prefix/lib/pkgconfig pkg-config --modversion wquant) == \
    "$("$T/prefix/bin/wquant" --version | cut -d' ' -f2)" ]] || fail "pkg-config version"

for exe in "$T/b-cmake/quantize_tensor" "$T/quantize_tensor"; do
    "$exe" >"$T/out.txt" || fail "$exe failed"
    grep -q "^wquant $("$T/prefix/bin/wquant" --version | cut -d' ' -f2): 8x64 int4 g32 asym" "$T/out.txt" ||
        fail "$exe: header: $(head -n 1 "$T/out.txt")"
    [[ $(grep -c '^group ' "$T/out.txt") -eq 16 ]] || fail "$exe: expected 16 groups"
    awk '
        /^group / {
            r = $2; g = $3; s = $5; e = $7; lo = 0; hi = 0
            for (c = g * 32; c < g * 32 + 32; c++) {
                w = sin(0.1 * (r * 64 + c)) * (1 + r)
                if (w < lo) lo = w
                if (w > hi) hi = w
            }
            want = (hi - lo) / 15
            if (s < want * (1 - 1e-5) || s > want * (1 + 1e-5)) { printf "group %d %d: scale %s, want %.9g\n", r, g, s, want; bad = 1 }
            if (e > s / 2 * (1 + 1e-4) + 1e-7) { printf "group %d %d: error %s > scale/2 %.9g\n", r, g, e, s / 2; bad = 1 }
            if (e > max) max = e
        }
        /^max_abs_err / { got = $2 }
        END { if (got + 0 != max + 0 || max <= 0) { print "max_abs_err " got " != max of groups " max; bad = 1 }; exit bad }
    ' "$T/out.txt" || fail "$exe: output outside the RTN bound: $(cat "$T/out.txt")"
    echo "test_install: $exe: $(tail -n 1 "$T/out.txt")"
done
echo "test_install: ok"
