"""Numeric argument checks shared by constructors and configs; each error names the argument and the value received.

Example:
    >>> check_int("steps", 3, minimum=1)
    3
    >>> check_fraction("share", 1.5)
    Traceback (most recent call last):
    ...
    ValueError: `share` must be a number in [0, 1], got 1.5
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int", "check_fraction"]


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) >= ``minimum``; raise ``ValueError`` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a number in [0, 1]; raise ``ValueError`` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}")
    return float(value)
