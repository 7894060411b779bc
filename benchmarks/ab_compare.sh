#!/usr/bin/env bash
# A/B performance check of the working tree (head) against an earlier commit (base), CPU only.
#
#   benchmarks/ab_compare.sh [BASE_REV] [OUT_DIR]      (defaults: 9ffd100, build/ab)
#
# 1. Exports BASE_REV with `git archive` into OUT_DIR/base-src (OUT_DIR must be outside the tracked tree or
#    git-ignored; nothing is written into the tree otherwise), links OUT_DIR/shared -> ../shared (the tokenizer
#    data CMake finds at ${PROJECT_SOURCE_DIR}/../shared), and builds two Release trees, OUT_DIR/base and
#    OUT_DIR/head (the working tree as it is), with MSA_CUDA=OFF, no tests, the ccache launcher when ccache
#    exists; targets msa_cli, bench_router, bench_matmul only.
# 2. Runs AB_ROUNDS rounds (default 6, at least 3), base and head alternating (ABBA order, so that a drift in
#    machine load hits both sides alike): bench_router and bench_matmul on a few cases that exist in both
#    versions (JSON output), then end to end through each build's `msa`: `msa encode` of a fixed synthetic
#    corpus (300 documents of 4 demo records each, scripts/make_demo_corpus.py) into a fresh bank, and
#    `msa generate --memory BANK --max-new-tokens 64 --interleave off --temperature 0 --json` over it. The tiny
#    checkpoint (`msa init-model --preset tiny --seed 1`) and the corpus are written once and shared.
# 3. Prints one table (medians, head speed, min-max spread of each side) and writes it to OUT_DIR/ab.md.
#    Speed column: base_time / head_time for times, head_rate / base_rate for rates: > 1 means head is faster.
#
# Idempotent: the export, the builds (ccache, incremental), the checkpoint and the corpus are reused; each run
# re-measures. A benchmark that does not build in one tree is reported as such and the script exits 2 after
# the table. Environment: AB_ROUNDS (6), AB_JOBS (2, build jobs), AB_MIN_TIME (0.5, seconds per benchmark case).
# Needs cmake, a C++17 compiler, the Debian -dev packages of scripts/deps.sh and python3 (standard library);
# no torch, no network. About 1 min per round on an idle 2-core machine, after the builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE_REV="${1:-9ffd100}"
OUT_ARG="${2:-build/ab}"
ROUNDS="${AB_ROUNDS:-6}"
JOBS="${AB_JOBS:-2}"
MIN_TIME="${AB_MIN_TIME:-0.5}"
TARGETS=(msa_cli bench_router bench_matmul)
# Cases present in both versions (benchmark names as Google Benchmark 1.7 prints them).
ROUTER_FILTER='^BM_Score/chunks:(10000|50000)/threads:1/real_time$'
MATMUL_FILTER='^(BM_Gemv/in:2560/out:9728/threads:1|BM_Gemm/in:2560/out:4096/T:64/threads:(1|2))/real_time$'
CORPUS_DOCS=300
RECORDS_PER_DOC=4
PROMPT="Which records mention a lighthouse keeper in Bergen, and what does each of them own?"

die() { echo "ab_compare: $*" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 3 ]] || die "AB_ROUNDS must be an integer >= 3 (got $ROUNDS)"
command -v python3 >/dev/null || die "python3 is needed (standard library only)"
BASE_COMMIT="$(git rev-parse --verify --quiet "${BASE_REV}^{commit}")" || die "unknown revision $BASE_REV"
SHARED="$(cd "$ROOT/../shared" 2>/dev/null && pwd)" || die "$ROOT/../shared (tokenizer data) is missing"
TOKDIR="$SHARED/data/qwen3-tokenizer"
[[ -f "$TOKDIR/tokenizer.json" ]] || die "$TOKDIR/tokenizer.json is missing"

mkdir -p "$OUT_ARG"
OUT="$(cd "$OUT_ARG" && pwd)"
case "$OUT/" in
  "$ROOT/"*) git check-ignore -q "$OUT" || die "$OUT is inside the source tree and not ignored by git" ;;
esac
LOGS="$OUT/logs"
RUNS="$OUT/runs"
mkdir -p "$LOGS"

# ------------------------------------------------------------------------------------------ export + build
if [[ "$(cat "$OUT/base-src/.ab-commit" 2>/dev/null || true)" != "$BASE_COMMIT" ]]; then
  echo "== exporting $BASE_REV ($BASE_COMMIT) to $OUT/base-src"
  rm -rf "$OUT/base-src" "$OUT/base-src.tmp"
  mkdir -p "$OUT/base-src.tmp"
  git archive --format=tar "$BASE_COMMIT" | tar -x -C "$OUT/base-src.tmp"
  echo "$BASE_COMMIT" >"$OUT/base-src.tmp/.ab-commit"
  mv "$OUT/base-src.tmp" "$OUT/base-src"
fi
ln -sfn "$SHARED" "$OUT/shared"  # base-src/../shared, as the working tree sees ../shared

CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DMSA_CUDA=OFF -DMSA_BUILD_TESTS=OFF -DMSA_BUILD_BENCHMARKS=ON
             -DMSA_BUILD_FUZZERS=OFF)
if command -v ccache >/dev/null; then
  CMAKE_FLAGS+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

declare -A MISSING=()  # "side target" -> 1 when the target did not build
build_tree() {  # side source_dir
  local side="$1" src="$2" bld="$OUT/$1" log="$LOGS/build-$1.log" gen=()
  [[ ! -f "$bld/CMakeCache.txt" ]] && command -v ninja >/dev/null && gen=(-G Ninja)
  echo "== building $side ($src) in $bld; log $log"
  : >"$log"
  CCACHE_BASEDIR="$src" cmake -S "$src" -B "$bld" "${gen[@]}" "${CMAKE_FLAGS[@]}" >>"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "configuring $side failed"; }
  local t
  for t in "${TARGETS[@]}"; do
    if ! CCACHE_BASEDIR="$src" cmake --build "$bld" -j "$JOBS" --target "$t" >>"$log" 2>&1; then
      [[ "$t" == msa_cli ]] && { tail -n 40 "$log" >&2; die "msa_cli of $side does not build"; }
      echo "   WARNING: $t does not build in $side (its rows are left out; errors in $log)" >&2
      grep -m 5 -E 'error|Error' "$log" | sed 's/^/     /' >&2 || true
      MISSING["$side $t"]=1
    fi
  done
}
build_tree base "$OUT/base-src"
build_tree head "$ROOT"

# ------------------------------------------------------------------------------------ checkpoint + corpus
MODEL="$OUT/tiny-model"
CORPUS="$OUT/corpus.jsonl"
if [[ ! -f "$MODEL/model.safetensors" ]]; then
  echo "== writing the tiny checkpoint (seed 1) to $MODEL"
  rm -rf "$MODEL" "$MODEL.tmp"
  "$OUT/base/bin/msa" init-model --preset tiny --seed 1 --tokenizer "$TOKDIR" --out "$MODEL.tmp" >/dev/null
  mv "$MODEL.tmp" "$MODEL"
fi
if [[ ! -f "$CORPUS" ]]; then
  echo "== writing the corpus ($CORPUS_DOCS documents of $RECORDS_PER_DOC demo records) to $CORPUS"
  python3 -B scripts/make_demo_corpus.py --records $((CORPUS_DOCS * RECORDS_PER_DOC)) --out "$CORPUS.records"
  python3 - "$CORPUS.records" "$CORPUS.tmp" "$RECORDS_PER_DOC" <<'EOF'
import json, sys
src, dst, per = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
with open(dst, "w", encoding="utf-8") as f:
    for d in range(len(texts) // per):
        f.write(json.dumps({"id": d, "text": " ".join(texts[d * per:(d + 1) * per])}, ensure_ascii=False) + "\n")
EOF
  rm -f "$CORPUS.records"
  mv "$CORPUS.tmp" "$CORPUS"
fi

# ------------------------------------------------------------------------------------------------ runs
rm -rf "$RUNS"
mkdir -p "$RUNS"
run_bench() {  # side round name filter
  local side="$1" r="$2" name="$3" filter="$4"
  [[ -n "${MISSING["$side $name"]:-}" ]] && return 0
  "$OUT/$side/benchmarks/$name" --benchmark_filter="$filter" --benchmark_min_time="$MIN_TIME" \
    --benchmark_out="$RUNS/$side-$r-$name.json" --benchmark_out_format=json >"$RUNS/$side-$r-$name.log" 2>&1 ||
    { tail -n 20 "$RUNS/$side-$r-$name.log" >&2; die "$side $name failed (round $r)"; }
}
timed() {  # log command...: runs the command with its output in log, then appends "wall_s W cpu_s C" (all threads)
  python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
with open(sys.argv[1], "w") as log:
    t0 = time.monotonic()
    rc = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    log.write(f"wall_s {time.monotonic() - t0:.4f} cpu_s {ru.ru_utime + ru.ru_stime:.4f}\n")
sys.exit(rc)
EOF
}
run_side() {  # side round
  local side="$1" r="$2" msa="$OUT/$1/bin/msa" bank="$RUNS/bank-$1"
  run_bench "$side" "$r" bench_router "$ROUTER_FILTER"
  run_bench "$side" "$r" bench_matmul "$MATMUL_FILTER"
  rm -rf "$bank"
  timed "$RUNS/$side-$r-encode.log" "$msa" encode --model "$MODEL" --docs "$CORPUS" --out "$bank" ||
    { tail -n 20 "$RUNS/$side-$r-encode.log" >&2; die "$side msa encode failed (round $r)"; }
  "$msa" generate --model "$MODEL" --memory "$bank" --prompt "$PROMPT" --max-new-tokens 64 --interleave off \
    --temperature 0 --json >"$RUNS/$side-$r-generate.json" 2>"$RUNS/$side-$r-generate.log" ||
    { tail -n 20 "$RUNS/$side-$r-generate.log" >&2; die "$side msa generate failed (round $r)"; }
}
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date +%s)"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=(base head); else order=(head base); fi
  for side in "${order[@]}"; do
    echo "== round $r/$ROUNDS: $side"
    run_side "$side" "$r"
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ----------------------------------------------------------------------------------------------- table
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
DIRTY="$(git status --porcelain --untracked-files=normal | wc -l)"
AB_HEADER="A/B: base $BASE_REV (${BASE_COMMIT:0:12}) vs head $(git rev-parse --short=12 HEAD) + working \
tree ($DIRTY paths changed); $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs, $CPU; load average $LOAD_BEFORE before, \
$LOAD_AFTER after; $ROUNDS rounds, ABBA order; measuring took $(($(date +%s) - START)) s"
AB_MISSING="${!MISSING[*]}"
export AB_HEADER AB_MISSING
python3 - "$RUNS" "$ROUNDS" "$OUT/ab.md" <<'EOF'
import glob, json, os, re, statistics, sys

runs, rounds, out_md = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SCALE = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}  # -> ms
# (row label, unit, lower is better) per benchmark case.
CASES = {
    "BM_Score/chunks:10000/threads:1/real_time": "router score, 10k chunks, 1 thread (head mean)",
    "BM_Score/chunks:50000/threads:1/real_time": "router score, 50k chunks, 1 thread (head mean)",
    "BM_Gemv/in:2560/out:9728/threads:1/real_time": "matmul GEMV T=1 2560->9728 bf16, 1 thread",
    "BM_Gemm/in:2560/out:4096/T:64/threads:1/real_time": "matmul GEMM T=64 2560->4096 bf16, 1 thread",
    "BM_Gemm/in:2560/out:4096/T:64/threads:2/real_time": "matmul GEMM T=64 2560->4096 bf16, 2 threads",
}
rows = {}  # label -> {"unit", "lower", "base": [], "head": []}

def add(label, unit, lower, side, value):
    row = rows.setdefault(label, {"unit": unit, "lower": lower, "base": [], "head": []})
    row[side].append(value)

tokens = {"base": set(), "head": set()}
for side in ("base", "head"):
    for r in range(1, rounds + 1):
        for bench in ("bench_router", "bench_matmul"):
            path = f"{runs}/{side}-{r}-{bench}.json"
            if not os.path.exists(path):
                continue
            for b in json.load(open(path))["benchmarks"]:
                if b.get("run_type", "iteration") == "iteration" and b["name"] in CASES:
                    add(CASES[b["name"]], "ms", True, side, b["real_time"] * SCALE[b["time_unit"]])
        log = open(f"{runs}/{side}-{r}-encode.log").read()
        m = re.search(r"encoded (\d+) documents, (\d+) tokens in [\d.]+ s \((\d+) tokens/s\)", log)
        if not m:
            sys.exit(f"no throughput line in {runs}/{side}-{r}-encode.log")
        enc = f"msa encode, {m.group(1)} docs / {m.group(2)} tokens"
        add(enc + " (encode loop)", "tokens/s", False, side, float(m.group(3)))
        m = re.search(r"wall_s ([\d.]+) cpu_s ([\d.]+)", log)
        add(enc + " (process wall)", "s", True, side, float(m.group(1)))
        add(enc + " (process CPU, all threads)", "s", True, side, float(m.group(2)))
        g = json.load(open(f"{runs}/{side}-{r}-generate.json"))
        t = g["timings"]
        add(f"msa generate: prefill ({t['prompt_tokens']} prompt tokens)", "ms", True, side, t["prefill_ms"])
        add("msa generate: time to first token", "ms", True, side, t["ttft_ms"])
        add(f"msa generate: decode ({t['generated_tokens']} tokens)", "tokens/s", False, side,
            t["decode_tokens_per_s"])
        tokens[side].add(tuple(g["tokens"]))

def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"

lines = [os.environ["AB_HEADER"], "",
         "| metric | unit | base median | head median | head speed (x) | base min-max | head min-max "
         "| head faster in | note |",
         "|---|---|---|---|---|---|---|---|---|"]
for label, row in rows.items():
    b, h = row["base"], row["head"]
    if not b or not h:
        lines.append(f"| {label} | {row['unit']} | {fmt(statistics.median(b)) if b else 'n/a'} | "
                     f"{fmt(statistics.median(h)) if h else 'n/a'} | n/a | | | | missing on one side |")
        continue
    mb, mh = statistics.median(b), statistics.median(h)
    speed = mb / mh if row["lower"] else mh / mb
    # Rounds in which head beat the base run next to it in time (the pairs see about the same machine load).
    wins = sum(1 for x, y in zip(b, h) if (y < x if row["lower"] else y > x))
    n = min(len(b), len(h))
    # A difference counts when it is over 3 % and either the min-max ranges are disjoint or every round agrees.
    disjoint = max(b) < min(h) or max(h) < min(b)
    note = ""
    if speed < 0.97:
        note = "head slower" if disjoint or wins == 0 else "within noise"
    elif speed > 1.03:
        note = "head faster" if disjoint or wins == n else "within noise"
    lines.append(f"| {label} | {row['unit']} | {fmt(mb)} | {fmt(mh)} | **{speed:.3f}** | "
                 f"{fmt(min(b))}-{fmt(max(b))} | {fmt(min(h))}-{fmt(max(h))} | {wins}/{n} rounds | {note} |")
lines += ["", "head speed = base/head for times (ms, s), head/base for rates (tokens/s): > 1 means head is faster. "
          f"Medians over {rounds} runs per side. Note: a difference over 3 % with disjoint min-max ranges or the same "
          "direction in every round; otherwise within noise."]
same = tokens["base"] == tokens["head"] and len(tokens["base"]) == 1
lines.append("Generated tokens (greedy): " + ("identical in every base and head run." if same else
             f"DIFFER ({len(tokens['base'])} distinct in base runs, {len(tokens['head'])} in head runs)."))
if os.environ.get("AB_MISSING"):
    lines.append(f"Not built (rows left out): {os.environ['AB_MISSING']}.")
text = "\n".join(lines) + "\n"
open(out_md, "w").write(text)
print(text, end="")
EOF
echo "(written to $OUT/ab.md; raw results in $RUNS)"
if ((${#MISSING[@]})); then
  echo "ab_compare: incomplete: ${!MISSING[*]} did not build" >&2
  exit 2
fi
