#!/usr/bin/env bash
# Regenerates every committed tiny model and golden file under tests/data/ -- the only sanctioned way
# to do it. Review the diff (and tools/README.md) before committing new goldens.
#
#   tests/data/models/<name>_bf16/   config.json, generation_config.json, model.safetensors (bf16)
#   tests/data/models/<name>_f32/    the same values stored as f32
#   tests/data/goldens/<name>.safetensors   transformers float32 logits + greedy continuation
#
# Needs: pip install torch transformers safetensors numpy   (CPU only; about a minute)
# The seeds were chosen so that every greedy step has a top1-top2 logit gap >= 0.1 (logit std ~4):
# a different summation order (f32) cannot flip an argmax. --min-gap 0.05 enforces a margin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODELS=tests/data/models
GOLDENS=tests/data/goldens
mkdir -p "$MODELS" "$GOLDENS"

gen() {  # gen NAME ARGS...
  local name=$1
  shift
  python3 tools/make_tiny_checkpoint.py --name "$name" \
    --out "$MODELS/${name}_bf16" --dtype bf16 --twin-out "$MODELS/${name}_f32" \
    --goldens "$GOLDENS/$name.safetensors" --no-tokenizer --force --min-gap 0.05 "$@"
}

# (1) tied embeddings, GQA 2, one router layer, decoupled router, INFONCE_DECOUPLE (scaled dot product).
gen tiny_tied --seed 16 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 --intermediate 128 \
  --vocab 512 --tie --router-layers 1 --pool 4 --aux-loss-method INFONCE_DECOUPLE --decouple-router true

# (2) untied lm_head, head_dim (32) != hidden/heads (16), rope_theta 5e6, two router layers.
gen tiny_untied_hd --seed 7 --layers 3 --hidden 64 --heads 4 --kv-heads 2 --head-dim 32 --intermediate 96 \
  --vocab 384 --no-tie --rope-theta 5e6 --router-layers 1,2 --pool 4 --aux-loss-method INFONCE_DECOUPLE \
  --decouple-router true

# (3) one KV head for 6 query heads, head_dim 8, every layer routes, INFONCE (cosine routing),
#     max_position_embeddings 512, rms_norm_eps 1e-5.
gen tiny_gqa1 --seed 1 --layers 2 --hidden 48 --heads 6 --kv-heads 1 --head-dim 8 --intermediate 80 \
  --vocab 256 --tie --router-layers all --pool 4 --aux-loss-method INFONCE --decouple-router true \
  --max-pos 512 --rms-eps 1e-5

du -shc "$MODELS" "$GOLDENS" && du -sh tests/data   # tests/data must stay small (see tools/README.md)
