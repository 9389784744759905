"""Argument checks shared by constructors and configs; each error names the argument, the value received and the rule.

One home for the numeric and choice validations of the package (``check_int``, ``check_number``, ``check_fraction``,
``check_choice``): constructors call these instead of writing ``if x < 0: raise ValueError(...)`` by hand.

Example:
    >>> check_int("steps", 3, minimum=1)
    3
    >>> check_fraction("share", 1.5)
    Traceback (most recent call last):
    ...
    ValueError: `share` must be a number in [0, 1], got 1.5
    >>> check_number("temperature", 0.0, minimum=0.0, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: `temperature` must be a number > 0.0, got 0.0
    >>> check_choice("mode", "prob_diff", ("prob_diff", "log_prob_diff"))
    'prob_diff'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any, TypeVar

__all__ = ["check_int", "check_number", "check_fraction", "check_choice"]

T = TypeVar("T")


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in [``minimum``, ``maximum``]; raise ``ValueError`` naming it.

    Example:
        >>> check_int("top_k", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: `top_k` must be an int >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be an int <= {maximum}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """Return ``value`` as a finite float within bounds; raise ``ValueError`` naming it otherwise.

    Args:
        name: The argument's name, as the caller spells it.
        value: The value received.
        minimum: Lower bound (``None``: none).
        maximum: Upper bound (``None``: none).
        strict: Bounds are exclusive (``> minimum``, ``< maximum``) instead of inclusive.

    Example:
        >>> check_number("beta", -1, minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: `beta` must be a number >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    v = float(value)
    low_op, high_op = (">", "<") if strict else (">=", "<=")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ValueError(f"`{name}` must be a number {low_op} {minimum}, got {value!r}")
    if maximum is not None and (v >= maximum if strict else v > maximum):
        raise ValueError(f"`{name}` must be a number {high_op} {maximum}, got {value!r}")
    return v


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a number in [0, 1]; raise ``ValueError`` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}")
    return float(value)


def check_choice(name: str, value: T, choices: Collection[T]) -> T:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` listing them otherwise.

    Example:
        >>> check_choice("alias", "all", ("first", "max", "mean"))
        Traceback (most recent call last):
        ...
        ValueError: `alias` must be one of ('first', 'max', 'mean'), got 'all'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)!r}, got {value!r}")
    return value
