"""Argument checks shared by constructors and configs; each error names the argument, the value received and the rule.

One home for the numeric and choice validations of the package (``check_int``, ``check_number``, ``check_fraction``,
``check_choice``): constructors call these instead of writing ``if x < 0: raise ValueError(...)`` by hand.
``optional=True`` also accepts ``None`` (returned as is); ``strict`` makes one or both bounds exclusive.

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
    ValueError: `temperature` must be a finite number > 0, got 0.0
    >>> check_number("gpu_memory_utilization", 0, minimum=0, maximum=1, strict="minimum")
    Traceback (most recent call last):
    ...
    ValueError: `gpu_memory_utilization` must be a number in (0, 1], got 0
    >>> check_int("max_items", None, minimum=1, optional=True) is None
    True
    >>> check_choice("mode", "prob_diff", ("prob_diff", "log_prob_diff"))
    'prob_diff'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any, Literal, TypeVar, overload

__all__ = ["check_int", "check_number", "check_fraction", "check_choice"]

T = TypeVar("T")

Strict = bool | Literal["minimum", "maximum"]
"""Which bounds are exclusive: ``False`` neither, ``True`` both, ``"minimum"`` / ``"maximum"`` that one only."""


def _fmt(bound: float) -> str:
    """``0.0`` -> ``"0"``, ``0.5`` -> ``"0.5"``: bounds read as written by a person."""
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _open_bounds(strict: Strict) -> tuple[bool, bool]:
    """Whether the (minimum, maximum) bounds are exclusive under ``strict``."""
    return strict is True or strict == "minimum", strict is True or strict == "maximum"


def _rule(kind: str, minimum: float | None, maximum: float | None, strict: Strict, optional: bool) -> str:
    """Say the rule in words, e.g. ``"an int >= 1"``, ``"a number in (0, 1]"``, ``"an int >= 0 or None"``."""
    low_open, high_open = _open_bounds(strict)
    if minimum is not None and maximum is not None:
        rule = f"{kind} in {'(' if low_open else '['}{_fmt(minimum)}, {_fmt(maximum)}{')' if high_open else ']'}"
    elif minimum is not None:
        rule = f"{kind} {'>' if low_open else '>='} {_fmt(minimum)}"
    elif maximum is not None:
        rule = f"{kind} {'<' if high_open else '<='} {_fmt(maximum)}"
    else:
        rule = kind
    return f"{rule} or None" if optional else rule


def _in_bounds(value: float, minimum: float | None, maximum: float | None, strict: Strict) -> bool:
    low_open, high_open = _open_bounds(strict)
    if minimum is not None and (value <= minimum if low_open else value < minimum):
        return False
    return maximum is None or (value < maximum if high_open else value <= maximum)


@overload
def check_int(
    name: str, value: Any, minimum: int | None = ..., maximum: int | None = ..., *, optional: Literal[False] = ...
) -> int: ...
@overload
def check_int(
    name: str, value: Any, minimum: int | None = ..., maximum: int | None = ..., *, optional: bool
) -> int | None: ...
def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *, optional: bool = False
) -> int | None:
    """Return ``value`` if it is an int (not a bool) in [``minimum``, ``maximum``]; raise ``ValueError`` naming it.

    Args:
        name: The argument's name, as the caller spells it.
        value: The value received.
        minimum: Lower bound, inclusive (``None``: none).
        maximum: Upper bound, inclusive (``None``: none).
        optional: Also accept ``None`` (returned as is).

    Example:
        >>> check_int("top_k", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: `top_k` must be an int >= 1, got 0
        >>> check_int("logprobs", 99, minimum=0, maximum=20)
        Traceback (most recent call last):
        ...
        ValueError: `logprobs` must be an int in [0, 20], got 99
    """
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not _in_bounds(int(value), minimum, maximum, False)
    ):
        raise ValueError(f"`{name}` must be {_rule('an int', minimum, maximum, False, optional)}, got {value!r}")
    return int(value)


@overload
def check_number(
    name: str,
    value: Any,
    minimum: float | None = ...,
    maximum: float | None = ...,
    strict: Strict = ...,
    *,
    optional: Literal[False] = ...,
) -> float: ...
@overload
def check_number(
    name: str,
    value: Any,
    minimum: float | None = ...,
    maximum: float | None = ...,
    strict: Strict = ...,
    *,
    optional: bool,
) -> float | None: ...
def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: Strict = False,
    *,
    optional: bool = False,
) -> float | None:
    """Return ``value`` as a finite float within bounds; raise ``ValueError`` naming it otherwise.

    Args:
        name: The argument's name, as the caller spells it.
        value: The value received.
        minimum: Lower bound (``None``: none).
        maximum: Upper bound (``None``: none).
        strict: Exclusive bounds: ``True`` both (``> minimum``, ``< maximum``), ``"minimum"`` or ``"maximum"`` that
            one only; ``False`` (default) both inclusive.
        optional: Also accept ``None`` (returned as is).

    Example:
        >>> check_number("beta", -1, minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: `beta` must be a finite number >= 0, got -1
        >>> check_number("pad_slack", 0.5, minimum=1, optional=True)
        Traceback (most recent call last):
        ...
        ValueError: `pad_slack` must be a finite number >= 1 or None, got 0.5
    """
    if value is None and optional:
        return None
    # both bounds given: "finite" goes without saying
    kind = "a number" if minimum is not None and maximum is not None else "a finite number"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not _in_bounds(float(value), minimum, maximum, strict)
    ):
        raise ValueError(f"`{name}` must be {_rule(kind, minimum, maximum, strict, optional)}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a number in [0, 1]; raise ``ValueError`` naming it otherwise."""
    return check_number(name, value, minimum=0, maximum=1)


def check_choice(name: str, value: T, choices: Collection[T]) -> T:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` listing them otherwise.

    Put ``None`` among ``choices`` where it is allowed.

    Example:
        >>> check_choice("alias", "all", ("first", "max", "mean"))
        Traceback (most recent call last):
        ...
        ValueError: `alias` must be one of ('first', 'max', 'mean'), got 'all'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)!r}, got {value!r}")
    return value
