#!/usr/bin/env bash
# Builds libmsa and runs the main job on the embedded default: a tiny MSA checkpoint with the real Qwen3
# vocabulary, written by `msa init-model` (no torch, no download), then `msa info` and `msa logits`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/deps.sh
MSA_WITH_FUZZ=0 msa_install_deps
JOBS=$(msa_jobs)
# shellcheck disable=SC2046
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release $(msa_cuda_flag) >/dev/null
cmake --build build/release -j"$JOBS" --target msa_cli
MSA=build/release/bin/msa
"$MSA" version
