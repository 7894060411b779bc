#!/usr/bin/env bash
# Checks the ABI of the built libmsa.so against the committed baseline in tests/abi/:
#   1. SONAME is libmsa.so.<MSA_VERSION_MAJOR>;
#   2. the exported symbols (nm -D --defined-only, sorted, with their symbol version) equal
#      tests/abi/symbols.txt exactly: a removed symbol fails, and so does an added one until the list is
#      updated (a deliberate step: scripts/update_abi.sh);
#   3. every MSA_API function declared in include/msa/msa.h is exported;
#   4. abidiff of the library's ABI (abidw, public types of include/msa only) against tests/abi/libmsa.abi
#      finds no change outside tests/abi/abidiff.suppr: a removed, reordered, retyped or inserted struct
#      field, a changed function signature or enum value fails; new functions and fields appended to an
#      output struct pass (and are printed); a params struct that grows fails until its msa_*_params_init
#      is versioned (tests/abi/README.md).
# usage: scripts/check_abi.sh [BUILD_DIR]          (default: $MSA_BUILD_DIR, else build/release)
#        scripts/check_abi.sh --update [BUILD_DIR]  (what scripts/update_abi.sh runs)
# The build directory's libmsa.so is (re)built first; a missing build directory is configured without CUDA.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UPDATE=0
if [[ "${1:-}" == "--update" ]]; then UPDATE=1; shift; fi
BUILD="${1:-${MSA_BUILD_DIR:-build/release}}"
BASE="tests/abi"

if ! command -v abidw >/dev/null 2>&1 || ! command -v abidiff >/dev/null 2>&1; then
  # shellcheck source=scripts/deps.sh
  source scripts/deps.sh
  msa_install_packages abigail-tools
fi

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  echo "[abi] configuring $BUILD (no CUDA, library only)"
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMSA_CUDA=OFF -DMSA_BUILD_TESTS=OFF \
    -DMSA_BUILD_BENCHMARKS=OFF >/dev/null
fi
if ! log=$(cmake --build "$BUILD" --target msa -j"$(nproc 2>/dev/null || echo 2)" 2>&1); then
  echo "$log" >&2
  echo "[abi] FAIL: libmsa.so does not build in $BUILD" >&2
  exit 1
fi
LIB="$BUILD/libmsa.so"
OUT="$BUILD/abi"
mkdir -p "$OUT"

major=$(sed -n 's/^#define MSA_VERSION_MAJOR \([0-9]*\)$/\1/p' include/msa/msa.h)
nm -D --defined-only "$LIB" | awk '{print $3}' | LC_ALL=C sort >"$OUT/symbols.txt"
# Public types only (include/msa), no source locations or DT_NEEDED (they differ between builds with and
# without CUDA and say nothing about the ABI).
abidw --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed --type-id-style hash \
  --headers-dir include/msa --drop-private-types --exported-interfaces-only "$LIB" >"$OUT/libmsa.abi"

if ((UPDATE)); then
  cp "$OUT/symbols.txt" "$BASE/symbols.txt"
  cp "$OUT/libmsa.abi" "$BASE/libmsa.abi"
  echo "[abi] baseline updated from $LIB: $BASE/symbols.txt ($(wc -l <"$BASE/symbols.txt") symbols)," \
       "$BASE/libmsa.abi. Review 'git diff $BASE' and commit it."
fi

fail=0
advice() {
  cat >&2 <<MSG
[abi] If the change is intended and compatible, regenerate the baseline with one command:
          scripts/update_abi.sh ${BUILD}
      then review and commit tests/abi/. Compatible: a new function; a field appended to an output struct
      (msa_*_desc, msa_*_usage, msa_timings); a field appended to a params struct once its msa_*_params_init
      symbol is versioned (tests/abi/README.md). Removing or changing an exported function, or removing,
      reordering or retyping a struct field, breaks every program built against libmsa.so.${major}: that
      needs a new major version instead.
MSG
}

soname=$(readelf -d "$LIB" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [[ "$soname" != "libmsa.so.${major}" ]]; then
  echo "[abi] FAIL: SONAME is '$soname', expected libmsa.so.${major}" >&2
  fail=1
fi

if ! diff -u "$BASE/symbols.txt" "$OUT/symbols.txt" >"$OUT/symbols.diff"; then
  echo "[abi] FAIL: exported symbols differ from $BASE/symbols.txt (- removed, + added):" >&2
  grep '^[-+][^-+]' "$OUT/symbols.diff" >&2 || true
  fail=1
fi

unexported=0
while read -r fn; do
  # the default version: MSA_<major>, or a later node MSA_<major>.<minor> of a versioned symbol
  if ! grep -qxE "${fn}@@MSA_${major}(\.[0-9]+)?" "$OUT/symbols.txt"; then
    echo "[abi] FAIL: $fn is declared MSA_API in include/msa/msa.h but not exported" >&2
    unexported=1
  fi
done < <(tr '\n' ' ' <include/msa/msa.h | grep -oE 'MSA_API [^;(]*[ *](msa_[a-z0-9_]+)\(' |
           sed -E 's/.*[ *](msa_[a-z0-9_]+)\($/\1/' | sort -u)
((unexported)) && fail=1

set +e
abidiff --suppressions "$BASE/abidiff.suppr" --no-unreferenced-symbols "$BASE/libmsa.abi" "$OUT/libmsa.abi" \
  >"$OUT/abidiff.txt" 2>&1
rc=$?
set -e
if ((rc != 0)); then
  echo "[abi] FAIL: abidiff $BASE/libmsa.abi $OUT/libmsa.abi (exit $rc):" >&2
  cat "$OUT/abidiff.txt" >&2
  fail=1
else
  # Compatible changes (suppressed) are shown, not hidden.
  abidiff --no-unreferenced-symbols "$BASE/libmsa.abi" "$OUT/libmsa.abi" >"$OUT/abidiff_all.txt" 2>&1 ||
    { echo "[abi] compatible changes against the baseline:"; sed 's/^/      /' "$OUT/abidiff_all.txt"; }
fi

if ((fail)); then
  advice
  exit 1
fi
echo "[abi] OK: SONAME $soname, $(wc -l <"$OUT/symbols.txt") exported symbols as in $BASE/symbols.txt, abidiff clean"
