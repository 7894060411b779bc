#!/usr/bin/env bash
# Tokenizer benchmark: libmsa vs Hugging Face tokenizers, single thread, same 10 MB mixed corpus, same run.
# usage: benchmarks/run_tokenizer_bench.sh [BUILD_DIR]   (default build/release; configured if needed)
# env:   MSA_TOKENIZER_JSON (default ../shared/data/qwen3-tokenizer/tokenizer.json), CORPUS_MB (10),
#        PEER_REPEAT (2)
# Prints MB/s (1 MB = 10^6 bytes) of both, by wall clock and by CPU time, and the ratios. Record the
# figures in docs/PERFORMANCE.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${1:-build/release}"
TOK="${MSA_TOKENIZER_JSON:-$ROOT/../shared/data/qwen3-tokenizer/tokenizer.json}"
[[ -d "$BUILD" ]] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMSA_CUDA=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_tokenizer >/dev/null
CORPUS="$BUILD/tokenizer_bench_corpus.txt"
python3 benchmarks/tokenizer_peer.py make-corpus "$CORPUS" --mb "${CORPUS_MB:-10}"

OURS="$BUILD/tokenizer_bench_ours.json"
"$BUILD/benchmarks/bench_tokenizer" --tokenizer="$TOK" --corpus="$CORPUS" \
  --benchmark_filter='BM_Encode|BM_Load' --benchmark_format=json > "$OURS"
PEER="$(python3 benchmarks/tokenizer_peer.py measure "$CORPUS" --tokenizer "$TOK" --repeat "${PEER_REPEAT:-2}")"

python3 - "$OURS" "$PEER" "$CORPUS" <<'PY'
import json, os, sys
ours = {b["name"].split("/")[0]: b for b in json.load(open(sys.argv[1]))["benchmarks"]}
peer = json.loads(sys.argv[2])
nbytes = os.path.getsize(sys.argv[3])
def mbs(b, key):  # ms per iteration -> MB/s
    return nbytes / 1e6 / (b[key] / 1e3)
print(f"corpus: {nbytes / 1e6:.2f} MB, single thread; peer: {peer['peer']}")
print(f"{'mode':8} {'libmsa MB/s':>12} {'HF MB/s':>9} {'ratio':>7}   {'libmsa CPU':>10} {'HF CPU':>8} {'ratio':>7}   ids (libmsa / HF)")
ok = True
for mode, bench in (("whole", "BM_EncodeWhole"), ("lines", "BM_EncodeLines")):
    b = ours[bench]
    w, c = mbs(b, "real_time"), mbs(b, "cpu_time")
    pw, pc = peer[mode + "_mb_s"], peer[mode + "_cpu_mb_s"]
    ids = int(b["ids"])
    ok &= ids == peer[mode + "_ids"]
    print(f"{mode:8} {w:12.2f} {pw:9.2f} {w / pw:6.1f}x   {c:10.2f} {pc:8.2f} {c / pc:6.1f}x   {ids} / {peer[mode + '_ids']}")
print(f"tokenizer load: {ours['BM_Load']['real_time']:.0f} ms wall, {ours['BM_Load']['cpu_time']:.0f} ms CPU")
if not ok:
    print("FAIL: the id counts differ")
    sys.exit(1)
PY
