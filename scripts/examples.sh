#!/usr/bin/env bash
# Installs libmsa from an existing build into a prefix and uses it the way applications do:
#   1. `cmake --install` into BUILD/examples_ci/prefix, and checks the installed layout;
#   2. builds and runs the two consumer projects (tests/consumer: find_package(msa) and pkg-config);
#   3. builds and runs the five examples (examples/c, rust, go, zig, python) against the installed tree on
#      one tiny random checkpoint (written by the installed `msa` CLI), and checks that all five print the
#      same greedy tokens and retrieved documents as the C example, and that each cancelled from a callback.
# Missing toolchains are installed first (scripts/deps.sh: cargo, golang-go, ziglang from PyPI).
# usage: scripts/examples.sh [BUILD_DIR]    (default: $MSA_BUILD_DIR, else build/release; must be configured;
#                                            the library, static library and CLI are built if out of date)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
BUILD="${1:-${MSA_BUILD_DIR:-build/release}}"
[[ -f "$BUILD/CMakeCache.txt" ]] || { echo "[examples] $BUILD is not a configured build directory" >&2; exit 1; }
BUILD="$(cd "$BUILD" && pwd)"
WORK="$BUILD/examples_ci"  # (BUILD/examples is CMake's binary dir of examples/cli)
PREFIX="$WORK/prefix"
OUT="$WORK/out"
TOKENIZER="$ROOT/../shared/data/qwen3-tokenizer"

step_start=$SECONDS
step() {
  echo "[examples] $1 ($((SECONDS - step_start)) s so far)"
}

msa_install_example_toolchains
step "toolchains ready: $(cargo --version), $(go version | cut -d' ' -f3), zig $(msa_zig version)"

# ------------------------------------------------------------------ 1. install
cmake --build "$BUILD" --target msa msa_static msa_cli -j"$(msa_jobs)" >/dev/null
rm -rf "$PREFIX" "$OUT"
mkdir -p "$OUT"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR="$(dirname "$(find "$PREFIX" -name libmsa.so -print -quit)")"
major=$(sed -n 's/^#define MSA_VERSION_MAJOR \([0-9]*\)$/\1/p' include/msa/msa.h)
for f in "$LIBDIR/libmsa.so" "$LIBDIR/libmsa.so.$major" "$LIBDIR/libmsa.a" "$PREFIX/include/msa/msa.h" \
         "$PREFIX/include/msa/msa.hpp" "$PREFIX/bin/msa" "$LIBDIR/pkgconfig/msa.pc" \
         "$LIBDIR/cmake/msa/msaConfig.cmake" "$LIBDIR/cmake/msa/msaConfigVersion.cmake" \
         "$LIBDIR/cmake/msa/msaTargets.cmake"; do
  [[ -e "$f" ]] || { echo "[examples] FAIL: not installed: $f" >&2; exit 1; }
done
[[ "$(readlink "$LIBDIR/libmsa.so")" == "libmsa.so.$major" ]] ||
  { echo "[examples] FAIL: libmsa.so does not link to libmsa.so.$major" >&2; exit 1; }
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
step "installed into $PREFIX"

MODEL="$WORK/tiny-model"
if [[ ! -f "$MODEL/model.safetensors" ]]; then
  "$PREFIX/bin/msa" init-model --preset tiny --seed 1 --tokenizer "$TOKENIZER" --out "$MODEL" >/dev/null
fi
step "checkpoint $MODEL"

# ------------------------------------------------------------------ 2. consumers of the installed tree
rm -rf "$WORK/consumer-cmake" "$WORK/consumer-cmake-major"
cmake -S tests/consumer/cmake -B "$WORK/consumer-cmake" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/consumer-cmake" >/dev/null
"$WORK/consumer-cmake/consumer_shared" "$MODEL"
[[ -x "$WORK/consumer-cmake/consumer_static" ]] && "$WORK/consumer-cmake/consumer_static" "$MODEL"
# SameMajorVersion: asking for the next major version must not find this package.
if cmake -S tests/consumer/cmake -B "$WORK/consumer-cmake-major" -DCMAKE_PREFIX_PATH="$PREFIX" \
     -DMSA_REQUIRED_VERSION="$((major + 1)).0" >/dev/null 2>&1; then
  echo "[examples] FAIL: find_package(msa $((major + 1)).0) accepted version $major" >&2
  exit 1
fi
mkdir -p "$WORK/consumer-pkgconfig"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -pedantic -Werror tests/consumer/pkgconfig/consumer.c $(pkg-config --cflags --libs msa) \
  -Wl,-rpath,"$LIBDIR" -o "$WORK/consumer-pkgconfig/consumer"
"$WORK/consumer-pkgconfig/consumer" "$MODEL"
step "consumers (find_package, pkg-config) built and ran"

# ------------------------------------------------------------------ 3. examples
mkdir -p "$WORK/c" "$WORK/go" "$WORK/zig"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -pedantic -Werror -O2 examples/c/msa_example.c $(pkg-config --cflags --libs msa) \
  -Wl,-rpath,"$LIBDIR" -o "$WORK/c/msa_example"
"$WORK/c/msa_example" "$MODEL" >"$OUT/c.txt"
step "C example"

MSA_LIB_DIR="$LIBDIR" CARGO_TARGET_DIR="$WORK/rust-target" \
  cargo build --offline --release --quiet --manifest-path examples/rust/Cargo.toml
"$WORK/rust-target/release/msa-example" "$MODEL" >"$OUT/rust.txt"
step "Rust example"

(cd examples/go && CGO_LDFLAGS="-Wl,-rpath,$LIBDIR" go build -o "$WORK/go/msa-example" .)
"$WORK/go/msa-example" "$MODEL" >"$OUT/go.txt"
step "Go example"

msa_zig build-exe examples/zig/main.zig -O ReleaseSmall -I"$PREFIX/include" -L"$LIBDIR" -lmsa -lc \
  -rpath "$LIBDIR" --cache-dir "$WORK/zig-cache" -femit-bin="$WORK/zig/msa-example"
"$WORK/zig/msa-example" "$MODEL" >"$OUT/zig.txt"
step "Zig example"

python3 examples/python/msa_example.py "$MODEL" "$LIBDIR/libmsa.so.$major" >"$OUT/python.txt"
step "Python example"

# ------------------------------------------------------------------ 4. same results everywhere
# The lines that matter are compared first (a readable diff), then the whole outputs byte for byte.
compared() { grep -E '^(libmsa |documents: |tokens: |stop: |retrieved: |cancelled: )' "$1"; }
compared "$OUT/c.txt" >"$OUT/c.cmp"
if ! grep -qE '^tokens: [0-9]+' "$OUT/c.cmp" || ! grep -q '^retrieved: ' "$OUT/c.cmp" ||
   ! grep -q '^cancelled: MSA_ERR_CANCELLED after 1 piece' "$OUT/c.cmp"; then
  echo "[examples] FAIL: the C example's output lacks tokens, retrieved documents or the cancel:" >&2
  cat "$OUT/c.txt" >&2
  exit 1
fi
for lang in rust go zig python; do
  compared "$OUT/$lang.txt" >"$OUT/$lang.cmp" || true
  if ! diff -u "$OUT/c.cmp" "$OUT/$lang.cmp" >&2; then
    echo "[examples] FAIL: the $lang example differs from the C example (above)" >&2
    exit 1
  fi
  # byte for byte, the streamed text included
  cmp -s "$OUT/c.txt" "$OUT/$lang.txt" ||
    { echo "[examples] FAIL: the $lang example streamed other text than the C example" >&2; exit 1; }
done
sed 's/^/    /' "$OUT/c.cmp"
step "OK: C, Rust, Go, Zig and Python printed the same tokens and documents"
