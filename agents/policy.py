"""Policy LM helpers shared by training (:mod:`agents.igpo.pipeline`), the warm start and evaluation.

Heavy libraries (transformers) are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from igpo_env._validation import check_int

__all__ = ["load_policy", "freeze_bottom"]


def load_policy(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local HF directory or a packaged model name (float32, eval mode).

    Args:
        path: An HF model directory or a name of ``igpo-env model list`` (fetched on first use).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from igpo_env.models import resolve_model

    path = Path(resolve_model(str(path)))
    if not path.exists():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist (run `igpo-env bootstrap` first?)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
    return model.eval(), tokenizer


def freeze_bottom(model: Any, n_layers: int) -> None:
    """Freeze the input embeddings and the first ``n_layers`` decoder layers (their backward is then skipped).

    Args:
        model: A transformers causal LM (``get_decoder().layers``).
        n_layers: Bottom decoder layers to freeze, at most the model's layer count (0: nothing is frozen).

    Raises:
        ValueError: for a negative ``n_layers`` or more layers than the model has.
    """
    if check_int("freeze_layers", n_layers, minimum=0) == 0:
        return
    layers = model.get_decoder().layers
    if n_layers > len(layers):
        raise ValueError(f"`freeze_layers` must be <= the model's {len(layers)} layers, got {n_layers}")
    model.get_input_embeddings().requires_grad_(False)
    for layer in layers[:n_layers]:
        layer.requires_grad_(False)
