"""The YAML configs shipped with ``igpo-env train``, and their loader.

- ``cpu.yaml`` (:data:`TRAIN_DEFAULTS_FILE`): the defaults of ``igpo-env train``, the one place for their values.
  The command loads it before ``--config FILE.yaml`` and the flags, as ``trl``'s parser does with a config file.
- ``qwen2.5-7b-gpu.yaml``: an IGPO-paper-like GPU run (``igpo-env train --config`` with its path).
- ``accelerate/*.yaml`` (:func:`accelerate_config`): ``accelerate launch --config_file`` files for multi-process
  training: ``cpu-2proc`` (2 CPU processes, gloo), ``ddp``, ``zero2``, ``zero3`` (DeepSpeed) and ``fsdp`` (FSDP2).

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

__all__ = [
    "CONFIG_DIR",
    "TRAIN_DEFAULTS_FILE",
    "ACCELERATE_CONFIG_DIR",
    "ACCELERATE_CONFIGS",
    "load_config",
    "train_defaults",
    "accelerate_config",
]

CONFIG_DIR = Path(__file__).resolve().parent
"""Directory of the shipped configs."""

TRAIN_DEFAULTS_FILE = CONFIG_DIR / "cpu.yaml"
"""The defaults of ``igpo-env train`` (the CPU-sized run)."""

ACCELERATE_CONFIG_DIR = CONFIG_DIR / "accelerate"
"""Directory of the shipped ``accelerate launch --config_file`` files."""

ACCELERATE_CONFIGS = ("cpu-2proc", "ddp", "zero2", "zero3", "fsdp")
"""Names of the shipped accelerate configs (``ACCELERATE_CONFIG_DIR / f"{name}.yaml"``)."""


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


def accelerate_config(name: str) -> Path:
    """Return the path of a shipped accelerate config, for ``accelerate launch --config_file``.

    Raises:
        ValueError: for a name not in :data:`ACCELERATE_CONFIGS`.

    Example:
        >>> accelerate_config("zero2").name
        'zero2.yaml'
        >>> accelerate_config("zero1")
        Traceback (most recent call last):
        ...
        ValueError: no shipped accelerate config 'zero1'; choose one of ('cpu-2proc', 'ddp', 'zero2', 'zero3', 'fsdp')
    """
    if name not in ACCELERATE_CONFIGS:
        raise ValueError(f"no shipped accelerate config {name!r}; choose one of {ACCELERATE_CONFIGS}")
    return ACCELERATE_CONFIG_DIR / f"{name}.yaml"
