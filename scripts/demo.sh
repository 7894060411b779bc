#!/usr/bin/env bash
# Builds libmsa and runs the main job on the embedded default: the tiny demo checkpoint (real Qwen3
# vocabulary, random weights) written by `msa init-model` — no torch, no download — then the main job:
# encode a deterministic 1.37M-token corpus into a memory bank saved on disk (bf16 pages), open it and answer
# a question over it with MSA routing (per-layer retrieved documents, generated text, memory tier sizes and
# timings are printed).
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

echo "== the main job: encode a 1.37M-token corpus into a memory bank on disk, ask a question over it"
CORPUS=build/demo/corpus.jsonl
BANK=build/demo/bank
[[ -f "$CORPUS" ]] || python3 scripts/make_demo_corpus.py --records 17000 --out "$CORPUS"
# Resumable: an interrupted encode continues from the last committed segment; a complete bank is reused.
"$MSA" encode --model "$MODEL" --docs "$CORPUS" --out "$BANK"
echo "== msa memory info"
"$MSA" memory info "$BANK"
echo "== msa generate over the bank"
"$MSA" generate --model "$MODEL" --memory "$BANK" --top-k 16 --max-new-tokens 48 --temperature 0 \
  --prompt "What is the secret launch code of the Aurora project?"
