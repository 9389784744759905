"""IGPO on TRL: :class:`IGPOConfig`, :class:`IGPOTrainer` and the pure advantage math (:mod:`agents.igpo.advantages`).

The config and trainer import TRL and torch, so they load on first attribute access.

Example:
    >>> from agents.igpo import advantages
    >>> advantages.ADVANTAGE_NORMALIZATIONS
    ('joint', 'separate')
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["IGPOConfig", "IGPOTrainer"]

_LAZY = {"IGPOConfig": "agents.igpo.igpo_config", "IGPOTrainer": "agents.igpo.igpo_trainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents.igpo' has no attribute {name!r}")
