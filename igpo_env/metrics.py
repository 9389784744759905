"""Answer metrics: normalization, exact match, token F1 and cover-EM, each the max over gold aliases.

Two answer normalizations are offered (:data:`ANSWER_NORMALIZATIONS`, typed :data:`Normalization`):

- ``"squad"`` (default; Search-R1, FlashRAG): lowercase, strip punctuation, drop the articles a/an/the, collapse
  whitespace. F1 counts tokens as a multiset.
- ``"igpo"`` (IGPO's reward): lowercase, every punctuation character becomes a space, no article removal. F1 counts
  tokens as a *set*.

Functions: :func:`normalize_answer`, :func:`exact_match`, :func:`f1`, :func:`cover_em`, :func:`extract_answer`,
:func:`score_answer`.

``NORMALIZATIONS`` is kept as an alias of :data:`ANSWER_NORMALIZATIONS` for existing imports; the longer name tells
answer normalization apart from the advantage normalizations of the IGPO trainer (``agents.igpo.advantages``).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from igpo_env._validation import check_choice

__all__ = [
    "Normalization",
    "ANSWER_NORMALIZATIONS",
    "NORMALIZATIONS",
    "normalize_answer",
    "exact_match",
    "f1",
    "cover_em",
    "extract_answer",
    "score_answer",
    "METRICS",
]

Normalization = Literal["squad", "igpo"]
ANSWER_NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)
"""The answer normalizations, ``("squad", "igpo")``."""
NORMALIZATIONS = ANSWER_NORMALIZATIONS
"""Alias of :data:`ANSWER_NORMALIZATIONS` (the name before v0.2.0)."""
_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
_PUNCT_TABLE_DELETE = str.maketrans("", "", string.punctuation)
_PUNCT_TABLE_SPACE = str.maketrans({c: " " for c in string.punctuation})
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", flags=re.DOTALL)


def normalize_answer(s: str, normalization: Normalization = "squad") -> str:
    """Normalize an answer string for comparison.

    Args:
        s: The answer text.
        normalization: ``"squad"`` or ``"igpo"`` (see the module docstring).

    Returns:
        The normalized string, tokens separated by single spaces.

    Raises:
        ValueError: for an unknown ``normalization``.

    Example:
        >>> normalize_answer("The  Eiffel-Tower!")
        'eiffeltower'
        >>> normalize_answer("The  Eiffel-Tower!", "igpo")
        'the eiffel tower'
    """
    check_choice("normalization", normalization, ANSWER_NORMALIZATIONS)
    s = str(s).lower()
    if normalization == "squad":
        s = s.translate(_PUNCT_TABLE_DELETE)
        s = _ARTICLES.sub(" ", s)
    else:
        s = s.translate(_PUNCT_TABLE_SPACE)
    return " ".join(s.split())


def _as_golds(golds: str | Sequence[str]) -> list[str]:
    if isinstance(golds, str):
        return [golds]
    out = [str(g) for g in golds]
    if not out:
        raise ValueError("`golds` must hold at least one gold answer, got an empty list")
    return out


def _em_one(pred: str, gold: str, normalization: Normalization) -> float:
    return float(normalize_answer(pred, normalization) == normalize_answer(gold, normalization))


def _f1_one(pred: str, gold: str, normalization: Normalization) -> float:
    p = normalize_answer(pred, normalization).split()
    g = normalize_answer(gold, normalization).split()
    if not p or not g:
        return float(p == g)
    if normalization == "igpo":
        common = len(set(p) & set(g))
        p_len, g_len = len(set(p)), len(set(g))
    else:
        common = sum((Counter(p) & Counter(g)).values())
        p_len, g_len = len(p), len(g)
    if common == 0:
        return 0.0
    precision, recall = common / p_len, common / g_len
    return 2 * precision * recall / (precision + recall)


def _cover_one(pred: str, gold: str, normalization: Normalization) -> float:
    g = normalize_answer(gold, normalization)
    p = normalize_answer(pred, normalization)
    if not g:
        return float(not p)
    return float(f" {g} " in f" {p} ")


def _max_over(fn: Callable[[str, str, Normalization], float]) -> Callable[..., float]:
    def metric(prediction: str, golds: str | Sequence[str], normalization: Normalization = "squad") -> float:
        check_choice("normalization", normalization, ANSWER_NORMALIZATIONS)
        return max(fn(str(prediction), g, normalization) for g in _as_golds(golds))

    metric.__name__ = fn.__name__.strip("_").replace("_one", "")
    return metric


def exact_match(prediction: str, golds: str | Sequence[str], normalization: Normalization = "squad") -> float:
    """Exact match after normalization, max over gold aliases.

    Example:
        >>> exact_match("the Nile", ["Nile River", "Nile"])
        1.0
        >>> exact_match("the Nile", "Nile", normalization="igpo")
        0.0
    """
    return _EM(prediction, golds, normalization)


def f1(prediction: str, golds: str | Sequence[str], normalization: Normalization = "squad") -> float:
    """Token-level F1 after normalization, max over gold aliases.

    ``squad`` counts tokens as a multiset, ``igpo`` as a set.

    Example:
        >>> round(f1("new york city", "New York"), 4)
        0.8
        >>> f1("a a b", "a b", normalization="igpo")
        1.0
    """
    return _F1(prediction, golds, normalization)


def cover_em(prediction: str, golds: str | Sequence[str], normalization: Normalization = "squad") -> float:
    """1.0 when a normalized gold answer appears (on token boundaries) inside the normalized prediction.

    Example:
        >>> cover_em("It is Paris, France", ["Paris"])
        1.0
        >>> cover_em("Parisian", ["Paris"])
        0.0
    """
    return _COVER(prediction, golds, normalization)


_EM = _max_over(_em_one)
_F1 = _max_over(_f1_one)
_COVER = _max_over(_cover_one)

METRICS: dict[str, Callable[..., float]] = {"em": exact_match, "f1": f1, "cover_em": cover_em}
"""Metric functions by the names the env and the evaluation use."""


def extract_answer(response: str) -> str | None:
    """Return the text inside the first ``<answer>...</answer>`` of a response, stripped, or ``None``.

    Example:
        >>> extract_answer("<think>hm</think><answer> Oslo </answer><answer>x</answer>")
        'Oslo'
        >>> extract_answer("no tags") is None
        True
    """
    m = _ANSWER_RE.search(response)
    return m.group(1).strip() if m else None


def score_answer(
    prediction: str, golds: str | Sequence[str], metric: str = "f1", normalization: Normalization = "squad"
) -> float:
    """Score ``prediction`` with the metric named ``metric`` (``em``, ``f1`` or ``cover_em``).

    Example:
        >>> score_answer("Oslo", ["oslo"], metric="em")
        1.0
    """
    check_choice("metric", metric, tuple(METRICS))
    return METRICS[metric](prediction, golds, normalization)
