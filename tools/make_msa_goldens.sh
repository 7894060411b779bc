#!/usr/bin/env bash
# Regenerates the MSA goldens under tests/data/msa_goldens/ (tools/msa_reference.py): builds the msa CLI
# (its `init-model` writes the checkpoints, with the real Qwen3 vocabulary and tokenizer), writes the five
# checkpoints into a temporary directory (they are not committed: tests/unit/test_msa_goldens.cpp
# regenerates them with msa::init_model and checks their XXH64) and runs the float32 reference.
#
#   tests/data/msa_goldens/<config>.safetensors   golden tensors (stage 1, stage 2, stage 3, interleave)
#   tests/data/msa_goldens/<config>.json          init-model command, hashes, corpus, queries, strings
#
# Needs: a C++ toolchain for the CLI; pip install torch safetensors numpy tokenizers (CPU only; ~1 minute
# after the build). The shared Qwen3 tokenizer must be at ../shared/data/qwen3-tokenizer (or $MSA_TOKENIZER_DIR).
# Review the diff (and the printed gaps) before committing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD="${MSA_ORACLE_BUILD:-$ROOT/build/oracle}"
TOKENIZER="${MSA_TOKENIZER_DIR:-$ROOT/../shared/data/qwen3-tokenizer}"
OUT=tests/data/msa_goldens

cmake -S "$ROOT" -B "$BUILD" -DMSA_CUDA=OFF -DMSA_BUILD_TESTS=OFF -DMSA_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD" -j"${MSA_BUILD_JOBS:-2}" --target msa_cli

WORK="$(mktemp -d "${TMPDIR:-/tmp}/msa_goldens.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$OUT"
python3 tools/msa_reference.py --msa-bin "$BUILD/bin/msa" --tokenizer-dir "$TOKENIZER" --work-dir "$WORK" \
  --out "$OUT" "$@"

du -shc "$OUT"/*   # keep the directory small (about 0.45 MB)
