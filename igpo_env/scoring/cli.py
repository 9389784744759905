"""``igpo-env serve scorer``: host one scorer model over HTTP with dynamic batching.

Examples::

    igpo-env serve scorer --model smollm2-135m-instruct                      # packaged model; CPU or GPU
    igpo-env serve scorer --model Qwen/Qwen2.5-7B-Instruct --dtype bfloat16 --max-batch 128 --port 8001
    igpo-env serve scorer --model /models/qwen --backend vllm               # vLLM engine (GPU + vllm)
    igpo-env serve scorer --model smollm2-135m-instruct --max-cache-mb 4096  # prefix KV caches <= 4 GiB

Clients: ``RemoteScorer("http://127.0.0.1:8001")`` (``POST /score``, ``GET /health``).
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from igpo_env.scoring.base import Scorer

__all__ = ["add_arguments", "run", "build_scorer"]

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm")
DTYPE_CHOICES = ("float32", "bfloat16", "float16", "auto")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve scorer`` arguments (defaults are literals so that ``--help`` imports nothing heavy)."""
    parser.add_argument(
        "--model", required=True, help="Causal LM directory, a packaged model name (igpo-env model list) or a hub id."
    )
    parser.add_argument("--tokenizer", default=None, help="Tokenizer directory (default: --model).")
    parser.add_argument("--backend", choices=BACKENDS, default="hf", help="hf (transformers) or vllm (default: hf).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: 127.0.0.1, loopback only).")
    parser.add_argument("--port", type=int, default=8001, help="Port (default: 8001).")
    parser.add_argument("--device", default="auto", help="hf backend: cpu, cuda, cuda:1 or auto (default: auto).")
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="float32", help="Model dtype (default: float32; bf16 on GPU)."
    )
    parser.add_argument("--max-batch", type=int, default=64, help="Most pairs per forward pass (default: 64).")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="How long to gather concurrent requests (default: 5)."
    )
    parser.add_argument("--max-items", type=int, default=256, help="Most pairs per request (default: 256).")
    parser.add_argument(
        "--max-chars", type=int, default=200_000, help="Most characters per context or target (default: 200000)."
    )
    parser.add_argument(
        "--max-cache-mb",
        type=int,
        default=None,
        help="hf backend: MiB of per-episode prefix KV caches kept, least recently used evicted; 0 disables them "
        "(default: a quarter of the RAM, or of the free GPU memory).",
    )


def _check_model(model: str) -> str:
    from igpo_env.models import is_registered, resolve_model

    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if is_registered(model):
        return resolve_model(model)
    if _HUB_ID.match(model) and not model.startswith((".", "/", "~")):
        return model
    raise FileNotFoundError(f"--model {model!r}: no such model directory (save one with save_pretrained)")


def build_scorer(args: argparse.Namespace) -> Scorer:
    """Build the scorer that ``serve scorer`` hosts from its parsed arguments."""
    model = _check_model(args.model)
    tokenizer = _check_model(args.tokenizer) if args.tokenizer else model
    if args.backend == "vllm":
        from igpo_env.scoring.vllm import VLLMScorer

        return VLLMScorer(model, tokenizer=tokenizer, dtype=args.dtype, batch_size=args.max_batch)
    from igpo_env.scoring.hf import HFScorer

    device = None if args.device == "auto" else args.device
    return HFScorer(
        model,
        tokenizer=tokenizer,
        device=device,
        dtype=args.dtype,
        batch_size=args.max_batch,
        max_cache_bytes=None if args.max_cache_mb is None else args.max_cache_mb * MIB,
    )


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted."""
    from igpo_env._http import MAX_PORT
    from igpo_env._validation import check_int
    from igpo_env.scoring.server import serve, validate_limits

    check_int("--port", args.port, minimum=1, maximum=MAX_PORT)
    limits = {
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "max_items": args.max_items,
        "max_chars": args.max_chars,
    }
    validate_limits(**limits)  # before the (slow) model load
    if args.max_cache_mb is not None:
        check_int("--max-cache-mb", args.max_cache_mb, minimum=0)
        if args.backend != "hf":
            raise ValueError("--max-cache-mb bounds the hf backend's prefix caches; vllm manages its own KV memory")
    scorer = build_scorer(args)
    print(f"serving {args.backend} scorer {args.model} on http://{args.host}:{args.port} (POST /score, GET /health)")
    serve(scorer, host=args.host, port=args.port, **limits)
    return 0
