#!/usr/bin/env python3
"""Independent float32 PyTorch reference of MSA inference (stages 1-3 and Memory Interleave) + goldens.

Written from docs MSA_SPEC.md Part B §1-§6 with the Part A decisions applied -- not from libmsa's C++ and
not from the reference repository's code. It reads a checkpoint written by libmsa's own
``msa init-model --preset micro`` (the real Qwen3 vocabulary, so documents are tokenised with the real
tokenizer), computes every stage in float32 from the bf16 weights (no bf16 rounding of activations: Part
A "CPU computes in f32 from bf16 weights") and writes, per configuration,
``tests/data/msa_goldens/<config>.safetensors`` plus a JSON sidecar ``<config>.json``.

What is computed (names of the golden tensors in brackets; see tools/README.md for the full table):

* Stage 1 (§3.2, §4): every document ``d`` (corpus index = its id) is formatted as
  ``<|im_start|>[d]. text[d]<|im_end|>``, tokenised without added special tokens, and run alone through the
  model (causal, RoPE positions 0..n-1). At every router layer the keys after k_norm and RoPE, the raw
  values and -- with ``decouple_router`` -- ``router_k_proj(a)`` are mean-pooled per chunk of P tokens
  (partial last chunk; Part A: each chunk summed on its own in f32, token order, then divided by its
  count) [stage1.*]. The routing keys are K̄ᴿ (decoupled) or K̄ (not decoupled), L2-normalised per (chunk,
  head) exactly when ``aux_loss_method == "INFONCE"``. The template prefix ``[151644, 872, 198]`` at
  positions 0..2 gives the K/V of every layer [template.*].
* Stage 2 (§3.3, §3.5, §5): the question block + ``<|im_end|>\\n<|im_start|>`` at positions
  ``3 + doc_top_k + i``; at each router layer, before attention, the router queries of the routing tokens
  (``router_q_proj(a)`` when decoupled, else q after q_norm+RoPE; L2-normalised iff INFONCE; times
  ``head_dim**-0.5`` unless INFONCE with a decoupled router) are scored against every chunk, reduced
  head -> query -> chunk, every document's score is kept, the top ``k = min(doc_top_k, n_docs)`` by
  (score desc, id asc) are selected and ALL their chunks, documents in ascending id, are put between the
  3 template rows and the query rows. Non-router layers see [template; query]. Causal, bottom-right
  aligned [query{j}.*].
* Stage 3 (§6.1, §6.2): greedy decoding over that compacted cache, positions continuing, 32 steps, EOS
  does not stop it (the first EOS index, if any, is recorded) [query{j}.greedy*].
* Memory Interleave (§6.3, §6.4, Part A), one scripted run: a random model does not emit the protocol,
  so the outputs of the retrieval rounds are FORCED (round 1: ids then ``<|object_ref_end|>``; round 2:
  ``<End-of-Retrieve>``) and the script records what the protocol builds from them: the injected text,
  the re-encoded next prompt with its routing-token mask (§6.4 regions, counted by tokenising substrings),
  the round-2 routing, the question restatement and a greedy answer [interleave.*].

Usage (normally through tools/make_msa_goldens.sh):

    python3 tools/msa_reference.py --msa-bin build/oracle/bin/msa --work-dir /tmp/msa_ckpts \\
        --out tests/data/msa_goldens [--config a_default ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors
import tokenizers
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER_DIR = ROOT.parent / "shared" / "data" / "qwen3-tokenizer"
TOKENIZER_PLACEHOLDER = "$TOKENIZER_DIR"   # in the recorded init-model command
OUT_PLACEHOLDER = "$OUT_DIR"

IM_START, IM_END, OBJ_REF_END, ENDOFTEXT = 151644, 151645, 151647, 151643
TEMPLATE_HEAD = [151644, 872, 198]  # "<|im_start|>user\n" (§3.1)
QUERY_PREFIX = "\nPlease answer the question based on the above historical document information\n\n"
QUERY_SUFFIX = "\nPlease return all documents related to the question\n"
TEMPLATE_TAIL_TEXT = "<|im_end|>\n"
RESPONSE_HEAD_TEXT = "<|im_start|>"
ROUND_END = "<|object_ref_end|>"
END_OF_RETRIEVE = "<End-of-Retrieve>"
ANSWER_MARKER = "The answer to the question is:"
QUESTION_BLOCK_START = "\nPlease answer the question based"
QUESTION_ANCHOR = "Please return all documents related to the question"

DOC_TOP_K = 4          # k; min(k, n_docs) documents per router layer
GREEDY_STEPS = 32      # stage-3 continuation length
ANSWER_STEPS = 16      # interleave: greedy answer tokens after the question restatement
LOGIT_TOP = 64         # stored top logits per first step
LOGIT_SAMPLE = 1024    # stored logits at fixed pseudo-random ids (same ids for every query)
MIN_GREEDY_GAP = 1e-3  # fail below this top1-top2 gap (the golden would be fragile)
MIN_BOUNDARY_GAP = 1e-3  # fail when the k-th and (k+1)-th scores are closer than this (relative to the max |score|)

# ---------------------------------------------------------------------------------------------------------
# corpus: 12 short documents of various lengths (partial last chunks with P = 4), one with CJK and emoji,
# and 4 questions. The document id is its index.

DOCUMENTS = [
    "The Amsterdam canal ring was dug in the seventeenth century and is lined with narrow merchant houses.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "In 1939 the first commercial transatlantic passenger flight crossed from New York to Marseille. "
    "It carried twenty-two passengers and took about a day with stops on the way.",
    "Basalt is a dark volcanic rock.",
    "The recipe needs three eggs, two cups of flour, a pinch of salt and a little butter. "
    "Bake it for forty minutes.",
    "東京タワーは1958年に完成した電波塔です。高さは333メートル 🗼✨ and it is painted orange and white.",
    "Honeybees communicate the direction of flowers with a waggle dance inside the hive.",
    "The violin has four strings tuned in fifths: G, D, A and E.",
    "A leap year has 366 days; February then has 29 days instead of 28.",
    "Mount Kilimanjaro in Tanzania is the highest mountain in Africa, about 5,895 metres above sea level, "
    "and its summit glaciers have been shrinking for a century.",
    "Rust guarantees memory safety without a garbage collector by checking ownership at compile time.",
    "Jupiter is the largest planet of the solar system.",
]

QUERIES = [
    "When did the first transatlantic passenger flight happen?",
    "How tall is Tokyo Tower?",
    "Which instrument has strings tuned in fifths?",
    "What is the highest mountain in Africa?",
]

# Interleave: the scripted (forced) model outputs of the two retrieval rounds. 42 is not a corpus id and is
# dropped by the injection; the ids are out of order on purpose (the injection sorts them).
INTERLEAVE_QUERY = 0
FORCED_ROUND1 = "[7][2][42]<|object_ref_end|>"
FORCED_ROUND2 = "<End-of-Retrieve>"


@dataclass
class GoldenConfig:
    """One golden configuration: init-model seed and msa_config overrides."""
    name: str
    seed: int
    msa_overrides: dict
    what: str
    interleave: bool = False


CONFIGS = [
    GoldenConfig("a_default", 2, {},
                 "defaults: INFONCE_DECOUPLE (scaled dot product of un-normalised K̄ᴿ), head mean, query max, "
                 "chunk max, router layer 1", interleave=True),
    GoldenConfig("b_cosine", 7, {"aux_loss_method": "INFONCE", "decouple_router": True,
                                 "head_reduce_method": "max", "query_reduce_method": "mean",
                                 "chunk_reduce_method": "mean"},
                 "INFONCE + decoupled router: cosine routing (both sides normalised, no scale), head max, "
                 "query mean, chunk mean"),
    GoldenConfig("c_all_layers", 3, {"aux_loss_method": "INFONCE_DECOUPLE", "head_reduce_method": "max",
                                     "query_reduce_method": "last", "chunk_reduce_method": "max",
                                     "router_layer_idx": "all"},
                 "INFONCE_DECOUPLE, head max, query last, chunk max, every layer routes"),
    GoldenConfig("d_attn_infonce", 4, {"decouple_router": False, "aux_loss_method": "INFONCE",
                                       "head_reduce_method": "mean", "query_reduce_method": "mean",
                                       "chunk_reduce_method": "max"},
                 "no router projections, INFONCE: normalised attention q vs normalised pooled K̄, "
                 "scale head_dim^-0.5, head mean, query mean, chunk max"),
    GoldenConfig("e_attn_decouple", 5, {"decouple_router": False, "aux_loss_method": "INFONCE_DECOUPLE",
                                        "head_reduce_method": "max", "query_reduce_method": "max",
                                        "chunk_reduce_method": "mean"},
                 "no router projections, INFONCE_DECOUPLE: un-normalised attention q vs K̄, scaled, "
                 "head max, query max, chunk mean"),
]


# ---------------------------------------------------------------------------------------------------------
# small utilities


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 (Yann Collet's xxHash, 64-bit variant), pure Python; equals XXH64() of <xxhash.h>."""
    p1, p2, p3, p4, p5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                          0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
    mask = (1 << 64) - 1

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & mask

    def rnd(acc: int, lane: int) -> int:
        acc = (acc + lane * p2) & mask
        return (rotl(acc, 31) * p1) & mask

    def merge(acc: int, val: int) -> int:
        acc ^= rnd(0, val)
        return (acc * p1 + p4) & mask

    n = len(data)
    i = 0
    if n >= 32:
        v1, v2, v3, v4 = (seed + p1 + p2) & mask, (seed + p2) & mask, seed & mask, (seed - p1) & mask
        lanes = np.frombuffer(data, dtype="<u8", count=(n // 32) * 4).tolist()
        for j in range(0, len(lanes), 4):
            v1 = rnd(v1, lanes[j])
            v2 = rnd(v2, lanes[j + 1])
            v3 = rnd(v3, lanes[j + 2])
            v4 = rnd(v4, lanes[j + 3])
        i = (n // 32) * 32
        h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & mask
        for v in (v1, v2, v3, v4):
            h = merge(h, v)
    else:
        h = (seed + p5) & mask
    h = (h + n) & mask
    while i + 8 <= n:
        k1 = rnd(0, int.from_bytes(data[i:i + 8], "little"))
        h = (rotl(h ^ k1, 27) * p1 + p4) & mask
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * p1 & mask), 23) * p2 + p3) & mask
        i += 4
    while i < n:
        h = (rotl(h ^ (data[i] * p5 & mask), 11) * p1) & mask
        i += 1
    h ^= h >> 33
    h = (h * p2) & mask
    h ^= h >> 29
    h = (h * p3) & mask
    h ^= h >> 32
    return h


def check_xxh64() -> None:
    """Known-answer tests of the XXH64 implementation (values from the xxHash test suite / xxhsum)."""
    known = {b"": 0xEF46DB3751D8E999, b"a": 0xD24EC4F1A98C6E5B, b"abc": 0x44BC2CF5AD770999,
             b"Nobody inspects the spammish repetition": 0xFBCEA83C8A378BF1}
    for data, want in known.items():
        got = xxh64(data)
        if got != want:
            raise RuntimeError(f"xxh64({data!r}) = {got:016x}, expected {want:016x}")


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors.torch.save_file with the metadata keys sorted (byte-reproducible header)."""
    save_file(tensors, str(path), metadata=metadata)
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items())), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n:])
    path.chmod(0o644)


def i32(values) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int32)


# ---------------------------------------------------------------------------------------------------------
# the model (float32)


@dataclass
class MsaSettings:
    router_layers: list[int]
    pool: int
    decouple: bool
    method: str
    head_reduce: str
    query_reduce: str
    chunk_reduce: str

    @property
    def normalize(self) -> bool:  # §4.4 / §5.1: exact-string test (Q#2)
        return self.method == "INFONCE"

    @property
    def scaled(self) -> bool:  # §5.1 table: no scale only for INFONCE with a decoupled router
        return not (self.method == "INFONCE" and self.decouple)


class Model:
    """Qwen3 decoder in float32 from the checkpoint's (bf16) weights, plus the MSA attention modes."""

    def __init__(self, ckpt: Path):
        cfg = json.loads((ckpt / "config.json").read_text())
        self.cfg = cfg
        self.n_layers = cfg["num_hidden_layers"]
        self.hidden = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.head_dim = cfg["head_dim"]
        self.group = self.n_heads // self.n_kv
        self.width = self.n_kv * self.head_dim
        self.eps = float(cfg["rms_norm_eps"])
        self.theta = float(cfg["rope_theta"])
        self.vocab = cfg["vocab_size"]
        m = cfg["msa_config"]
        r = m["router_layer_idx"]
        layers = list(range(self.n_layers)) if r == "all" else sorted({int(x) for x in r.split(",")})
        self.msa = MsaSettings(layers, int(m["pooling_kernel_size"]), bool(m["decouple_router"]),
                               m["aux_loss_method"], m["head_reduce_method"], m["query_reduce_method"],
                               m["chunk_reduce_method"])
        gen = json.loads((ckpt / "generation_config.json").read_text())
        eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
            self.w = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
        if "lm_head.weight" not in self.w:  # tied embeddings (§1.3)
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
        # RoPE inverse frequencies in f32 (§2: base ** (arange(0, D, 2) / D), reciprocal).
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64).to(torch.float32) / self.head_dim
        self.inv_freq = 1.0 / (torch.tensor(self.theta, dtype=torch.float32) ** exponent)
        self.tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))

    # -- text
    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    # -- math
    def lw(self, layer: int, name: str) -> torch.Tensor:
        return self.w[f"model.layers.{layer}.{name}.weight"]

    def rmsnorm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [T, heads, D], rotate-half convention (§2)."""
        ang = pos.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
        half = self.head_dim // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def forward(self, ids: list[int], positions: list[int], kv: list[dict] | None, hook=None,
                logits: str = "last") -> torch.Tensor | None:
        """Runs the new tokens `ids` at `positions`.

        kv: one dict per layer {"pk", "pv": prefix rows [n, Hkv, D]; "k", "v": cached own rows}; the new rows
        are appended (None: no cache, no prefix). New token i sees every prefix row, every cached row and
        new rows 0..i (causal). hook(layer, a, q, k, v, kv_layer) runs before each attention and may edit
        the prefix. Returns logits of the last token ([vocab]), of all tokens ([T, vocab]) or None.
        """
        T = len(ids)
        pos = torch.tensor(positions, dtype=torch.int64)
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.int64)]
        H, Hkv, D = self.n_heads, self.n_kv, self.head_dim
        for layer in range(self.n_layers):
            a = self.rmsnorm(x, self.lw(layer, "input_layernorm"))
            q = (a @ self.lw(layer, "self_attn.q_proj").T).view(T, H, D)
            k = (a @ self.lw(layer, "self_attn.k_proj").T).view(T, Hkv, D)
            v = (a @ self.lw(layer, "self_attn.v_proj").T).view(T, Hkv, D)
            q = self.rope(self.rmsnorm(q, self.lw(layer, "self_attn.q_norm")), pos)
            k = self.rope(self.rmsnorm(k, self.lw(layer, "self_attn.k_norm")), pos)
            st = kv[layer] if kv is not None else {"pk": torch.zeros(0, Hkv, D), "pv": torch.zeros(0, Hkv, D),
                                                   "k": torch.zeros(0, Hkv, D), "v": torch.zeros(0, Hkv, D)}
            if hook is not None:
                hook(layer, a, q, k, v, st)
            st["k"] = torch.cat([st["k"], k], 0)
            st["v"] = torch.cat([st["v"], v], 0)
            keys = torch.cat([st["pk"], st["k"]], 0)      # [L, Hkv, D]
            vals = torch.cat([st["pv"], st["v"]], 0)
            L = keys.shape[0]
            visible_before = L - T                         # prefix + earlier cached rows
            mask = torch.ones(T, L, dtype=torch.bool)
            for i in range(T):
                mask[i, visible_before + i + 1:] = False
            kh = keys.repeat_interleave(self.group, dim=1)  # q head h uses kv head h // group
            vh = vals.repeat_interleave(self.group, dim=1)
            s = torch.einsum("thd,lhd->htl", q, kh) * (1.0 / float(np.sqrt(D)))
            s = s.masked_fill(~mask[None], float("-inf"))
            p = torch.softmax(s, dim=-1)
            o = torch.einsum("htl,lhd->thd", p, vh).reshape(T, H * D)
            x = x + o @ self.lw(layer, "self_attn.o_proj").T
            m = self.rmsnorm(x, self.lw(layer, "post_attention_layernorm"))
            g = m @ self.lw(layer, "mlp.gate_proj").T
            u = m @ self.lw(layer, "mlp.up_proj").T
            x = x + (torch.nn.functional.silu(g) * u) @ self.lw(layer, "mlp.down_proj").T
        if logits == "none":
            return None
        h = self.rmsnorm(x, self.w["model.norm.weight"])
        if logits == "last":
            h = h[-1:]
        out = h @ self.w["lm_head.weight"].T
        return out[0] if logits == "last" else out


# ---------------------------------------------------------------------------------------------------------
# stage 1


def format_document(doc_id: int, text: str) -> str:
    """§3.2."""
    return f"<|im_start|>[{doc_id}]. {text}[{doc_id}]<|im_end|>"


def l2_normalize_heads(x: torch.Tensor) -> torch.Tensor:
    """x [..., D]: v / max(||v||_2, 1e-12) per head vector (F.normalize semantics, §4.4)."""
    return x / torch.clamp(torch.linalg.vector_norm(x, dim=-1, keepdim=True), min=1e-12)


def pool_chunks(rows: torch.Tensor, P: int) -> torch.Tensor:
    """rows [n, width] -> [ceil(n/P), width]: each chunk summed on its own, sequentially in f32 in token
    order, divided by its token count in f32 (Part A; the last chunk is partial)."""
    n = rows.shape[0]
    out = []
    for c0 in range(0, n, P):
        acc = torch.zeros(rows.shape[1], dtype=torch.float32)
        for r in range(c0, min(c0 + P, n)):
            acc = acc + rows[r]
        out.append(acc / torch.tensor(float(min(c0 + P, n) - c0), dtype=torch.float32))
    return torch.stack(out)


@dataclass
class Bank:
    """What stage 1 produced: per router layer the concatenated chunks of all documents (ascending id)."""
    doc_tokens: list[list[int]]
    chunk_begin: list[int]
    n_chunks: list[int]
    k: dict[int, torch.Tensor]   # layer -> [C, width]
    v: dict[int, torch.Tensor]
    rk: dict[int, torch.Tensor]  # routing keys, normalised when the config says so
    template_k: list[torch.Tensor]  # every layer: [3, width]
    template_v: list[torch.Tensor]


def encode_corpus(model: Model, docs: list[str]) -> Bank:
    msa = model.msa
    per_layer = {l: {"k": [], "v": [], "rk": []} for l in msa.router_layers}
    doc_tokens, chunk_begin, n_chunks = [], [], []
    total = 0
    for doc_id, text in enumerate(docs):
        ids = model.encode(format_document(doc_id, text))
        doc_tokens.append(ids)
        captured = {}

        def hook(layer, a, q, k, v, st):
            if layer in per_layer:
                rk = (a @ model.lw(layer, "self_attn.router_k_proj.0").T) if msa.decouple else None
                captured[layer] = (k.reshape(len(ids), -1), v.reshape(len(ids), -1), rk)

        model.forward(ids, list(range(len(ids))), None, hook, logits="none")  # alone, positions 0..n-1 (§4.3)
        for layer, (k, v, rk) in captured.items():
            pk, pv = pool_chunks(k, msa.pool), pool_chunks(v, msa.pool)
            prk = pool_chunks(rk, msa.pool) if rk is not None else pk.clone()
            if msa.normalize:
                prk = l2_normalize_heads(prk.view(-1, model.n_kv, model.head_dim)).reshape(prk.shape)
            per_layer[layer]["k"].append(pk)
            per_layer[layer]["v"].append(pv)
            per_layer[layer]["rk"].append(prk)
        n = -(-len(ids) // msa.pool)
        chunk_begin.append(total)
        n_chunks.append(n)
        total += n
    # template prefix K/V of every layer (§4.6): the head alone at positions 0, 1, 2
    tk, tv = [None] * model.n_layers, [None] * model.n_layers

    def thook(layer, a, q, k, v, st):
        tk[layer], tv[layer] = k.reshape(3, -1).clone(), v.reshape(3, -1).clone()

    model.forward(TEMPLATE_HEAD, [0, 1, 2], None, thook, logits="none")
    return Bank(doc_tokens, chunk_begin, n_chunks,
                {l: torch.cat(d["k"]) for l, d in per_layer.items()},
                {l: torch.cat(d["v"]) for l, d in per_layer.items()},
                {l: torch.cat(d["rk"]) for l, d in per_layer.items()}, tk, tv)


# ---------------------------------------------------------------------------------------------------------
# stage 2


def query_input(model: Model, question: str) -> tuple[list[int], list[int]]:
    """§3.3: bpe(question block) + [<|im_end|>, \\n] + [<|im_start|>]; doc_ids 0 / -2 -2 / -1."""
    block = model.encode(QUERY_PREFIX + question + QUERY_SUFFIX)
    tail = model.encode(TEMPLATE_TAIL_TEXT)
    head = model.encode(RESPONSE_HEAD_TEXT)
    return block + tail + head, [0] * len(block) + [-2] * len(tail) + [-1] * len(head)


def score_documents(model: Model, bank: Bank, layer: int, qr: torch.Tensor) -> torch.Tensor:
    """qr [n_routing, H, D] (prepared). Returns the score of every document [n_docs] (§5.2 reductions)."""
    msa = model.msa
    keys = bank.rk[layer].view(-1, model.n_kv, model.head_dim)          # [C, Hkv, D]
    keys_h = keys.repeat_interleave(model.group, dim=1)                  # [C, H, D]
    s = torch.einsum("thd,chd->thc", qr, keys_h)                         # [T, H, C]
    s = s.mean(dim=1) if msa.head_reduce == "mean" else s.amax(dim=1)    # [T, C]
    if msa.query_reduce == "max":
        s = s.amax(dim=0)
    elif msa.query_reduce == "mean":
        s = s.sum(dim=0) / s.shape[0]
    elif msa.query_reduce == "last":  # libmsa: the last routing token (see the README on B#7)
        s = s[-1]
    else:
        raise ValueError(msa.query_reduce)
    scores = []
    for b, n in zip(bank.chunk_begin, bank.n_chunks):
        c = s[b:b + n]
        scores.append(c.amax() if msa.chunk_reduce == "max" else c.sum() / n)
    return torch.stack(scores)


def select_top_k(scores: torch.Tensor, k: int) -> list[int]:
    """Top min(k, n) by (score desc, id asc) (Part A), in that order."""
    order = sorted(range(len(scores)), key=lambda d: (-float(scores[d]), d))
    return order[:min(k, len(scores))]


@dataclass
class Prefill:
    logits: torch.Tensor
    kv: list[dict]
    scores: dict[int, torch.Tensor] = field(default_factory=dict)
    selected: dict[int, list[int]] = field(default_factory=dict)
    n_prefix: dict[int, int] = field(default_factory=dict)


def prefill(model: Model, bank: Bank, ids: list[int], doc_ids: list[int], first_position: int,
            k: int) -> Prefill:
    """Stage-2 prefill with routing (§5): template rows, selected chunks (ascending id), query rows."""
    msa = model.msa
    kv = [{"pk": bank.template_k[l].view(3, model.n_kv, model.head_dim).clone(),
           "pv": bank.template_v[l].view(3, model.n_kv, model.head_dim).clone(),
           "k": torch.zeros(0, model.n_kv, model.head_dim), "v": torch.zeros(0, model.n_kv, model.head_dim)}
          for l in range(model.n_layers)]
    rows = [i for i, d in enumerate(doc_ids) if d == 0]
    res = Prefill(None, kv)

    def hook(layer, a, q, kk, v, st):
        if layer not in msa.router_layers:
            return
        if msa.decouple:
            qr = (a[rows] @ model.lw(layer, "self_attn.router_q_proj.0").T).view(len(rows), model.n_heads,
                                                                                  model.head_dim)
        else:
            qr = q[rows].clone()  # after q_norm and RoPE
        if msa.normalize:
            qr = l2_normalize_heads(qr)
        if msa.scaled:
            qr = qr * (model.head_dim ** -0.5)
        scores = score_documents(model, bank, layer, qr)
        sel = select_top_k(scores, k)
        res.scores[layer], res.selected[layer] = scores, sel
        chunk_rows = [r for d in sorted(sel) for r in range(bank.chunk_begin[d], bank.chunk_begin[d] + bank.n_chunks[d])]
        ck = bank.k[layer][chunk_rows].view(-1, model.n_kv, model.head_dim)
        cv = bank.v[layer][chunk_rows].view(-1, model.n_kv, model.head_dim)
        st["pk"] = torch.cat([st["pk"][:3], ck, st["pk"][3:]], 0)
        st["pv"] = torch.cat([st["pv"][:3], cv, st["pv"][3:]], 0)
        res.n_prefix[layer] = st["pk"].shape[0]

    positions = [first_position + i for i in range(len(ids))]
    res.logits = model.forward(ids, positions, kv, hook, logits="last")
    return res


def top2_gap(logits: torch.Tensor) -> float:
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def argmax_lowest(logits: torch.Tensor) -> int:
    """argmax, lowest id among equal maxima."""
    m = logits.max()
    return int(torch.nonzero(logits == m)[0, 0])


def greedy(model: Model, kv: list[dict], logits: torch.Tensor, next_pos: int, steps: int,
           stop_at_eos: bool) -> tuple[list[int], list[float], torch.Tensor]:
    """Greedy decode from `logits` (those of the last fed token). Returns (tokens, gaps, last logits)."""
    out, gaps = [], []
    for step in range(steps):
        t = argmax_lowest(logits)
        out.append(t)
        gaps.append(top2_gap(logits))
        if stop_at_eos and t in model.eos_ids:
            break
        if step + 1 < steps:
            logits = model.forward([t], [next_pos], kv, None, logits="last")
            next_pos += 1
    return out, gaps, logits


# ---------------------------------------------------------------------------------------------------------
# Memory Interleave protocol (pure text functions, §6.3 / §6.4)


def parse_ids(text: str) -> list[int]:
    """Sorted unique integers matched by \\[(\\d+)\\]."""
    return sorted({int(m) for m in re.findall(r"\[(\d+)\]", text)})


def documents_injection(ids: list[int], docs: list[str]) -> str:
    return "".join(f"[{i}]. {docs[i]}\n" for i in ids) + ROUND_END


def extract_question(fed_text: str) -> str:
    q = fed_text.split("historical document information\n\n")[-1]
    return q.split("\nPlease return all documents related to the question")[0]


def question_injection(question: str) -> str:
    return "<|im_start|>The user's question is: " + question + "\n" + ROUND_END


def regenerate_text(transcript: str) -> str:
    """benchmark.py: "\\nPlease answer the question based" + split(...)[1], every <|endoftext|> removed."""
    r = QUESTION_BLOCK_START + transcript.split(QUESTION_BLOCK_START)[1]
    return r.replace("<|endoftext|>", "")


def should_regenerate(response: str) -> bool:
    return response.endswith(ROUND_END) and ANSWER_MARKER not in response


def regenerate_input(model: Model, text: str) -> tuple[list[int], list[int], dict]:
    """§6.4 (_apply_template_regenerate): ids = tok(text); doc_ids -1 except 0 in region 1 (the latest
    round's injected documents) and region 2 (the question block up to the end of the anchor sentence),
    token counts from tokenising substrings on their own."""
    ids = model.encode(text)
    doc_ids = [-1] * len(ids)
    info = {}
    marker = "]" + ROUND_END + "["
    m = text.rfind(marker)
    if m != -1:
        s = m + len(marker) - 1
        e = text.find(ROUND_END, s)
        if e != -1:
            n_prefix = len(model.encode(text[:s]))
            n_region = len(model.encode(text[s:e]))
            for i in range(n_prefix, min(n_prefix + n_region, len(ids))):
                doc_ids[i] = 0
            info["region1_chars"] = [s, e]
            info["region1_tokens"] = [n_prefix, n_prefix + n_region]
    a = text.find(QUESTION_ANCHOR)
    if a != -1:
        n = len(model.encode(text[:a + len(QUESTION_ANCHOR)]))
        for i in range(min(n, len(ids))):
            doc_ids[i] = 0
        info["region2_tokens"] = [0, n]
    return ids, doc_ids, info


# ---------------------------------------------------------------------------------------------------------
# goldens


def logit_sample_ids(vocab: int) -> list[int]:
    """LOGIT_SAMPLE fixed ids spread over the vocabulary (seeded, sorted, unique), plus the special ids."""
    g = torch.Generator().manual_seed(20260323)
    ids = set(torch.randperm(vocab, generator=g)[:LOGIT_SAMPLE - 8].tolist())
    ids.update([0, 198, 872, ENDOFTEXT, IM_START, IM_END, OBJ_REF_END, vocab - 1])
    return sorted(ids)


def store_logits(tensors: dict, prefix: str, logits: torch.Tensor, sample_ids: list[int]) -> None:
    top = torch.topk(logits, LOGIT_TOP)
    tensors[f"{prefix}.top_ids"] = top.indices.to(torch.int32)
    tensors[f"{prefix}.top_values"] = top.values.contiguous()
    tensors[f"{prefix}.sample_values"] = logits[torch.tensor(sample_ids)].contiguous()
    tensors[f"{prefix}.stats"] = torch.tensor([float(logits.to(torch.float64).mean()),
                                               float(logits.to(torch.float64).std()),
                                               float(logits.abs().max())], dtype=torch.float32)


def boundary_gap(scores: torch.Tensor, k: int) -> float:
    """Relative gap between the k-th and the (k+1)-th score (inf when every document is selected)."""
    s = sorted((float(x) for x in scores), reverse=True)
    if k >= len(s):
        return float("inf")
    return (s[k - 1] - s[k]) / max(max(abs(x) for x in s), 1e-30)


def init_model_command(msa_bin: str, cfg: GoldenConfig) -> list[str]:
    over = json.dumps(cfg.msa_overrides, sort_keys=True, separators=(",", ":"))
    return [msa_bin, "init-model", "--preset", "micro", "--seed", str(cfg.seed), "--msa-config", over,
            "--tokenizer", TOKENIZER_PLACEHOLDER, "--out", OUT_PLACEHOLDER]


def make_checkpoint(args: argparse.Namespace, cfg: GoldenConfig) -> tuple[Path, list[str]]:
    recorded = init_model_command("msa", cfg)
    argv = init_model_command(str(args.msa_bin), cfg)
    out = args.work_dir / cfg.name
    argv = [str(args.tokenizer_dir) if a == TOKENIZER_PLACEHOLDER else str(out) if a == OUT_PLACEHOLDER else a
            for a in argv]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return out, recorded


def run_config(args: argparse.Namespace, cfg: GoldenConfig) -> dict:
    ckpt, recorded = make_checkpoint(args, cfg)
    blob = (ckpt / "model.safetensors").read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    xxh = xxh64(blob)
    model = Model(ckpt)
    msa = model.msa
    docs, n_docs = DOCUMENTS, len(DOCUMENTS)
    k = min(DOC_TOP_K, n_docs)
    first = 3 + DOC_TOP_K
    sample_ids = logit_sample_ids(model.vocab)
    tensors: dict[str, torch.Tensor] = {}
    summary = {"min_greedy_gap": float("inf"), "min_boundary_gap": float("inf"), "eos_in_greedy": []}

    # stage 1
    bank = encode_corpus(model, docs)
    tensors["stage1.tokens"] = i32(t for d in bank.doc_tokens for t in d)
    tensors["stage1.doc_n_tokens"] = i32(len(d) for d in bank.doc_tokens)
    tensors["stage1.doc_chunk_begin"] = i32(bank.chunk_begin)
    tensors["stage1.doc_n_chunks"] = i32(bank.n_chunks)
    for l in msa.router_layers:
        tensors[f"stage1.layer{l}.k"] = bank.k[l].contiguous()
        tensors[f"stage1.layer{l}.v"] = bank.v[l].contiguous()
        tensors[f"stage1.layer{l}.rk"] = bank.rk[l].contiguous()
    for l in range(model.n_layers):
        tensors[f"template.layer{l}.k"] = bank.template_k[l].contiguous()
        tensors[f"template.layer{l}.v"] = bank.template_v[l].contiguous()
    tensors["logit_sample_ids"] = i32(sample_ids)

    # stages 2 and 3
    for j, question in enumerate(QUERIES):
        ids, doc_ids = query_input(model, question)
        pf = prefill(model, bank, ids, doc_ids, first, k)
        p = f"query{j}"
        tensors[f"{p}.ids"] = i32(ids)
        tensors[f"{p}.doc_ids"] = i32(doc_ids)
        for l in msa.router_layers:
            tensors[f"{p}.layer{l}.scores"] = pf.scores[l].contiguous()
            tensors[f"{p}.layer{l}.selected"] = i32(pf.selected[l])
            gap = boundary_gap(pf.scores[l], k)
            tensors[f"{p}.layer{l}.boundary_gap"] = torch.tensor([min(gap, 3.0e38)], dtype=torch.float32)
            summary["min_boundary_gap"] = min(summary["min_boundary_gap"], gap)
        store_logits(tensors, f"{p}.first_logits", pf.logits, sample_ids)
        toks, gaps, _ = greedy(model, pf.kv, pf.logits, first + len(ids), GREEDY_STEPS, stop_at_eos=False)
        tensors[f"{p}.greedy"] = i32(toks)
        tensors[f"{p}.greedy_gaps"] = torch.tensor(gaps, dtype=torch.float32)
        eos_at = next((i for i, t in enumerate(toks) if t in model.eos_ids), -1)
        tensors[f"{p}.greedy_eos_index"] = i32([eos_at])
        summary["min_greedy_gap"] = min(summary["min_greedy_gap"], min(gaps))
        summary["eos_in_greedy"].append(eos_at)
        summary.setdefault("selected", []).append({l: pf.selected[l] for l in msa.router_layers})
        summary.setdefault("greedy", []).append(toks)

    sidecar = {
        "config": cfg.name,
        "what": cfg.what,
        "init_model": {"command": shlex.join(recorded), "argv": recorded, "preset": "micro", "seed": cfg.seed,
                       "msa_config_json": recorded[recorded.index("--msa-config") + 1],
                       "placeholders": {TOKENIZER_PLACEHOLDER: "the Qwen3 tokenizer directory "
                                        "(../shared/data/qwen3-tokenizer)", OUT_PLACEHOLDER: "output directory"}},
        "model_safetensors": {"sha256": sha, "xxh64": f"{xxh:016x}", "bytes": len(blob)},
        "msa_config": model.cfg["msa_config"],
        "routing": {"normalize": msa.normalize, "scale": model.head_dim ** -0.5 if msa.scaled else None,
                    "router_layers": msa.router_layers, "routing_keys": "router_k_proj" if msa.decouple else "K"},
        "doc_top_k": DOC_TOP_K, "k": k, "first_position": first, "greedy_steps": GREEDY_STEPS,
        "eos_ids": sorted(model.eos_ids),
        "documents": docs, "formatted_documents": [format_document(i, d) for i, d in enumerate(docs)],
        "queries": QUERIES,
        "query_blocks": [QUERY_PREFIX + q + QUERY_SUFFIX for q in QUERIES],
    }

    if cfg.interleave:
        sidecar["interleave"] = run_interleave(model, bank, tensors, summary, first, k)
    summary["interleave"] = cfg.interleave

    meta = {
        "config": cfg.name,
        "init_model_command": shlex.join(recorded),
        "model_sha256": sha,
        "model_xxh64": f"{xxh:016x}",
        "doc_top_k": str(DOC_TOP_K),
        "first_position": str(first),
        "router_layers": ",".join(str(l) for l in msa.router_layers),
        "generator": "tools/msa_reference.py",
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "safetensors_version": safetensors.__version__,
        "reference": "independent float32 PyTorch implementation of MSA_SPEC.md Part B with Part A decisions",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, args.out / f"{cfg.name}.safetensors", meta)
    sidecar["min_greedy_gap"] = summary["min_greedy_gap"]
    sidecar["min_boundary_gap"] = summary["min_boundary_gap"]
    sidecar["greedy_eos_index"] = summary["eos_in_greedy"]
    (args.out / f"{cfg.name}.json").write_text(json.dumps(sidecar, indent=1, ensure_ascii=False, sort_keys=True)
                                               + "\n")
    return summary


def run_interleave(model: Model, bank: Bank, tensors: dict, summary: dict, first: int, k: int) -> dict:
    """The scripted Memory Interleave run (§6.3, §6.4, Part A) for QUERIES[INTERLEAVE_QUERY]."""
    msa = model.msa
    docs = DOCUMENTS
    question = QUERIES[INTERLEAVE_QUERY]
    info: dict = {"question": question, "forced_round1": FORCED_ROUND1, "forced_round2": FORCED_ROUND2}

    # round 1: the question prompt, routed (identical to query{INTERLEAVE_QUERY}); the model's output is forced.
    ids1, doc_ids1 = query_input(model, question)
    pf1 = prefill(model, bank, ids1, doc_ids1, first, k)
    forced1 = model.encode(FORCED_ROUND1)
    # The forced tokens are fed (decode steps); nothing of round 1's KV survives the re-encoding, so only
    # the text matters. The round ends at the first token whose text completes "<|object_ref_end|>".
    inner = model.decode(forced1)
    assert ROUND_END in inner and END_OF_RETRIEVE not in inner
    read = [i for i in parse_ids(inner) if 0 <= i < len(docs)]
    inject1 = documents_injection(read, docs)
    inject1_ids = model.encode(inject1)
    seq1 = ids1 + forced1 + inject1_ids
    transcript1 = model.decode(seq1)
    next_text = regenerate_text(transcript1)
    assert should_regenerate(next_text)
    ids2, doc_ids2, regions = regenerate_input(model, next_text)
    tensors["interleave.round1.ids"] = i32(ids1)
    tensors["interleave.round1.forced_ids"] = i32(forced1)
    tensors["interleave.round1.documents_read"] = i32(read)
    tensors["interleave.round1.injection_ids"] = i32(inject1_ids)
    tensors["interleave.round1.transcript_ids"] = i32(seq1)
    for l in msa.router_layers:
        tensors[f"interleave.round1.layer{l}.selected"] = i32(pf1.selected[l])

    # round 2: the re-encoded transcript, routing tokens = question block + the latest round's documents.
    pf2 = prefill(model, bank, ids2, doc_ids2, first, k)
    tensors["interleave.round2.ids"] = i32(ids2)
    tensors["interleave.round2.doc_ids"] = i32(doc_ids2)
    for l in msa.router_layers:
        tensors[f"interleave.round2.layer{l}.scores"] = pf2.scores[l].contiguous()
        tensors[f"interleave.round2.layer{l}.selected"] = i32(pf2.selected[l])
        gap = boundary_gap(pf2.scores[l], k)
        tensors[f"interleave.round2.layer{l}.boundary_gap"] = torch.tensor([min(gap, 3.0e38)], dtype=torch.float32)
        summary["min_boundary_gap"] = min(summary["min_boundary_gap"], gap)
    forced2 = model.encode(FORCED_ROUND2)
    # Forced tokens fed one by one (decode steps) -- except the one completing "<End-of-Retrieve>", which is
    # fed together with the question restatement (causal, Part A; identical to feeding it alone first).
    pos = first + len(ids2)
    generated_text = ""
    seq2 = list(ids2)
    fed_until = None
    for i, t in enumerate(forced2):
        seq2.append(t)
        generated_text = model.decode(forced2[:i + 1])
        if END_OF_RETRIEVE in generated_text:
            fed_until = i
            break
        model.forward([t], [pos], pf2.kv, None, logits="none")
        pos += 1
    assert fed_until == len(forced2) - 1, "the forced round-2 output must end with <End-of-Retrieve>"
    fed_text = model.decode(seq2)
    q_extracted = extract_question(fed_text)
    inject2 = question_injection(q_extracted)
    inject2_ids = model.encode(inject2)
    feed = [forced2[-1]] + inject2_ids
    logits = model.forward(feed, list(range(pos, pos + len(feed))), pf2.kv, None, logits="last")
    pos += len(feed)
    seq2 += inject2_ids
    answer, gaps, _ = greedy(model, pf2.kv, logits, pos, ANSWER_STEPS, stop_at_eos=True)
    eos_stop = answer[-1] in model.eos_ids
    seq_final = seq2 + (answer[:-1] if eos_stop else answer)
    transcript_final = model.decode(seq_final)
    answer_text = model.decode(answer[:-1] if eos_stop else answer)

    tensors["interleave.round2.forced_ids"] = i32(forced2)
    tensors["interleave.round2.injection_ids"] = i32(inject2_ids)
    tensors["interleave.answer_ids"] = i32(answer)
    tensors["interleave.answer_gaps"] = torch.tensor(gaps, dtype=torch.float32)
    tensors["interleave.transcript_ids"] = i32(seq_final)
    summary["min_greedy_gap"] = min(summary["min_greedy_gap"], min(gaps))
    summary["interleave_selected"] = {"round1": pf1.selected, "round2": pf2.selected}

    info.update({
        "round1_prompt_text": model.decode(ids1),
        "round1_generated_text": inner,
        "documents_read": read,
        "round1_injection": inject1,
        "round1_transcript": transcript1,
        "round2_prompt_text": next_text,
        "round2_prompt_is_regenerate": should_regenerate(next_text),
        "round2_regions": regions,
        "round2_routing_tokens": sum(1 for d in doc_ids2 if d == 0),
        "round2_generated_text": generated_text,
        "question_extracted": q_extracted,
        "question_injection": inject2,
        "answer_text": answer_text,
        "answer_stops_at_eos": eos_stop,
        "answer_steps": ANSWER_STEPS,
        "transcript": transcript_final,
        "first_position": first,
    })
    return info


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MSA float32 reference and golden writer",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--msa-bin", type=Path, required=True, help="the msa CLI (msa init-model writes the checkpoints)")
    p.add_argument("--work-dir", type=Path, required=True, help="where the checkpoints are written")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "msa_goldens", help="golden directory")
    p.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR, help="Qwen3 tokenizer directory")
    p.add_argument("--config", action="append", default=None, choices=[c.name for c in CONFIGS],
                   help="only these configurations (repeatable); default all")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(1)  # fixed summation order: regenerating gives identical files
    check_xxh64()
    failures = []
    for cfg in CONFIGS:
        if args.config and cfg.name not in args.config:
            continue
        s = run_config(args, cfg)
        print(f"[{cfg.name}] selected per query {s['selected']}")
        print(f"[{cfg.name}] greedy {s['greedy'][0][:12]}... EOS index per query {s['eos_in_greedy']}")
        if s["interleave"]:
            print(f"[{cfg.name}] interleave selections {s['interleave_selected']}")
        print(f"[{cfg.name}] min greedy gap {s['min_greedy_gap']:.6f}, min top-k boundary gap (relative) "
              f"{s['min_boundary_gap']:.6f}")
        if s["min_greedy_gap"] < MIN_GREEDY_GAP:
            failures.append(f"{cfg.name}: greedy gap {s['min_greedy_gap']:.3g} < {MIN_GREEDY_GAP}")
        if s["min_boundary_gap"] < MIN_BOUNDARY_GAP:
            failures.append(f"{cfg.name}: top-k boundary gap {s['min_boundary_gap']:.3g} < {MIN_BOUNDARY_GAP}")
    if failures:
        print("error: fragile goldens -- choose other seeds:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
