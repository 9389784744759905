"""Names shared by the fixture build and the warm start: the report file, the loss mask label and the device choice.

Example:
    >>> resolve_device("cpu"), REPORT_FILE
    ('cpu', 'report.json')
"""

from __future__ import annotations

from igpo_env._validation import check_choice

__all__ = ["DEVICES", "IGNORE_INDEX", "REPORT_FILE", "resolve_device"]

REPORT_FILE = "report.json"
"""Quality report written into a built model directory (its presence marks a finished build)."""

IGNORE_INDEX = -100
"""Label of tokens excluded from the loss."""

DEVICES = ("auto", "cpu", "cuda")
"""Devices a build can train on; ``auto`` is CUDA when torch sees a GPU, else the CPU."""


def resolve_device(device: str = "auto") -> str:
    """Return the device a build trains and evaluates on: ``"cpu"`` or ``"cuda"``.

    A GPU runs the same recipe (budgets are in tokens or steps, so a CUDA build follows the same schedule; its weights
    differ from a CPU build's only by floating-point rounding).

    Raises:
        ValueError: for a device not in :data:`DEVICES`, or ``"cuda"`` on a machine where torch sees no GPU.

    Example:
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        ValueError: `device` must be one of ('auto', 'cpu', 'cuda'), got 'tpu'
    """
    check_choice("device", device, DEVICES)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device
