#!/usr/bin/env python3
"""Write a tiny random-weight MSA checkpoint (and, optionally, transformers goldens for it).

The checkpoint has exactly the layout of the released MSA-4B checkpoint (docs: MSA_SPEC.md §1):

* ``config.json``: the Qwen3 backbone fields as the reference stack (transformers 4.51.x
  ``save_pretrained``) writes them -- top-level ``rope_theta``, ``rope_scaling: null``,
  ``torch_dtype`` -- plus ``model_type: "msa"``, ``architectures: ["MSAForCausalLM"]`` and the full
  ``msa_config`` block (every key of the spec table). ``--config-style transformers5`` writes the
  backbone fields the way transformers >= 5 does instead (``rope_parameters``, ``dtype``,
  ``layer_types``), for loader tests of re-saved checkpoints.
* ``generation_config.json``: the Qwen3-4B-Instruct-2507 sampling defaults, with token ids that fit
  the vocabulary.
* ``model.safetensors``: bf16 (default) or f32. Every weight is rounded to a bf16 value, so the bf16
  and the f32 files of one seed hold exactly the same numbers (``--twin-out`` writes both and checks
  it). Tensor names follow MSA_SPEC.md §1.3, including ``router_q_proj.0.weight`` /
  ``router_k_proj.0.weight`` for router layers (when ``decouple_router``), the scalar ``temperature``
  (``"INFONCE" in aux_loss_method``) or ``b`` (``aux_loss_method == "BCE"``), and no
  ``lm_head.weight`` when the embeddings are tied.
* ``tokenizer.json`` / ``tokenizer_config.json`` copied from the shared Qwen3 tokenizer unless
  ``--no-tokenizer``.

Weights are not the usual 0.02-std init, which would leave every activation tiny:

* linear layers N(0, 1/fan_in), so every projection keeps activations O(1);
* the two projections that write into the residual stream (o_proj, down_proj) get
  ``--residual-gain`` (default 4) times that std. With tied embeddings the logits are
  ``norm(h) · E^T`` and h contains the current token's own embedding, which biases every position
  toward repeating its input token (with gain 1 the argmax is the input token at ~100 % of
  positions and greedy decoding never leaves the first token); a gain of 4 brings that below ~5 %;
* embeddings (and an untied lm_head) N(0, ``--embed-std``²), default 0.5: logits then have a std of
  about 0.5·sqrt(hidden) (4 for hidden 64);
* RMSNorm weights 1 + 0.1·N(0, 1), so the norm weights are not all equal.

Each tensor draws from its own generator seeded by (seed, tensor name), so a tensor's values do not
depend on which other tensors exist.

``--goldens FILE`` loads the written checkpoint back with ``transformers.Qwen3ForCausalLM`` in float32
(eager attention) and writes a safetensors file with:

* ``seq{i}.tokens`` I32 [n] and ``seq{i}.logits`` F32 [n, vocab] -- a plain causal forward over
  random tokens, positions 0..n-1, logits of every position (lengths ``--seq-lens``, default
  1,7,64,300);
* ``greedy.prompt`` I32 [m] and ``greedy.continuation`` I32 [steps] -- ``steps`` argmax steps (full
  recompute each step, EOS ignored), checked against ``model.generate(do_sample=False)``;
* ``greedy.gaps`` F32 [steps] -- top1-top2 logit gap at each greedy step -- and ``greedy.min_gap`` F32
  [1], their minimum. The script fails when the minimum is below ``--min-gap`` (default 1e-4): pick
  another seed.

Usage (see tools/README.md and tools/make_goldens.sh):

    python3 tools/make_tiny_checkpoint.py --out /tmp/tiny --layers 2 --hidden 64 --heads 4 \\
        --kv-heads 2 --head-dim 16 --intermediate 128 --vocab 512 --goldens /tmp/tiny_goldens.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

QWEN3_VOCAB = 151936
QWEN3_BOS = 151643  # <|endoftext|>, also the pad token
QWEN3_EOS = 151645  # <|im_end|>
DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qwen3-tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
AUX_LOSS_METHODS = ("INFONCE", "INFONCE_FOCAL", "BCE", "INFONCE_DECOUPLE", "INFONCE_DECOUPLE_FOCAL")


# --------------------------------------------------------------------------------------------------
# command line


def str2bool(text: str) -> bool:
    """Parse true/false style flag values."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def int_list(text: str) -> list[int]:
    """Parse a comma-separated list of non-negative integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line interface; every config value has a flag."""
    p = argparse.ArgumentParser(
        description="Write a tiny random-weight MSA checkpoint (MSA-4B layout) and optional goldens.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    out.add_argument("--dtype", choices=("bf16", "f32"), default="bf16", help="dtype of model.safetensors")
    out.add_argument("--twin-out", type=Path, default=None,
                     help="also write the same checkpoint in the other dtype here and check both hold identical values")
    out.add_argument("--name", default=None, help="configuration name recorded in metadata; None: the --out basename")
    out.add_argument("--no-tokenizer", action="store_true", help="do not copy tokenizer.json / tokenizer_config.json")
    out.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR, help="where the Qwen3 tokenizer files are")
    out.add_argument("--config-style", choices=("reference", "transformers5"), default="reference",
                     help="backbone keys as transformers 4.51 (the released checkpoint) or >= 5 writes them")
    out.add_argument("--goldens", type=Path, default=None, help="write transformers goldens (safetensors) here")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")

    shape = p.add_argument_group("backbone (Qwen3)")
    shape.add_argument("--layers", type=int, default=2, help="num_hidden_layers")
    shape.add_argument("--hidden", type=int, default=64, help="hidden_size")
    shape.add_argument("--heads", type=int, default=4, help="num_attention_heads")
    shape.add_argument("--kv-heads", type=int, default=2, help="num_key_value_heads")
    shape.add_argument("--head-dim", type=int, default=16, help="head_dim (need not be hidden/heads)")
    shape.add_argument("--intermediate", type=int, default=128, help="intermediate_size")
    shape.add_argument("--vocab", type=int, default=512, help=f"{QWEN3_VOCAB} for the full Qwen3 vocabulary")
    shape.add_argument("--max-pos", type=int, default=4096, help="max_position_embeddings")
    shape.add_argument("--rope-theta", type=float, default=1e6, help="rope_theta (MSA-4B: 5e6)")
    shape.add_argument("--rms-eps", type=float, default=1e-6, help="rms_norm_eps")
    tie = shape.add_mutually_exclusive_group()
    tie.add_argument("--tie", dest="tie", action="store_true", default=True,
                     help="tie_word_embeddings true, no lm_head.weight (as MSA-4B)")
    tie.add_argument("--no-tie", dest="tie", action="store_false", default=argparse.SUPPRESS,
                     help="tie_word_embeddings false, separate lm_head.weight")
    shape.add_argument("--bos-id", type=int, default=None,
                       help=f"bos_token_id; None: {QWEN3_BOS} for the full vocab, else vocab-1")
    shape.add_argument("--eos-id", type=int, default=None,
                       help=f"eos_token_id; None: {QWEN3_EOS} for the full vocab, else vocab-1")
    shape.add_argument("--pad-id", type=int, default=None, help="generation pad_token_id; None: the bos id")
    shape.add_argument("--gen-eos-ids", type=int_list, default=None,
                       help="generation_config eos_token_id list; None: [eos, bos] without duplicates")
    shape.add_argument("--seed", type=int, default=0, help="weights (and, by default, golden tokens) seed")

    init = p.add_argument_group("weight init (see the module docstring)")
    init.add_argument("--embed-std", type=float, default=0.5,
                      help="std of embed_tokens (and of an untied lm_head); sets the logit scale")
    init.add_argument("--residual-gain", type=float, default=4.0,
                      help="o_proj/down_proj std = gain/sqrt(fan_in): layer outputs dominate the token embedding")
    init.add_argument("--norm-std", type=float, default=0.1, help="RMSNorm weights = 1 + norm_std * N(0, 1)")

    msa = p.add_argument_group("msa_config (defaults: scripts/resave_model.sh scaled to the tiny model)")
    msa.add_argument("--router-layers", default=None,
                     help='router_layer_idx: "all" or comma-separated indices; None: the latter half of the layers')
    msa.add_argument("--pool", type=int, default=4, help="pooling_kernel_size (MSA-4B: 64)")
    msa.add_argument("--top-k-docs", type=int, default=16, help="top_k_docs (training only)")
    msa.add_argument("--decouple-router", type=str2bool, default=True, help="decouple_router")
    msa.add_argument("--aux-loss-method", choices=AUX_LOSS_METHODS, default="INFONCE_DECOUPLE",
                     help="aux_loss_method (decides cosine vs scaled-dot routing)")
    msa.add_argument("--head-reduce", choices=("max", "mean"), default="mean", help="head_reduce_method")
    msa.add_argument("--query-reduce", choices=("max", "mean", "last"), default="max", help="query_reduce_method")
    msa.add_argument("--chunk-reduce", choices=("max", "mean"), default="max", help="chunk_reduce_method")
    msa.add_argument("--aux-loss", type=str2bool, default=False, help="aux_loss")
    msa.add_argument("--lmloss-weight", type=float, default=1.0, help="lmloss_weigth (sic)")
    msa.add_argument("--auxloss-weight", type=float, default=0.1, help="auxloss_weight")
    msa.add_argument("--recloss-weight", type=float, default=0.0, help="recloss_weight")
    msa.add_argument("--ansloss-weight", type=float, default=1.0, help="ansloss_weight")
    msa.add_argument("--rewrite-position", type=str2bool, default=True, help="rewrite_position")
    msa.add_argument("--infonce-loss-temp", type=float, default=0.1,
                     help="infonce_loss_temp; also the value of the temperature tensor")
    msa.add_argument("--decouple-pooling-mode", default="mean", help="decouple_pooling_mode")

    gold = p.add_argument_group("goldens")
    gold.add_argument("--seq-lens", type=int_list, default=[1, 7, 64, 300], help="lengths of the forward sequences")
    gold.add_argument("--greedy-prompt-len", type=int, default=8, help="tokens in greedy.prompt")
    gold.add_argument("--greedy-steps", type=int, default=32, help="tokens in greedy.continuation")
    gold.add_argument("--data-seed", type=int, default=None, help="seed of the golden token draws; None: --seed")
    gold.add_argument("--min-gap", type=float, default=1e-4,
                      help="fail when a greedy step's top1-top2 logit gap is below this")

    args = p.parse_args(argv)
    validate_args(p, args)
    return args


def validate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill derived defaults and reject inconsistent shapes."""
    for flag in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "max_pos", "pool"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if args.heads % args.kv_heads:
        parser.error("--heads must be a multiple of --kv-heads")
    if args.head_dim % 2:
        parser.error("--head-dim must be even (RoPE rotate-half)")
    if args.router_layers is None:
        args.router_layers = ",".join(str(i) for i in range(args.layers // 2, args.layers))
    parse_router_layers(args.router_layers, args.layers)  # validates
    full = args.vocab == QWEN3_VOCAB
    if args.bos_id is None:
        args.bos_id = QWEN3_BOS if full else args.vocab - 1
    if args.eos_id is None:
        args.eos_id = QWEN3_EOS if full else args.vocab - 1
    if args.pad_id is None:
        args.pad_id = args.bos_id
    if args.gen_eos_ids is None:
        args.gen_eos_ids = list(dict.fromkeys([args.eos_id, args.bos_id]))
    for name, tok in (("bos", args.bos_id), ("eos", args.eos_id), ("pad", args.pad_id)):
        if not 0 <= tok < args.vocab:
            parser.error(f"--{name}-id {tok} is outside the vocabulary [0, {args.vocab})")
    if any(not 0 <= t < args.vocab for t in args.gen_eos_ids):
        parser.error("--gen-eos-ids must lie inside the vocabulary")
    if args.data_seed is None:
        args.data_seed = args.seed
    if args.name is None:
        args.name = args.out.resolve().name
    if args.goldens is not None:
        if args.goldens.exists() and not args.force:
            parser.error(f"{args.goldens} exists (use --force)")
        longest = max(max(args.seq_lens), args.greedy_prompt_len + args.greedy_steps)
        if longest > args.max_pos:
            parser.error(f"golden sequences of {longest} tokens exceed --max-pos {args.max_pos}")
        if min(args.seq_lens) < 1 or args.greedy_prompt_len < 1 or args.greedy_steps < 1:
            parser.error("golden lengths must be positive")
    if args.twin_out is not None and args.twin_out.resolve() == args.out.resolve():
        parser.error("--twin-out must differ from --out")


def parse_router_layers(spec: str, n_layers: int) -> list[int]:
    """Router layers as the reference parses router_layer_idx (memory_sparse_attention.py:31-35)."""
    if spec == "all":
        return list(range(n_layers))
    try:
        layers = [int(v) for v in spec.split(",")]
    except ValueError as exc:
        raise SystemExit(f"error: router layers {spec!r}: expected \"all\" or comma-separated integers") from exc
    if any(not 0 <= i < n_layers for i in layers) or len(set(layers)) != len(layers):
        raise SystemExit(f"error: router layers {spec!r}: indices must be distinct and in [0, {n_layers})")
    return layers


# --------------------------------------------------------------------------------------------------
# config files


def make_msa_config(args: argparse.Namespace) -> dict:
    """The msa_config block, every key of the spec table (resave_model.py:33-50)."""
    return {
        "router_layer_idx": args.router_layers,
        "aux_loss": args.aux_loss,
        "lmloss_weigth": args.lmloss_weight,
        "auxloss_weight": args.auxloss_weight,
        "recloss_weight": args.recloss_weight,
        "ansloss_weight": args.ansloss_weight,
        "aux_loss_method": args.aux_loss_method,
        "decouple_router": args.decouple_router,
        "rewrite_position": args.rewrite_position,
        "top_k_docs": args.top_k_docs,
        "pooling_kernel_size": args.pool,
        "infonce_loss_temp": args.infonce_loss_temp,
        "head_reduce_method": args.head_reduce,
        "query_reduce_method": args.query_reduce,
        "chunk_reduce_method": args.chunk_reduce,
        "decouple_pooling_mode": args.decouple_pooling_mode,
    }


def json_number(value: float) -> int | float:
    """Integral floats as ints (rope_theta 5000000 as in the released config), others unchanged."""
    return int(value) if float(value).is_integer() else value


def make_config(args: argparse.Namespace) -> dict:
    """config.json contents.

    "reference" mirrors what transformers 4.51.x writes for Qwen3 after resave_model.py (the released
    MSA-4B checkpoint): rope_theta / rope_scaling at top level, torch_dtype, and sliding_window false
    (the MSA decoder layer sets config.sliding_window = False before the save, model.py:65).
    "transformers5" lets the installed transformers serialise the same Qwen3Config.
    """
    backbone = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": args.bos_id,
        "eos_token_id": args.eos_id,
        "head_dim": args.head_dim,
        "hidden_act": "silu",
        "hidden_size": args.hidden,
        "initializer_range": 0.02,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": args.max_pos,
        "max_window_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_hidden_layers": args.layers,
        "num_key_value_heads": args.kv_heads,
        "rms_norm_eps": args.rms_eps,
        "rope_scaling": None,
        "rope_theta": json_number(args.rope_theta),
        "sliding_window": False,
        "tie_word_embeddings": args.tie,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": args.vocab,
    }
    if args.config_style == "reference":
        config = dict(backbone)
        config["torch_dtype"] = "bfloat16"
        config["transformers_version"] = transformers.__version__
    else:
        backbone["sliding_window"] = None  # transformers >= 5 rejects false (int or null only)
        config = json.loads(Qwen3Config(**backbone).to_json_string(use_diff=True))  # as save_pretrained
        config["dtype"] = "bfloat16"
    config["architectures"] = ["MSAForCausalLM"]
    config["model_type"] = "msa"
    config["msa_config"] = make_msa_config(args)
    return config


def make_generation_config(args: argparse.Namespace) -> dict:
    """generation_config.json: Qwen3-4B-Instruct-2507 sampling defaults (MSA_SPEC.md §1.5)."""
    return {
        "bos_token_id": args.bos_id,
        "do_sample": True,
        "eos_token_id": list(args.gen_eos_ids),
        "pad_token_id": args.pad_id,
        "temperature": 0.7,
        "top_k": 20,
        "top_p": 0.8,
        "transformers_version": transformers.__version__,
    }


def to_qwen3_config(config: dict) -> Qwen3Config:
    """A Qwen3Config for transformers (model_type "msa" is not registered there).

    transformers >= 5 validates config fields strictly and rejects the reference's
    ``sliding_window: false`` (it wants an int or null); sliding windows are off either way
    (``use_sliding_window: false``), so it is passed as None.
    """
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "msa_config")}
    if fields.get("sliding_window") is False:
        fields["sliding_window"] = None
    qcfg = Qwen3Config(**fields)
    qcfg._attn_implementation = "eager"
    return qcfg


# --------------------------------------------------------------------------------------------------
# weights


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, name): each tensor's values are independent of the others."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    """Round to the nearest bf16 value (round-to-nearest-even), kept in float32."""
    return t.to(torch.bfloat16).to(torch.float32)


def init_tensor(name: str, shape: tuple[int, ...], args: argparse.Namespace) -> torch.Tensor:
    """Values for one tensor, by role (see the module docstring), rounded to bf16 values."""
    gen = tensor_generator(args.seed, name)
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    if name.endswith("norm.weight"):  # input/post-attention/final RMSNorm, q_norm, k_norm
        values = 1.0 + args.norm_std * noise
    elif name in ("model.embed_tokens.weight", "lm_head.weight"):
        values = args.embed_std * noise
    elif name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):  # write into the residual stream
        values = args.residual_gain * noise / math.sqrt(shape[1])
    elif len(shape) == 2:  # every other linear layer, [out, in]
        values = noise / math.sqrt(shape[1])
    else:
        raise ValueError(f"no init rule for {name} {shape}")
    return bf16_round(values)


def make_weights(args: argparse.Namespace, qcfg: Qwen3Config) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint, float32 holding bf16 values, names as MSA_SPEC.md §1.3."""
    torch.manual_seed(args.seed)
    model = Qwen3ForCausalLM(qcfg)  # provides the exact Qwen3 names and shapes
    weights: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():  # tied lm_head is not a separate parameter
        weights[name] = init_tensor(name, tuple(param.shape), args)
    if args.tie:
        weights.pop("lm_head.weight", None)
    elif "lm_head.weight" not in weights:
        raise RuntimeError("untied model without lm_head.weight")
    if args.decouple_router:
        q_out = args.heads * args.head_dim
        k_out = args.kv_heads * args.head_dim
        for i in parse_router_layers(args.router_layers, args.layers):
            for proj, rows in (("router_q_proj", q_out), ("router_k_proj", k_out)):
                name = f"model.layers.{i}.self_attn.{proj}.0.weight"
                weights[name] = init_tensor(name, (rows, args.hidden), args)
    # model.py:306-310: the InfoNCE temperature or the BCE bias, as initialised by the reference.
    if "INFONCE" in args.aux_loss_method:
        weights["temperature"] = bf16_round(torch.tensor(args.infonce_loss_temp, dtype=torch.float32))
    elif args.aux_loss_method == "BCE":
        weights["b"] = bf16_round(torch.tensor(-20.0, dtype=torch.float32))
    return weights


# --------------------------------------------------------------------------------------------------
# writing


def write_json(path: Path, obj: dict) -> None:
    """JSON the way transformers writes configs (indent 2, sorted keys, trailing newline)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def prepare_dir(path: Path, force: bool) -> None:
    """Create a checkpoint directory; refuse to overwrite one without --force."""
    if (path / "model.safetensors").exists() and not force:
        raise SystemExit(f"error: {path}/model.safetensors exists (use --force)")
    path.mkdir(parents=True, exist_ok=True)


def write_checkpoint(path: Path, dtype: str, config: dict, gen_config: dict,
                     weights: dict[str, torch.Tensor], args: argparse.Namespace) -> None:
    """config.json, generation_config.json, model.safetensors and optionally the tokenizer files."""
    prepare_dir(path, args.force)
    write_json(path / "config.json", config)
    write_json(path / "generation_config.json", gen_config)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    tensors = {name: t.to(torch_dtype).contiguous() for name, t in weights.items()}
    save_safetensors(tensors, path / "model.safetensors", {"format": "pt"})
    for name in TOKENIZER_FILES:
        target = path / name
        if args.no_tokenizer:
            if target.exists():
                target.unlink()
            continue
        source = args.tokenizer_dir / name
        if not source.is_file():
            raise SystemExit(f"error: tokenizer file {source} not found (use --tokenizer-dir or --no-tokenizer)")
        shutil.copyfile(source, target)
    if not args.no_tokenizer and args.vocab < QWEN3_VOCAB:
        print(f"note: vocab {args.vocab} < {QWEN3_VOCAB}: the copied tokenizer produces ids outside the vocabulary")


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors.torch.save_file with a byte-reproducible header.

    save_file writes ``__metadata__`` in hash-map order, which changes from run to run; the header is
    rewritten with the metadata keys sorted (tensor entries and data offsets unchanged, header padded
    with spaces to a multiple of 8 as the format requires), so regenerating unchanged goldens gives
    identical files and a reviewable diff.
    """
    save_file(tensors, str(path), metadata=metadata)
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items())), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n:])
    path.chmod(0o644)  # safetensors creates the file 0600


def read_safetensors_f32(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, converted to float32."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}


def check_file_values(path: Path, weights: dict[str, torch.Tensor], dtype: str) -> None:
    """The file holds exactly the intended names, dtype and values."""
    want = "BF16" if dtype == "bf16" else "F32"
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    bad = [k for k, v in header.items() if k != "__metadata__" and v["dtype"] != want]
    if bad:
        raise RuntimeError(f"{path}: tensors not in {want}: {bad}")
    got = read_safetensors_f32(path)
    if set(got) != set(weights):
        raise RuntimeError(f"{path}: names differ: {sorted(set(got) ^ set(weights))}")
    for name, ref in weights.items():
        if got[name].shape != ref.shape or not torch.equal(got[name], ref):
            raise RuntimeError(f"{path}: {name} differs from the intended values")


def check_twins(a: Path, b: Path) -> None:
    """Two checkpoint files hold the same names, shapes and identical values."""
    ta, tb = read_safetensors_f32(a), read_safetensors_f32(b)
    if set(ta) != set(tb):
        raise RuntimeError(f"{a} and {b} hold different tensor names")
    for name in ta:
        if ta[name].shape != tb[name].shape or not torch.equal(ta[name], tb[name]):
            raise RuntimeError(f"{a} and {b} differ in {name}")
    print(f"twin check: {a} and {b} hold identical values ({len(ta)} tensors)")


# --------------------------------------------------------------------------------------------------
# transformers reference and goldens


def load_reference_model(path: Path, config: dict, weights: dict[str, torch.Tensor]) -> Qwen3ForCausalLM:
    """Load the written checkpoint with transformers in float32/eager and check every value arrived.

    model_type "msa" is unknown to transformers, so the config is passed as a Qwen3Config; the router
    tensors and the temperature/b scalar are unexpected keys (ignored by Qwen3ForCausalLM).
    """
    qcfg = to_qwen3_config(config)
    model, info = Qwen3ForCausalLM.from_pretrained(
        str(path), config=qcfg, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model = model.float().eval()
    missing = [k for k in info.get("missing_keys", []) if k != "lm_head.weight" or not config["tie_word_embeddings"]]
    if missing:
        raise RuntimeError(f"transformers did not find {missing} in {path}")
    state = model.state_dict()
    for name, ref in weights.items():
        if name in state and not torch.equal(state[name].float(), ref):
            raise RuntimeError(f"transformers loaded {name} with different values")
    expected_extra = {k for k in weights if k not in state}
    print(f"loaded {path} in transformers; extra (MSA-only) tensors: {sorted(expected_extra)}")
    lm = model.lm_head.weight
    emb = model.model.embed_tokens.weight
    if config["tie_word_embeddings"] and not torch.equal(lm, emb):
        raise RuntimeError("tied lm_head does not equal embed_tokens after loading")
    if not config["tie_word_embeddings"] and not torch.equal(lm.float(), weights["lm_head.weight"]):
        raise RuntimeError("untied lm_head.weight was not loaded")
    return model


def top2_gap(logits: torch.Tensor) -> float:
    """top1 - top2 of a 1-D logit vector."""
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def draw_tokens(seed: int, label: str, n: int, vocab: int) -> torch.Tensor:
    """n token ids in [0, vocab) from a generator seeded by (seed, label)."""
    return torch.randint(0, vocab, (n,), generator=tensor_generator(seed, f"tokens:{label}"), dtype=torch.int64)


@torch.no_grad()
def greedy_reference(model: Qwen3ForCausalLM, prompt: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit argmax loop with full recompute; EOS does not stop it. Returns (continuation, gaps)."""
    ids = prompt.clone()
    out, gaps = [], []
    for _ in range(steps):
        logits = model(input_ids=ids[None]).logits[0, -1].float()
        nxt = int(torch.argmax(logits))
        gaps.append(top2_gap(logits))
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([nxt])])
    return torch.tensor(out, dtype=torch.int64), torch.tensor(gaps, dtype=torch.float32)


@torch.no_grad()
def greedy_generate(model: Qwen3ForCausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """The same continuation through model.generate(do_sample=False) (KV cache), EOS disabled.

    generate() fills every unset field of the passed GenerationConfig from model.generation_config
    (read from generation_config.json, which lists EOS ids), so eos_token_id=None alone does not
    stop it from ending at an EOS id: the model's own generation config is swapped out meanwhile.
    """
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=steps, eos_token_id=None, pad_token_id=0)
    saved = model.generation_config
    model.generation_config = gen_cfg
    try:
        out = model.generate(input_ids=prompt[None], attention_mask=torch.ones_like(prompt)[None],
                             generation_config=gen_cfg)
    finally:
        model.generation_config = saved
    return out[0, prompt.numel():]


@torch.no_grad()
def compute_goldens(model: Qwen3ForCausalLM, args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], dict]:
    """Golden tensors and a summary for printing."""
    vocab = args.vocab
    tensors: dict[str, torch.Tensor] = {}
    scales = []
    for i, n in enumerate(args.seq_lens):
        tokens = draw_tokens(args.data_seed, f"seq{i}", n, vocab)
        logits = model(input_ids=tokens[None]).logits[0].float()
        if logits.shape != (n, vocab) or not torch.isfinite(logits).all():
            raise RuntimeError(f"seq{i}: bad logits {tuple(logits.shape)}")
        tensors[f"seq{i}.tokens"] = tokens.to(torch.int32)
        tensors[f"seq{i}.logits"] = logits.contiguous()
        scales.append((n, float(logits.std()), float(logits.abs().max())))

    prompt = draw_tokens(args.data_seed, "greedy", args.greedy_prompt_len, vocab)
    continuation, gaps = greedy_reference(model, prompt, args.greedy_steps)
    generated = greedy_generate(model, prompt, args.greedy_steps)
    if not torch.equal(generated.cpu(), continuation):
        raise RuntimeError(f"argmax loop {continuation.tolist()} != generate() {generated.tolist()}")
    min_gap = float(gaps.min())
    if min_gap < args.min_gap:
        step = int(torch.argmin(gaps))
        raise SystemExit(f"error: greedy top1-top2 gap {min_gap:.3g} at step {step} is below {args.min_gap:g}; "
                         f"the golden would be fragile -- choose another --seed / --data-seed")
    tensors["greedy.prompt"] = prompt.to(torch.int32)
    tensors["greedy.continuation"] = continuation.to(torch.int32)
    tensors["greedy.gaps"] = gaps
    tensors["greedy.min_gap"] = torch.tensor([min_gap], dtype=torch.float32)
    summary = {"scales": scales, "min_gap": min_gap, "continuation": continuation.tolist(),
               "eos_in_continuation": any(t in args.gen_eos_ids for t in continuation.tolist())}
    return tensors, summary


def golden_metadata(args: argparse.Namespace, argv: list[str]) -> dict[str, str]:
    """safetensors __metadata__ (string to string)."""
    return {
        "command": shlex.join(["python3", "tools/make_tiny_checkpoint.py", *argv]),
        "config_name": args.name,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "safetensors_version": safetensors.__version__,
        "numpy_version": np.__version__,
        "seed": str(args.seed),
        "data_seed": str(args.data_seed),
        "seq_lens": ",".join(str(n) for n in args.seq_lens),
        "greedy_steps": str(args.greedy_steps),
        "reference": "transformers Qwen3ForCausalLM, float32, eager attention, causal, positions 0..n-1; "
                     "greedy: argmax loop with full recompute, EOS ignored, equal to generate(do_sample=False)",
    }


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()  # the expected "UNEXPECTED router keys" load report

    config = make_config(args)
    gen_config = make_generation_config(args)
    qcfg = to_qwen3_config(config)
    weights = make_weights(args, qcfg)
    n_params = sum(t.numel() for t in weights.values())
    print(f"[{args.name}] {len(weights)} tensors, {n_params} parameters, router layers "
          f"{parse_router_layers(args.router_layers, args.layers)}, aux_loss_method {args.aux_loss_method}")

    outputs = [(args.out, args.dtype)]
    if args.twin_out is not None:
        outputs.append((args.twin_out, "f32" if args.dtype == "bf16" else "bf16"))
    for path, dtype in outputs:
        write_checkpoint(path, dtype, config, gen_config, weights, args)
        check_file_values(path / "model.safetensors", weights, dtype)
        print(f"wrote {path} ({dtype}, {(path / 'model.safetensors').stat().st_size} bytes of weights)")
    if args.twin_out is not None:
        check_twins(args.out / "model.safetensors", args.twin_out / "model.safetensors")

    # Goldens come from the f32 file when one was written (same values as bf16 by construction).
    ref_dir = next((p for p, d in outputs if d == "f32"), args.out)
    model = load_reference_model(ref_dir, config, weights)
    if args.goldens is not None:
        tensors, summary = compute_goldens(model, args)
        args.goldens.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(tensors, args.goldens, golden_metadata(args, argv))
        for n, std, amax in summary["scales"]:
            print(f"[{args.name}] seq len {n:4d}: logits std {std:.3f}, max |logit| {amax:.3f}")
        print(f"[{args.name}] greedy continuation {summary['continuation']}"
              f"{' (contains an EOS id)' if summary['eos_in_continuation'] else ''}")
        print(f"[{args.name}] greedy min top1-top2 gap {summary['min_gap']:.6f}")
        print(f"wrote {args.goldens} ({args.goldens.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
