#!/usr/bin/env bash
# End-to-end test of `msa tokenize` / `msa detokenize` against goldens of Hugging Face tokenizers
# (tests/data/tokenizer/cli_sample.jsonl, written by tools/tokenizer_goldens.py).
# usage: cli_tokenizer.sh <msa binary> <tests/data dir> <build dir>
# The tokenizer: $MSA_TOKENIZER_JSON, else <repo>/../shared/data/qwen3-tokenizer/tokenizer.json.
set -euo pipefail
MSA="$1"
DATA="$2"
WORK="$3/cli_tokenizer"
TOK="${MSA_TOKENIZER_JSON:-$DATA/../../../shared/data/qwen3-tokenizer/tokenizer.json}"
SAMPLE="$DATA/tokenizer/cli_sample.jsonl"
[[ -f "$TOK" ]] || { echo "FAIL: tokenizer not found: $TOK"; exit 1; }
[[ -f "$SAMPLE" ]] || { echo "FAIL: sample not found: $SAMPLE"; exit 1; }
mkdir -p "$WORK"

python3 - "$SAMPLE" "$WORK" <<'PY'
import json, sys
sample, work = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(sample, encoding="utf-8")]
with open(work + "/texts.jsonl", "w", encoding="utf-8") as f:
    for r in recs:
        f.write(json.dumps(r["text"], ensure_ascii=False) + "\n")
with open(work + "/ids.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r["ids"]) + "\n")
PY

"$MSA" tokenize --tokenizer "$TOK" < "$WORK/texts.jsonl" > "$WORK/got_ids.jsonl"
"$MSA" detokenize --tokenizer "$TOK" < "$WORK/ids.jsonl" > "$WORK/got_texts.jsonl"

python3 - "$SAMPLE" "$WORK" <<'PY'
import json, sys
sample, work = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(sample, encoding="utf-8")]
got_ids = [json.loads(l) for l in open(work + "/got_ids.jsonl")]
got_txt = [json.loads(l) for l in open(work + "/got_texts.jsonl", encoding="utf-8")]
bad = 0
if len(got_ids) != len(recs) or len(got_txt) != len(recs):
    print(f"FAIL: {len(recs)} inputs, {len(got_ids)} id lines, {len(got_txt)} text lines")
    sys.exit(1)
for i, r in enumerate(recs):
    if got_ids[i] != r["ids"]:
        bad += 1
        print(f"FAIL tokenize line {i + 1}: {r['text'][:60]!r}: got {got_ids[i][:12]} want {r['ids'][:12]}")
    want = r.get("decoded", r["text"])
    if got_txt[i] != want:
        bad += 1
        print(f"FAIL detokenize line {i + 1}: got {got_txt[i][:60]!r} want {want[:60]!r}")
print(f"cli tokenizer: {len(recs) - bad}/{len(recs)} lines match")
sys.exit(1 if bad else 0)
PY

# Invalid input: message naming the line, exit code 1.
set +e
printf '"ok"\n[1, 2]\n' | "$MSA" tokenize --tokenizer "$TOK" > /dev/null 2> "$WORK/err1.txt"
rc1=$?
printf '[1, 2]\n"text"\n' | "$MSA" detokenize --tokenizer "$TOK" > /dev/null 2> "$WORK/err2.txt"
rc2=$?
printf '[999999999]\n' | "$MSA" detokenize --tokenizer "$TOK" > /dev/null 2> "$WORK/err3.txt"
rc3=$?
set -e
[[ $rc1 -eq 1 ]] && grep -q "line 2" "$WORK/err1.txt" || { echo "FAIL: tokenize bad line: rc=$rc1 $(cat "$WORK/err1.txt")"; exit 1; }
[[ $rc2 -eq 1 ]] && grep -q "line 2" "$WORK/err2.txt" || { echo "FAIL: detokenize bad line: rc=$rc2 $(cat "$WORK/err2.txt")"; exit 1; }
[[ $rc3 -eq 1 ]] && grep -q "line 1" "$WORK/err3.txt" || { echo "FAIL: detokenize bad id: rc=$rc3 $(cat "$WORK/err3.txt")"; exit 1; }
echo "cli tokenizer: invalid lines rejected with their line numbers"
