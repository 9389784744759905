"""The YAML configs shipped with ``igpo-env train``, and their loader.

- ``cpu.yaml`` (:data:`TRAIN_DEFAULTS_FILE`): the defaults of ``igpo-env train``, the one place for their values.
  The command loads it before ``--config FILE.yaml`` and the flags, as ``trl``'s parser does with a config file.
- ``qwen2.5-7b-gpu.yaml``: an IGPO-paper-like GPU run (``igpo-env train --config`` with its path).

Only the standard library and PyYAML are imported here, so the CLI parser stays light.

Example:
    >>> d = train_defaults()
    >>> d["max_turns"], d["prompts_per_step"] * d["num_generations"]
    (5, 8)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR", "TRAIN_DEFAULTS_FILE", "load_config", "train_defaults"]

CONFIG_DIR = Path(__file__).resolve().parent
"""Directory of the shipped configs."""

TRAIN_DEFAULTS_FILE = CONFIG_DIR / "cpu.yaml"
"""The defaults of ``igpo-env train`` (the CPU-sized run)."""


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict of option name -> value.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If the file does not hold a mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of options, got {type(data).__name__}")
    return data


def train_defaults() -> dict[str, Any]:
    """Return the defaults of ``igpo-env train`` (a fresh dict read from :data:`TRAIN_DEFAULTS_FILE`)."""
    return load_config(TRAIN_DEFAULTS_FILE)
