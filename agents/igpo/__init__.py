"""IGPO on TRL: :class:`IGPOConfig`, :class:`IGPOTrainer` and the pure advantage math (:mod:`agents.igpo.advantages`).

The config and trainer import TRL and torch, so they load on first attribute access. The training pipeline as
functions (``run_training``, ``default_train_config``, ``RunArguments``) is :mod:`agents.igpo.pipeline`; the
``igpo-env train`` / ``eval`` commands are :mod:`agents.igpo.cli`; the shipped YAML configs (the CPU defaults in
``cpu.yaml``) are :mod:`agents.igpo.configs`.

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
