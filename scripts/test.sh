#!/usr/bin/env bash
# Builds libmsa and runs every test: the release build (CUDA backend compiled when nvcc exists), the
# ASan+UBSan build, and the libFuzzer targets for a bounded time. Idempotent; installs what it needs.
#   MSA_SKIP_SANITIZE=1  skip the sanitizer build      MSA_FUZZ_SECONDS=N  seconds per fuzz target (20)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/deps.sh
msa_install_deps
JOBS=$(msa_jobs)
CCACHE_FLAGS=$(msa_ccache_flags)
export CCACHE_BASEDIR="$ROOT"

echo "== release build"
# shellcheck disable=SC2046
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=ON \
  $(msa_cuda_flag) $CCACHE_FLAGS >/dev/null
cmake --build build/release -j"$JOBS"
echo "== ABI check (exported symbols, abidiff against tests/abi/)"
scripts/check_abi.sh build/release
echo "== release tests"
ctest --test-dir build/release --output-on-failure -j"$JOBS"

if [[ "${MSA_SKIP_SANITIZE:-0}" != "1" ]]; then
  echo "== ASan+UBSan build"
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMSA_SANITIZE=ON -DMSA_CUDA=OFF \
    -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=OFF $CCACHE_FLAGS >/dev/null
  cmake --build build/asan -j"$JOBS"
  echo "== ASan+UBSan tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -j"$JOBS"
fi

echo "== install, consumers (find_package, pkg-config), examples in C, Rust, Go, Zig, Python"
scripts/examples.sh build/release

if [[ "${MSA_WITH_FUZZ:-1}" == "1" ]] && ls tests/fuzz/fuzz_*.cpp >/dev/null 2>&1; then
  echo "== fuzz targets (clang, libFuzzer)"
  cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DMSA_CUDA=OFF -DMSA_BUILD_TESTS=OFF -DMSA_BUILD_BENCHMARKS=OFF \
    -DMSA_BUILD_FUZZERS=ON $CCACHE_FLAGS >/dev/null
  cmake --build build/fuzz -j"$JOBS" --target msa_fuzzers  # the fuzz targets only, not the whole library
  secs="${MSA_FUZZ_SECONDS:-20}"
  for f in build/fuzz/tests/fuzz/fuzz_*; do
    [[ -x "$f" ]] || continue
    name=$(basename "$f")
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    work="build/fuzz/corpus_$name"
    mkdir -p "$work"
    [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
    echo "-- $name for ${secs}s"
    "$f" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$work" 2>&1 | tail -3
  done
fi
echo "== all tests passed"
