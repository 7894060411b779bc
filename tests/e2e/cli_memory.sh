#!/usr/bin/env bash
# End-to-end through the msa CLI: encode a bank (resumable, committed every N documents), route and generate
# from it (identical to --docs with the same pages), memory info/verify without a model, add / rm / compact,
# msa info --memory (bytes per tier), --device on the commands that load a model, and clear errors on corruption
# and on a bank of another model.
# usage: cli_memory.sh <msa binary> <tests/data dir> <build dir>
set -euo pipefail
MSA="$1"; DATA="$2"; WORK="$3/cli_memory"
SHARED="$(cd "$DATA/../../../shared" 2>/dev/null && pwd || true)"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }

"$MSA" init-model --preset micro --seed 3 --tokenizer "$SHARED/data/qwen3-tokenizer" --out "$WORK/micro" >/dev/null
"$MSA" init-model --preset micro --seed 4 --tokenizer "$SHARED/data/qwen3-tokenizer" --out "$WORK/other" >/dev/null
cat > "$WORK/docs.jsonl" <<'DOCS'
{"id": 10, "text": "The Eiffel Tower is in Paris and was completed in 1889."}
{"id": 11, "text": "Photosynthesis converts light energy into chemical energy."}
{"id": 12, "text": "Mount Everest is the highest mountain above sea level."}
{"id": 13, "text": "The Great Wall of China is thousands of kilometres long."}
{"id": 14, "text": "Water boils at 100 degrees Celsius at sea level."}
DOCS
head -n 2 "$WORK/docs.jsonl" > "$WORK/first2.jsonl"
printf '{"id": 20, "text": "Honey never spoils."}\n' > "$WORK/more.jsonl"

# An "interrupted" encode (only the first two documents), then the full file: it resumes after them.
"$MSA" encode --model "$WORK/micro" --docs "$WORK/first2.jsonl" --out "$WORK/bank" --dtype int8 --commit-every 1 --quiet
out=$("$MSA" encode --model "$WORK/micro" --docs "$WORK/docs.jsonl" --out "$WORK/bank" --commit-every 2 \
      --device cpu 2>&1)
grep -q "2 of 5 documents are already in the bank" <<<"$out" || fail "encode did not resume: $out"
info=$("$MSA" memory info "$WORK/bank" --json)
grep -q '"documents": 5' <<<"$info" || fail "info: documents: $info"
grep -q '"page_dtype": "int8"' <<<"$info" || fail "info: dtype: $info"
grep -q '"segments": 5' <<<"$info" || fail "info: one empty + 2 + 2 committed segments expected: $info"
"$MSA" memory info "$WORK/bank" | grep -q "routing keys" || fail "info (text)"
"$MSA" memory verify "$WORK/bank" | grep -q "OK" || fail "verify"

# msa info --memory: where the model runs and the bank's bytes per tier; content pages and texts as memory info
# reads them from the files (an opened bank leaves every content page in its mapped segment files).
info=$("$MSA" info --model "$WORK/micro" --device cpu --memory "$WORK/bank")
tier() { sed -n "s/^$1: *\([0-9][0-9]*\) ([0-9.]* [KMG]*i*B).*/\1/p" <<<"$info"; }
jnum() { grep -o "\"$1\": [0-9]*" <<<"$2" | grep -o '[0-9]*$'; }
for line in "routing index in RAM" "routing index on device" "content pages in RAM" "content pages in files" "texts"; do
  [[ -n $(tier "$line") ]] || fail "info --memory: no '$line' line: $info"
done
grep -q "^memory bank: *$WORK/bank (5 documents" <<<"$info" || fail "info --memory: bank line: $info"
finfo=$("$MSA" memory info "$WORK/bank" --json)
[[ $(tier "routing index in RAM") -gt 0 ]] || fail "routing tier: $info"
[[ $(( $(tier "content pages in RAM") + $(tier "content pages in files") )) -eq $(jnum content_bytes "$finfo") ]] ||
  fail "content tiers: $info vs $finfo"
[[ $(tier "texts") -eq $(jnum text_bytes "$finfo") ]] || fail "texts: $info vs $finfo"
backend=$(sed -n 's/^backend: *//p' <<<"$info")
case "$backend" in
  cpu-avx2|cpu-scalar)
    [[ $(tier "routing index on device") -eq 0 ]] && grep -q "scans the RAM copy in place" <<<"$info" ||
      fail "the $backend backend holds no device copy of the routing index: $info" ;;
esac

# --device on the commands that load a model: cpu works; cuda fails cleanly on this machine (no GPU:
# MSA_ERR_NO_DEVICE, a build without CUDA: MSA_ERR_UNSUPPORTED) and changes nothing; bad forms are usage errors.
g=$("$MSA" generate --model "$WORK/micro" --memory "$WORK/bank" --prompt "Where is the Eiffel Tower?" --device cpu \
      --max-new-tokens 2 --temperature 0 --interleave off --json 2>/dev/null)
grep -q "\"backend\": \"$backend\"" <<<"$g" && grep -q '"device_weight_bytes"' <<<"$g" ||
  fail "generate --json: model: $g"
grep -q '"routing_device_bytes"' <<<"$g" && grep -q '"content_file_bytes"' <<<"$g" || fail "generate --json: tiers: $g"
"$MSA" route --model "$WORK/micro" --memory "$WORK/bank" --prompt "x" --device cpu --json | grep -q '"backend"' ||
  fail "route --device cpu --json"
for cmd in "route --model $WORK/micro --memory $WORK/bank --prompt x" "memory rm $WORK/bank --model $WORK/micro 10" \
           "encode --model $WORK/micro --docs $WORK/more.jsonl --out $WORK/gpubank"; do
  set +e
  err=$("$MSA" $cmd --device cuda 2>&1); rc=$?
  set -e
  if [[ $rc -ne 0 || $cmd != route* ]]; then  # only a read may succeed (on a GPU machine with a CUDA build)
    [[ $rc -eq 1 ]] && grep -Eq "MSA_ERR_(NO_DEVICE|UNSUPPORTED)" <<<"$err" || fail "$cmd --device cuda: exit $rc: $err"
  fi
done
[[ -e "$WORK/gpubank" ]] && fail "encode --device cuda created a bank"
grep -q '"removed": 0' <<<"$("$MSA" memory info "$WORK/bank" --json)" || fail "rm --device cuda changed the bank"
for dev in gpu cuda:-1 cuda:x; do
  for cmd in "encode --model $WORK/micro --docs $WORK/more.jsonl --out $WORK/gpubank" \
             "generate --model $WORK/micro --prompt x" "memory compact $WORK/bank --model $WORK/micro" \
             "memory add $WORK/bank --model $WORK/micro --docs $WORK/more.jsonl"; do
    set +e
    err=$("$MSA" $cmd --device "$dev" 2>&1 >/dev/null); rc=$?
    set -e
    [[ $rc -eq 2 ]] && grep -q "cpu, cuda or cuda:N" <<<"$err" || fail "$cmd --device $dev: exit $rc: $err"
  done
done
set +e
"$MSA" memory info "$WORK/bank" --device cpu >/dev/null 2>&1; rc=$?
set -e
[[ $rc -eq 2 ]] || fail "memory info takes no --device (no model): exit $rc"
# --dtype cannot change on resume.
set +e
err=$("$MSA" encode --model "$WORK/micro" --docs "$WORK/docs.jsonl" --out "$WORK/bank" --dtype bf16 2>&1); rc=$?
set -e
[[ $rc -ne 0 ]] && grep -q "int8" <<<"$err" || fail "dtype change on resume accepted: $err"

# route from the bank == route after encoding the same documents with f32 pages into a fresh bank is not
# comparable (dtype); compare bank to bank: the same bank opened twice, and a compacted copy.
r1=$("$MSA" route --model "$WORK/micro" --memory "$WORK/bank" --prompt "Where is the Eiffel Tower?" --top-k 3 --json)
grep -q '"ids"' <<<"$r1" || fail "route --memory: $r1"
g1=$("$MSA" generate --model "$WORK/micro" --memory "$WORK/bank" --prompt "Where is the Eiffel Tower?" \
      --max-new-tokens 4 --temperature 0 --interleave off --json)
grep -q '"tokens"' <<<"$g1" || fail "generate --memory: $g1"

# add / rm / compact.
"$MSA" memory add "$WORK/bank" --model "$WORK/micro" --docs "$WORK/more.jsonl" --device cpu >/dev/null 2>&1 ||
  fail "memory add"
"$MSA" memory rm "$WORK/bank" --model "$WORK/micro" 12 13 >/dev/null 2>&1 || fail "memory rm"
info=$("$MSA" memory info "$WORK/bank" --json)
grep -q '"documents": 4' <<<"$info" && grep -q '"removed": 2' <<<"$info" || fail "after rm: $info"
r2=$("$MSA" route --model "$WORK/micro" --memory "$WORK/bank" --prompt "Where is the Eiffel Tower?" --top-k 16 --json)
grep -Eq '(^|[^0-9])1[23]([^0-9]|$)' <<<"$(tr -d ' \n' <<<"$r2" | grep -o '"ids":\[[^]]*\]')" && fail "removed ids routed: $r2"
"$MSA" memory compact "$WORK/bank" --model "$WORK/micro" >/dev/null 2>&1 || fail "memory compact"
info=$("$MSA" memory info "$WORK/bank" --json)
grep -q '"removed": 0' <<<"$info" && grep -q '"segments": 1' <<<"$info" || fail "after compact: $info"
r3=$("$MSA" route --model "$WORK/micro" --memory "$WORK/bank" --prompt "Where is the Eiffel Tower?" --top-k 16 --json)
[[ "$r2" == "$r3" ]] || fail "compact changed routing: $r2 vs $r3"

# One writer per bank: while another process holds BANK/LOCK (here flock(1), the same flock(2) lock the library
# takes), a write is refused with MSA_ERR_BUSY naming the bank and nothing changes; reading still works.
if command -v flock >/dev/null 2>&1; then
  set +e
  err=$(flock -n "$WORK/bank/LOCK" "$MSA" memory rm "$WORK/bank" --model "$WORK/micro" 10 2>&1); rc=$?
  set -e
  [[ $rc -eq 1 ]] && grep -q "MSA_ERR_BUSY" <<<"$err" && grep -q "$WORK/bank" <<<"$err" || fail "second writer: $err"
  flock -n "$WORK/bank/LOCK" "$MSA" memory verify "$WORK/bank" >/dev/null || fail "reading a locked bank"
  info=$("$MSA" memory info "$WORK/bank" --json)
  grep -q '"removed": 0' <<<"$info" || fail "a refused writer changed the bank: $info"
  ls "$WORK/bank" | grep -q '\.tmp$' && fail "temporary files left: $(ls "$WORK/bank")"
else
  echo "cli_memory: flock(1) not installed, writer lock check skipped"
fi

# Another model: refused, naming the field.
set +e
err=$("$MSA" route --model "$WORK/other" --memory "$WORK/bank" --prompt "x" 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "weights_digest" <<<"$err" || fail "other model accepted or field not named: $err"

# Corruption: a flipped byte in the segment -> verify exits 1 naming the file and the section.
seg=$(ls "$WORK/bank"/seg-*.msaseg | head -n 1)
size=$(stat -c %s "$seg")
printf '\xff' | dd of="$seg" bs=1 seek=$((size - 9)) conv=notrunc 2>/dev/null
set +e
err=$("$MSA" memory verify "$WORK/bank" 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] || fail "verify of a corrupt bank: exit $rc"
grep -q "MSA_ERR_CORRUPT" <<<"$err" && grep -q "$(basename "$seg")" <<<"$err" || fail "verify message: $err"
truncate -s $((size / 2)) "$seg"
set +e
err=$("$MSA" memory info "$WORK/bank" 2>&1); rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "MSA_ERR_TRUNCATED" <<<"$err" || fail "truncated bank: $err"
echo "cli_memory: OK"
