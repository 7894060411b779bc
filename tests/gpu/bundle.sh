#!/usr/bin/env bash
# Builds the GPU tests and benchmarks here (a machine with the CUDA toolkit but perhaps no GPU) for one
# architecture and packs them, with the Debian shared libraries they link, into a folder that can travel to
# a GPU machine whose image lacks libmsa's build dependencies (the workplace's lent GPU machines have nvcc,
# cuBLAS and CMake but no Debian -dev packages and no package registry). tests/gpu/run.sh runs such a
# bundle with MSA_GPU_PREBUILT=<folder>.
#   usage: tests/gpu/bundle.sh [OUT_DIR=.gpubin] [ARCH=90]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/.gpubin}"
ARCH="${2:-90}"
cd "$ROOT"
source scripts/deps.sh
export CCACHE_BASEDIR="$ROOT"
BUILD="$ROOT/build/gpu-bundle-sm$ARCH"
# shellcheck disable=SC2046
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMSA_BUILD_TESTS=ON -DMSA_BUILD_BENCHMARKS=ON \
  $(msa_cuda_flag) -DCMAKE_CUDA_ARCHITECTURES="$ARCH" $(msa_ccache_flags) >/dev/null
targets=$(cmake --build "$BUILD" --target help | awk '/msa_gpu_|bench_gpu_/ {print $2}' | tr '\n' ' ')
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"$(msa_jobs)" --target $targets
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
for t in $targets; do
  f=$(find "$BUILD" -type f -name "$t" -perm -u+x | head -1)
  [[ -n "$f" ]] && cp "$f" "$OUT/bin/"
done
# The Debian libraries the binaries need that a CUDA image may lack (the CUDA libraries come from there).
for f in "$OUT"/bin/*; do ldd "$f"; done | awk '/=> \// {print $1, $3}' | sort -u |
  while read -r name path; do
    case "$name" in
      libzstd*|libpcre2*|libutf8proc*|libxxhash*|libbenchmark*) cp -L "$path" "$OUT/lib/$name" ;;
    esac
  done
du -sh "$OUT"
ls "$OUT/bin" "$OUT/lib"
