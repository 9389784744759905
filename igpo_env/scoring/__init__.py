"""Scorers: per-token log-probs of the gold answer given a transcript, and the pure information-gain math.

Heavy backends (``HFScorer``, ``VLLMScorer``, ...) are imported lazily on first attribute access.

Example:
    >>> from igpo_env.scoring import OverlapScorer, information_gain
    >>> round(information_gain(-2.0, -1.0, mode="log_prob_diff"), 3)
    1.0
"""

from __future__ import annotations

import importlib
from typing import Any

from igpo_env.scoring.base import CachingScorer, Context, OverlapScorer, Scorer
from igpo_env.scoring.templates import CHATML, IGPO_TEMPLATE, ChatFormat, IGTemplate, render_scoring_prefix

_LAZY = {
    "information_gain": "igpo_env.scoring.math",
    "aggregate_aliases": "igpo_env.scoring.math",
    "HFScorer": "igpo_env.scoring.hf",
    "VLLMScorer": "igpo_env.scoring.vllm",
    "OpenAICompatScorer": "igpo_env.scoring.openai_compat",
    "RemoteScorer": "igpo_env.scoring.client",
}

__all__ = [
    "Scorer",
    "CachingScorer",
    "Context",
    "OverlapScorer",
    "ChatFormat",
    "CHATML",
    "IGTemplate",
    "IGPO_TEMPLATE",
    "render_scoring_prefix",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'igpo_env.scoring' has no attribute {name!r}")
