#!/usr/bin/env bash
# Builds libmsa and runs every test, in tiers chosen by ctest label (tests/CMakeLists.txt):
#   release build (CUDA backend compiled when nvcc exists), ABI check, then every test except the slow
#     "full" ones assigned to the ASan build (ctest -LE tier_asan);
#   ASan+UBSan build: every test except the slow ones assigned to the release build (ctest -LE tier_release);
#   ThreadSanitizer build (clang; msa_tests only): the concurrency tests (ctest -L concurrency);
#   install + consumers + FFI examples; the libFuzzer targets for a bounded time, two at a time.
# Each slow brute-force test ("full") thus runs once, in the build where it finds the most; all the others run
# in both the release and the ASan build. Every stage prints its wall time, and a summary closes the run: CI
# must stay under 30 minutes on 2 cores.
#   MSA_SKIP_SANITIZE=1  skip the ASan and TSan builds    MSA_SKIP_TSAN=1  skip the TSan build only
#   MSA_FUZZ_SECONDS=N   seconds per fuzz target (20)     MSA_WITH_FUZZ=0  no fuzz targets
#   MSA_STAGES="..."     run only these stages (of: release abi release_tests asan asan_tests tsan tsan_tests
#                        examples fuzz_build fuzz); a test stage needs its build stage, run now or before
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/deps.sh

STAGE_TIMES=()
stage_t0=$SECONDS
stage_name=""
want() { [[ -z "${MSA_STAGES:-}" || " ${MSA_STAGES} " == *" $1 "* ]]; }
begin() {
  stage_name="$1"
  stage_t0=$SECONDS
  echo "== $1${2:+: $2}"
}
end() {
  local s=$((SECONDS - stage_t0))
  STAGE_TIMES+=("$(printf '%-14s %5d s' "$stage_name" "$s")")
  echo "== $stage_name done in ${s} s"
}

begin deps "Debian packages"
msa_install_deps
JOBS=$(msa_jobs)
CCACHE_FLAGS=$(msa_ccache_flags)
export CCACHE_BASEDIR="$ROOT"
end

if want release; then
  begin release "release build"
  # shellcheck disable=SC2046
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=ON \
    $(msa_cuda_flag) $CCACHE_FLAGS >/dev/null
  cmake --build build/release -j"$JOBS"
  end
fi
if want abi; then
  begin abi "ABI check (exported symbols, abidiff against tests/abi/)"
  scripts/check_abi.sh build/release
  end
fi
if want release_tests; then
  begin release_tests "release tests (all but the full tests of the ASan tier)"
  ctest --test-dir build/release --output-on-failure -j"$JOBS" -LE tier_asan
  end
fi

if [[ "${MSA_SKIP_SANITIZE:-0}" != "1" ]]; then
  if want asan; then
    begin asan "ASan+UBSan build"
    cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMSA_SANITIZE=ON -DMSA_CUDA=OFF \
      -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=OFF $CCACHE_FLAGS >/dev/null
    cmake --build build/asan -j"$JOBS"
    end
  fi
  if want asan_tests; then
    begin asan_tests "ASan+UBSan tests (all but the full tests of the release tier)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build/asan --output-on-failure -j"$JOBS" -LE tier_release
    end
  fi

  if [[ "${MSA_SKIP_TSAN:-0}" != "1" ]]; then
    if want tsan; then
      begin tsan "ThreadSanitizer build (clang, msa_tests only)"
      msa_install_packages clang libclang-rt-14-dev
      cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMSA_TSAN=ON -DMSA_CUDA=OFF \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=OFF \
        $CCACHE_FLAGS >/dev/null
      cmake --build build/tsan -j"$JOBS" --target msa_tests  # the concurrency tests are all in msa_tests
      end
    fi
    if want tsan_tests; then
      begin tsan_tests "ThreadSanitizer: the concurrency tests"
      # No suppressions: a report is a failure (halt_on_error), with both stacks of a lock-order inversion.
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        ctest --test-dir build/tsan --output-on-failure -j"$JOBS" -L concurrency
      end
    fi
  fi
fi

if want examples; then
  begin examples "install, consumers (find_package, pkg-config), examples in C, Rust, Go, Zig, Python"
  scripts/examples.sh build/release
  end
fi

if [[ "${MSA_WITH_FUZZ:-1}" == "1" ]] && ls tests/fuzz/fuzz_*.cpp >/dev/null 2>&1; then
  if want fuzz_build; then
    begin fuzz_build "fuzz targets (clang, libFuzzer)"
    cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
      -DCMAKE_CXX_COMPILER=clang++ -DMSA_CUDA=OFF -DMSA_BUILD_TESTS=OFF -DMSA_BUILD_BENCHMARKS=OFF \
      -DMSA_BUILD_FUZZERS=ON $CCACHE_FLAGS >/dev/null
    cmake --build build/fuzz -j"$JOBS" --target msa_fuzzers  # the fuzz targets only, not the whole library
    end
  fi
  if want fuzz; then
    secs="${MSA_FUZZ_SECONDS:-20}"
    begin fuzz "every fuzz target for ${secs} s, ${JOBS} at a time"
    # Each target starts from a copy of its committed seed corpus (tests/fuzz/corpus/<name without fuzz_>/).
    running=0
    targets=()
    for f in build/fuzz/tests/fuzz/fuzz_*; do
      [[ -x "$f" ]] || continue
      name=$(basename "$f")
      targets+=("$name")
      corpus="tests/fuzz/corpus/${name#fuzz_}"
      work="build/fuzz/corpus_$name"
      mkdir -p "$work"
      [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
      rm -f "build/fuzz/$name.rc"
      ( rc=0
        "$f" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$work" >"build/fuzz/$name.log" 2>&1 ||
          rc=$?
        echo "$rc" >"build/fuzz/$name.rc" ) &
      running=$((running + 1))
      if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
      fi
    done
    wait || true
    failed=0
    for name in "${targets[@]}"; do
      rc=$(cat "build/fuzz/$name.rc" 2>/dev/null || echo "?")
      if [[ "$rc" == "0" ]]; then
        echo "-- $name: $(grep -E '^stat::number_of_executed_units' "build/fuzz/$name.log" | awk '{print $2}') runs," \
          "corpus $(ls "build/fuzz/corpus_$name" | wc -l) inputs"
      else
        echo "-- $name FAILED (exit $rc); the end of build/fuzz/$name.log:"
        tail -40 "build/fuzz/$name.log"
        failed=1
      fi
    done
    ((failed == 0))
    end
  fi
fi

echo "== stage times (wall clock, $JOBS jobs)"
printf '   %s\n' "${STAGE_TIMES[@]}"
echo "   total          $(printf '%5d' "$SECONDS") s"
echo "== all tests passed"
