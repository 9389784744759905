"""Pure information-gain math (IGPO): no model calls, no I/O.

All inputs are *mean log-probabilities* of the gold answer tokens (``TargetScore.mean_logprob``), so that
``p = exp(mean_logprob)`` is IGPO's per-token geometric-mean probability.

- ``mode="prob_diff"`` (IGPO default): ``r_t = p_t - p_{t-1}``.
- ``mode="log_prob_diff"``: ``r_t = mean_logprob_t - mean_logprob_{t-1}``.

Gold aliases are combined into one value per turn before differencing (:func:`aggregate_aliases`):
``"first"`` (IGPO) takes the first alias; ``"max"`` / ``"mean"`` take the max / mean over aliases of ``p`` for
``prob_diff`` and of the mean log-prob for ``log_prob_diff``. The aggregate is returned as a mean log-prob in every
case (``log(mean p)`` for ``prob_diff`` + ``"mean"``), so :func:`information_gain` applies unchanged.

Example:
    >>> import math
    >>> round(information_gain(math.log(0.2), math.log(0.5)), 6)
    0.3
    >>> round(information_gain(math.log(0.2), math.log(0.5), mode="log_prob_diff"), 6)
    0.916291
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from igpo_env._validation import check_choice

__all__ = [
    "MODES",
    "ALIAS_MODES",
    "information_gain",
    "aggregate_aliases",
    "alias_targets",
    "potential",
    "check_mode",
    "check_alias",
]

MODES = ("prob_diff", "log_prob_diff")
"""Supported information-gain modes (the one list: wrappers, rollouts and the trainer's config check against it)."""

ALIAS_MODES = ("first", "max", "mean")
"""Supported ways to combine gold aliases (the one list, like :data:`MODES`)."""


def check_mode(mode: str) -> str:
    """Validate an information-gain mode and return it.

    Example:
        >>> check_mode("diff")
        Traceback (most recent call last):
        ...
        ValueError: `mode` must be one of ('prob_diff', 'log_prob_diff'), got 'diff'
    """
    return check_choice("mode", mode, MODES)


def check_alias(alias: str) -> str:
    """Validate an alias-aggregation mode and return it.

    Example:
        >>> check_alias("min")
        Traceback (most recent call last):
        ...
        ValueError: `alias` must be one of ('first', 'max', 'mean'), got 'min'
    """
    return check_choice("alias", alias, ALIAS_MODES)


def potential(mean_logprob: float, mode: str = "prob_diff") -> float:
    """Return the potential whose difference is the reward: ``p = exp(mean_logprob)`` or the mean log-prob itself.

    Example:
        >>> potential(0.0), potential(-1.5, mode="log_prob_diff")
        (1.0, -1.5)
    """
    check_mode(mode)
    return math.exp(mean_logprob) if mode == "prob_diff" else float(mean_logprob)


def information_gain(prev: float, cur: float, mode: str = "prob_diff") -> float:
    """Information gain of one turn from the mean log-probs of the gold answer before and after it.

    Args:
        prev: Mean log-prob of the gold answer tokens after turn t-1 (turn 0: the bare prompt).
        cur: Mean log-prob after turn t.
        mode: ``"prob_diff"`` -> ``exp(cur) - exp(prev)``; ``"log_prob_diff"`` -> ``cur - prev``.

    Returns:
        The reward r_t.

    Example:
        >>> information_gain(0.0, 0.0)
        0.0
        >>> round(information_gain(-1.0, 0.0), 4)  # 1 - e^-1
        0.6321
    """
    return potential(cur, mode) - potential(prev, mode)


def alias_targets(aliases: Sequence[str], alias: str = "first") -> list[str]:
    """Return the gold aliases that are scored: the first one for ``alias="first"`` (IGPO), all of them otherwise.

    Their mean log-probs, in this order, are what :func:`aggregate_aliases` combines.

    Raises:
        ValueError: On an unknown ``alias`` or an empty ``aliases``.

    Example:
        >>> alias_targets(("Karsel", "Karsel City"), "first"), alias_targets(("Karsel", "Karsel City"), "max")
        (['Karsel'], ['Karsel', 'Karsel City'])
    """
    check_alias(alias)
    if isinstance(aliases, str):
        raise TypeError(f"`aliases` must be a sequence of strings (the gold aliases), got the str {aliases!r}")
    if not aliases:
        raise ValueError("`aliases` holds no gold answer; the env must give at least one alias")
    return list(aliases[:1] if alias == "first" else aliases)


def aggregate_aliases(mean_logprobs: Sequence[float], alias: str = "first", mode: str = "prob_diff") -> float:
    """Combine the mean log-probs of several gold aliases into one mean log-prob.

    Args:
        mean_logprobs: One mean log-prob per alias, in the dataset's alias order (first = canonical).
        alias: ``"first"``: the first alias (IGPO). ``"max"``: the best alias (max p, equivalently max log-prob).
            ``"mean"``: ``log(mean of p)`` for ``prob_diff``, the mean of the log-probs for ``log_prob_diff``.
        mode: The information-gain mode the aggregate is used with.

    Returns:
        A mean log-prob, ready for :func:`information_gain`.

    Raises:
        ValueError: On an empty list or an unknown ``alias`` / ``mode``.

    Example:
        >>> import math
        >>> lps = [math.log(0.1), math.log(0.5)]
        >>> round(math.exp(aggregate_aliases(lps, "first")), 6), round(math.exp(aggregate_aliases(lps, "max")), 6)
        (0.1, 0.5)
        >>> round(math.exp(aggregate_aliases(lps, "mean")), 6)  # mean of p
        0.3
        >>> round(aggregate_aliases([-1.0, -3.0], "mean", mode="log_prob_diff"), 6)  # mean of log p
        -2.0
    """
    check_alias(alias)
    check_mode(mode)
    values = [float(x) for x in mean_logprobs]
    if not values:
        raise ValueError("`mean_logprobs` must hold at least one alias score, got an empty list")
    if alias == "first":
        return values[0]
    if alias == "max":
        return max(values)
    if mode == "log_prob_diff":
        return sum(values) / len(values)
    top = max(values)  # log-mean-exp, stable
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))
