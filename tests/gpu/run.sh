#!/usr/bin/env bash
# GPU check of the CUDA backend on a machine with a card: configure + build (Release, CUDA for the present card
# only), run the GPU tests (ctest -L gpu), the GPU benchmarks, then — if time is left — the whole ctest suite;
# print one short summary table at the end. Designed to finish within 8 minutes on an H100/H200 (16 cores);
# every step runs under `timeout`.
#
# Usage: tests/gpu/run.sh [build_dir]           (default: build/gpu; run from anywhere)
#        MSA_GPU_PREBUILT=.gpubin tests/gpu/run.sh  runs a bundle made by tests/gpu/bundle.sh on a machine with
#        the CUDA toolkit (the lent GPU machines' image has nvcc, cuBLAS and CMake but not the Debian -dev
#        packages libmsa builds with, and no package registry): no configure or build, the same tests and
#        benchmarks, the same table. Also used automatically when configure fails and .gpubin/ exists.
# Env:   MSA_JOBS (default 16), MSA_CUDA_ARCH (default: the card's compute capability, e.g. 90),
#        MSA_GPU_FULL=0 to skip the whole-suite ctest, MSA_GPU_BENCH_ARGS (e.g. --quick: no 100M scan).
# Exit status: 0 when every GPU test passed and the benchmark ran without error; 1 otherwise (the table of
# whatever ran is printed either way).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
BUILD=${1:-build/gpu}
JOBS=${MSA_JOBS:-16}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
LOG=$BUILD/run_logs
mkdir -p "$LOG"
declare -a SUMMARY
note() { SUMMARY+=("$1"); echo "== $1"; }
RC=0

echo "== libmsa GPU run: $(date -u +%FT%TZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi -L: not available"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$NVCC" --version 2>/dev/null | tail -1 || echo "nvcc not found"
ARCH=${MSA_CUDA_ARCH:-}
if [ -z "$ARCH" ]; then
  CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  if [[ "$CC" =~ ^[0-9]+$ ]]; then ARCH=$CC; else ARCH=native; fi
fi
LAUNCH=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR=$ROOT
  LAUNCH=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# ---------------------------------------------------------------------------------------------- prebuilt
run_prebuilt() {
  local dir=$1
  local cudalib
  cudalib=$(dirname "$(find / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -1)" 2>/dev/null)
  export LD_LIBRARY_PATH="$dir/lib${cudalib:+:$cudalib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "prebuilt bundle: $dir (cuBLAS from ${cudalib:-the loader path})"
  local ran=0
  for t in "$dir"/bin/msa_gpu_*; do
    [ -x "$t" ] || continue
    ran=$((ran + 1))
    local name r
    name=$(basename "$t")
    timeout 180 "$t" >"$LOG/$name.log" 2>&1
    r=$?
    tail -12 "$LOG/$name.log"
    case $r in
      0) note "$name: PASS" ;;
      77) note "$name: SKIPPED (no device?)"; RC=1 ;;
      *) note "$name: FAILED rc=$r (see $LOG/$name.log)"; RC=1 ;;
    esac
  done
  if [ $ran -eq 0 ]; then note "prebuilt bundle: no msa_gpu_* test in $dir/bin"; RC=1; fi
  for b in "$dir"/bin/bench_gpu_*; do
    [ -x "$b" ] || continue
    local name r
    name=$(basename "$b")
    # shellcheck disable=SC2086
    timeout 200 "$b" ${MSA_GPU_BENCH_ARGS:-} >"$LOG/$name.log" 2>&1
    r=$?
    if [ $r -eq 0 ]; then note "$name: ok"; else note "$name: FAILED rc=$r"; RC=1; fi
  done
}
summary() {
  echo
  echo "================================ GPU run summary ($(elapsed) s) ================================"
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1
  printf '%s\n' "${SUMMARY[@]}"
  for f in "$LOG"/bench_gpu_*.log; do
    [ -e "$f" ] || continue
    echo "--- $(basename "$f" .log)"
    sed -n '/^op  *|/,$p' "$f"
  done
  echo "result: $([ $RC -eq 0 ] && echo PASS || echo FAIL)"
}
if [ -n "${MSA_GPU_PREBUILT:-}" ]; then
  run_prebuilt "$MSA_GPU_PREBUILT"
  summary
  exit $RC
fi

# ---------------------------------------------------------------------------------------------- configure
BENCH=ON
cfg() {
  timeout 120 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMSA_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS="$1" "${LAUNCH[@]}" \
    >"$LOG/configure.log" 2>&1
}
if ! cfg ON; then
  echo "configure with benchmarks failed (Google Benchmark missing?): retrying without; tail of the log:"
  tail -5 "$LOG/configure.log"
  BENCH=OFF
  if ! cfg OFF; then
    tail -30 "$LOG/configure.log"
    note "configure: FAILED (see $LOG/configure.log)"
    if [ -d "$ROOT/.gpubin/bin" ]; then
      run_prebuilt "$ROOT/.gpubin"
    else
      RC=1
    fi
    summary
    exit $RC
  fi
fi
note "configure: ok (sm_$ARCH, benchmarks $BENCH) at $(elapsed) s"

# ---------------------------------------------------------------------------------------------- build
TARGETS=(msa_gpu_tests)
for f in "$ROOT"/tests/gpu/test_*.cpp; do
  [ -e "$f" ] && TARGETS+=("msa_gpu_$(basename "$f" .cpp)")
done
if [ "$BENCH" = ON ]; then
  for f in "$ROOT"/benchmarks/gpu/bench_gpu_*.cpp; do
    [ -e "$f" ] && TARGETS+=("$(basename "$f" .cpp)")
  done
fi
B0=$(date +%s)
if timeout 300 cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" >"$LOG/build.log" 2>&1; then
  note "build (${#TARGETS[@]} targets): ok in $(( $(date +%s) - B0 )) s"
else
  grep -E "error|Error" "$LOG/build.log" | head -30
  tail -15 "$LOG/build.log"
  note "build: FAILED after $(( $(date +%s) - B0 )) s (see $LOG/build.log)"
  printf '%s\n' "${SUMMARY[@]}"
  exit 1
fi

# ---------------------------------------------------------------------------------------------- GPU tests
echo "== GPU tests (ctest -L gpu)"
S0=$(date +%s)
timeout 300 ctest --test-dir "$BUILD" -L gpu -V --timeout 180 >"$LOG/ctest_gpu.log" 2>&1
r=$?
# Each test's summary lines (the tests print one line per case group), then ctest's verdicts.
grep -E "^[0-9]+: (FAIL|SKIP|routing|top-k|NaN|page|argument|test_|device|CUDA|cuda|ops|PASS|ok)" "$LOG/ctest_gpu.log" | head -80
grep -E "Test +#[0-9]+:" "$LOG/ctest_gpu.log"
verdict=$(grep -E "tests passed|tests failed" "$LOG/ctest_gpu.log" | tail -1)
if [ $r -eq 0 ] && ! grep -qE "\*\*\*Skipped|Not Run" "$LOG/ctest_gpu.log"; then
  note "ctest -L gpu: PASS in $(( $(date +%s) - S0 )) s — $verdict"
else
  grep -E "^[0-9]+: FAIL" "$LOG/ctest_gpu.log" | head -20
  note "ctest -L gpu: FAILED or skipped (rc=$r) — $verdict; see $LOG/ctest_gpu.log"
  RC=1
fi

# ---------------------------------------------------------------------------------------------- benchmarks
if [ "$BENCH" = ON ]; then
  for f in "$ROOT"/benchmarks/gpu/bench_gpu_*.cpp; do
    [ -e "$f" ] || continue
    b=$(basename "$f" .cpp)
    S0=$(date +%s)
    # shellcheck disable=SC2086
    timeout 200 "$BUILD/benchmarks/$b" ${MSA_GPU_BENCH_ARGS:-} >"$LOG/$b.log" 2>&1
    r=$?
    if [ $r -eq 0 ]; then note "$b: ok ($(( $(date +%s) - S0 )) s)"; else note "$b: FAILED rc=$r"; RC=1; fi
    grep -E "^(ERROR|skip|built)" "$LOG/$b.log" | head -20
  done
else
  note "benchmarks: not built (configure without Google Benchmark)"
fi

# ---------------------------------------------------------------------------------------------- memcheck
# compute-sanitizer memcheck of the routing test's quick subset: out-of-bounds / misaligned device accesses.
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
RT=$(find "$BUILD/tests" -maxdepth 2 -type f -name msa_gpu_test_routing | head -1)
if [ -n "$SAN" ] && [ -n "$RT" ] && [ "$(elapsed)" -lt 300 ]; then
  S0=$(date +%s)
  timeout 100 "$SAN" --tool memcheck --error-exitcode 3 "$RT" --quick >"$LOG/memcheck.log" 2>&1
  r=$?
  case $r in
    0) note "compute-sanitizer memcheck (test_routing --quick): clean in $(( $(date +%s) - S0 )) s" ;;
    124) note "compute-sanitizer memcheck: cut short at 100 s (informational)" ;;
    *) grep -E "Invalid|ERROR|FAIL|misaligned" "$LOG/memcheck.log" | head -20
       note "compute-sanitizer memcheck: ERRORS rc=$r (see $LOG/memcheck.log)"; RC=1 ;;
  esac
else
  note "compute-sanitizer memcheck: skipped (tool or test missing, or $(elapsed) s elapsed)"
fi

# ---------------------------------------------------------------------------------------------- whole suite
if [ "${MSA_GPU_FULL:-1}" != 0 ] && [ "$(elapsed)" -lt 270 ]; then
  left=$(( 440 - $(elapsed) ))
  B0=$(date +%s)
  if timeout $(( left * 2 / 3 )) cmake --build "$BUILD" -j"$JOBS" >"$LOG/build_all.log" 2>&1; then
    left=$(( 460 - $(elapsed) ))
    if [ $left -gt 20 ] && timeout $left ctest --test-dir "$BUILD" -j"$JOBS" -LE gpu --timeout 120 >"$LOG/ctest_all.log" 2>&1; then
      note "ctest (whole suite, -LE gpu): $(grep -E 'tests passed' "$LOG/ctest_all.log" | tail -1)"
    else
      grep -E "\*\*\*|Failed|tests passed" "$LOG/ctest_all.log" 2>/dev/null | tail -15
      note "ctest (whole suite): not clean or cut short — see $LOG/ctest_all.log (informational)"
    fi
  else
    note "whole-suite build: not finished in time ($(( $(date +%s) - B0 )) s; informational)"
  fi
else
  note "whole suite: skipped (MSA_GPU_FULL=0 or $(elapsed) s elapsed)"
fi

# ---------------------------------------------------------------------------------------------- summary
summary
exit $RC
