"""Packaged pretrained models: a registry (data) and the fetch + GGUF conversion into a plain HF directory.

Every place that takes a model path also takes a registered name: ``HFScorer("smollm2-135m-instruct")``,
``igpo-env train --model smollm2-135m-instruct``, ``igpo-env serve scorer --model smollm2-135m-instruct``.
``igpo-env model fetch NAME`` fetches ahead of time; ``igpo-env model list`` shows the registry.

Example:
    >>> from igpo_env.models import DEFAULT_MODEL, MODELS
    >>> DEFAULT_MODEL in MODELS, MODELS[DEFAULT_MODEL].license
    (True, 'Apache-2.0')
"""

from __future__ import annotations

from igpo_env.models.fetch import MARKER, assemble_gguf, convert_gguf, ensure_model, model_dir, resolve_model
from igpo_env.models.registry import DEFAULT_MODEL, MODELS, PackagedModel, PackageFile, get_model_spec, is_registered

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MARKER",
    "PackageFile",
    "PackagedModel",
    "assemble_gguf",
    "convert_gguf",
    "ensure_model",
    "get_model_spec",
    "is_registered",
    "model_dir",
    "resolve_model",
]
