#!/usr/bin/env python3
"""Peer of benchmarks/bench_tokenizer.cpp: Hugging Face `tokenizers` on the same corpus, single thread.

  tokenizer_peer.py make-corpus OUT [--mb 10]     write the mixed benchmark corpus (deterministic)
  tokenizer_peer.py measure CORPUS --tokenizer F  print one JSON line: MB/s of HF tokenizers

The corpus mixes real code and English (this Python's standard library sources), the project's
Markdown docs, and the multilingual sentences, emoji, numbers and code of tools/tokenizer_goldens.py.
Measurement: encode_batch on the whole text (one string) and on its lines, best of --repeat runs (wall clock and process
CPU time) after a warm-up run, with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1 (one thread).
"""
import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

import argparse
import glob
import json
import random
import sys
import sysconfig
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_corpus(out, mb):
    target = int(mb * 1_000_000)
    rng = random.Random(7)
    # 40%: code and English comments/docstrings of the standard library (sorted, deterministic).
    code = []
    n = 0
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            t = f.read()
        code.append(t)
        n += len(t.encode())
        if n > target * 0.4:
            break
    # 10%: Markdown prose (repeated as needed).
    docs = []
    for pattern in ("../shared/docs/*.md", "docs/*.md", "README.md"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path, encoding="utf-8") as f:
                docs.append(f.read())
    prose = []
    n = 0
    while docs and n < target * 0.1:
        for d in docs:
            prose.append(d)
            n += len(d.encode())
    # 50%: multilingual sentences, emoji, numbers, code snippets, contractions (goldens corpus, no
    # synthetic 100 KB strings and no random noise).
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import tokenizer_goldens as tg

    keep = {"english", "chinese", "japanese", "korean", "arabic", "hebrew", "cyrillic", "greek", "devanagari",
            "thai", "other", "emoji", "code", "numbers", "contractions", "special", "nfc"}
    items = [t for c, t in tg.build_corpus(random.Random(20240601)) if c in keep]
    multi = []
    n = 0
    while n < target - sum(len(x.encode()) for x in code + prose):
        t = rng.choice(items)
        multi.append(t)
        n += len(t.encode()) + 1
    parts = code + prose + ["\n".join(multi)]
    text = "\n".join(parts).encode()[:target].decode("utf-8", "ignore")
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print(f"wrote {out}: {len(text.encode()) / 1e6:.2f} MB")


def measure(corpus, tokenizer, repeat):
    from tokenizers import Tokenizer
    import tokenizers

    tok = Tokenizer.from_file(tokenizer)
    with open(corpus, encoding="utf-8", newline="") as f:
        text = f.read()
    nbytes = len(text.encode())
    lines = text.splitlines(keepends=True)
    res = {"peer": f"tokenizers {tokenizers.__version__}", "bytes": nbytes}
    for name, batch in (("whole", [text]), ("lines", lines)):
        tok.encode_batch(batch, add_special_tokens=False)  # warm-up (fills HF's word cache)
        best = best_cpu = None
        ids = 0
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            enc = tok.encode_batch(batch, add_special_tokens=False)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            best = dt if best is None else min(best, dt)
            best_cpu = dc if best_cpu is None else min(best_cpu, dc)
            ids = sum(len(e.ids) for e in enc)
        res[name + "_mb_s"] = nbytes / 1e6 / best          # wall clock
        res[name + "_cpu_mb_s"] = nbytes / 1e6 / best_cpu  # process CPU time (robust on a busy machine)
        res[name + "_ids"] = ids
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-corpus")
    m.add_argument("out")
    m.add_argument("--mb", type=float, default=10)
    s = sub.add_parser("measure")
    s.add_argument("corpus")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "make-corpus":
        make_corpus(a.out, a.mb)
    else:
        measure(a.corpus, a.tokenizer, a.repeat)


if __name__ == "__main__":
    main()
