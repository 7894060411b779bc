#!/usr/bin/env bash
# Builds libmsa and runs the main job on the embedded default: the tiny demo checkpoint (real Qwen3
# vocabulary, random weights) written by `msa init-model` — no torch, no download.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/deps.sh
MSA_WITH_FUZZ=0 msa_install_deps
JOBS=$(msa_jobs)
echo "== build"
# shellcheck disable=SC2046
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release $(msa_cuda_flag) >/dev/null
cmake --build build/release -j"$JOBS" --target msa_cli
MSA=build/release/bin/msa
TOKDIR="$ROOT/../shared/data/qwen3-tokenizer"
MODEL=build/demo/tiny-model
SEED="${MSA_DEMO_SEED:-42}"
if [[ ! -f "$MODEL/model.safetensors" ]]; then
  echo "== writing the tiny demo checkpoint (seed $SEED)"
  "$MSA" init-model --preset tiny --seed "$SEED" --tokenizer "$TOKDIR" --out "$MODEL"
fi
echo "== msa info"
"$MSA" info --model "$MODEL"
echo "== msa logits (\"<|im_start|>user\\nHello\")"
"$MSA" logits --model "$MODEL" --tokens 151644,872,198,9707
