"""Agents for SearchQA-v0: IGPO/GRPO training on TRL, LLM agents, the embedded policy LM, scripted baselines.

``IGPOConfig`` and ``IGPOTrainer`` are loaded on first access, so ``import agents`` does not import torch or TRL.
The package name ``agents`` is also used by another PyPI project (``openai-agents``): install igpo-env in its own venv.

Example:
    >>> import agents
    >>> sorted(agents.__all__)
    ['IGPOConfig', 'IGPOTrainer']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["IGPOConfig", "IGPOTrainer"]

_LAZY = {"IGPOConfig": "agents.igpo.igpo_config", "IGPOTrainer": "agents.igpo.igpo_trainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
