"""The :class:`Scorer` protocol and a tiny deterministic stub scorer.

A scorer returns per-token log-probabilities of target strings (the gold answer) given contexts (the agent's
transcript). Contexts are either chat transcripts (``list[Message]``), which the scorer renders with the IGPO
pseudo-response template (:mod:`igpo_env.scoring.templates`), or already-rendered prefix strings, which are used
verbatim. Backends: :class:`~igpo_env.scoring.hf.HFScorer` (transformers, prefix KV reuse), ``VLLMScorer``,
``OpenAICompatScorer``, ``RemoteScorer`` (``igpo-env serve scorer``), and :class:`OverlapScorer` (a lexical stub for
docs and tests).

Tokenization convention (all model backends): the scored token ids are ``tokenize(prefix) + tokenize(target)``, each
tokenized separately with ``add_special_tokens=False``; only the target tokens are scored. Text after the target
(``"\\n</answer>"`` + end-of-turn) cannot change a causal LM's scores of earlier tokens, so it is never sent.

Example:
    >>> scorer = OverlapScorer()
    >>> isinstance(scorer, Scorer)
    True
    >>> [round(s.prob, 2) for s in scorer.score(["Karsel is a city.", "Nothing here."], ["Karsel", "Karsel"])]
    [0.9, 0.05]
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Hashable, Sequence
from typing import Protocol, runtime_checkable

from igpo_env._validation import check_number
from igpo_env.types import Message, TargetScore

__all__ = [
    "Scorer",
    "CachingScorer",
    "Context",
    "OverlapScorer",
    "validate_score_args",
    "context_text",
    "is_caching_scorer",
]

Context = list[Message] | str
"""A scoring context: a chat transcript (rendered by the scorer's template) or a rendered prefix string (verbatim)."""


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores target strings given contexts.

    ``score(contexts, targets)`` returns one :class:`~igpo_env.types.TargetScore` per (context, target) pair, in
    order. A context is a chat transcript (``list[Message]``; the scorer renders it with the chat template, the
    generation prompt and the IGPO pseudo-response, see :func:`~igpo_env.scoring.templates.render_scoring_prefix`) or
    a string used verbatim as the text before the target. Implementations batch the pairs as they see fit.

    Example:
        >>> isinstance(OverlapScorer(), Scorer)
        True
    """

    def score(self, contexts: Sequence[Context], targets: Sequence[str]) -> list[TargetScore]:
        """Score ``targets[i]`` given ``contexts[i]`` for every i."""
        ...


@runtime_checkable
class CachingScorer(Scorer, Protocol):
    """A :class:`Scorer` that can reuse work across calls whose contexts share a prefix (e.g. turns of one episode).

    ``score(..., cache_keys=keys)``: ``keys[i]`` names the stream that ``contexts[i]`` belongs to (one key per
    episode); the scorer may keep state (a KV cache) per key, and results must equal a call without keys.
    ``release(keys)`` drops that state (the wrapper calls it when an episode ends).

    Example:
        >>> isinstance(OverlapScorer(), CachingScorer)
        False
    """

    def score(
        self,
        contexts: Sequence[Context],
        targets: Sequence[str],
        cache_keys: Sequence[Hashable | None] | None = None,
    ) -> list[TargetScore]:
        """Score like :meth:`Scorer.score`, reusing the cached prefix state of ``cache_keys[i]`` when given."""
        ...

    def release(self, cache_keys: Sequence[Hashable]) -> None:
        """Forget the cached state of these keys (unknown keys are ignored)."""
        ...


def is_caching_scorer(scorer: object) -> bool:
    """Whether ``scorer`` caches prefixes: its ``score`` takes ``cache_keys`` and it has ``release(keys)``.

    The one test of :class:`CachingScorer` (a ``runtime_checkable`` ``isinstance`` sees the method names only, not
    the ``cache_keys`` argument): wrappers, rollouts and the scorer server pass cache keys only where it holds.

    Example:
        >>> is_caching_scorer(OverlapScorer())
        False
    """
    if not callable(getattr(scorer, "release", None)) or not callable(getattr(scorer, "score", None)):
        return False
    try:
        return "cache_keys" in inspect.signature(scorer.score).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a readable signature
        return False


def validate_score_args(contexts: Sequence[Context], targets: Sequence[str]) -> None:
    """Check the arguments of :meth:`Scorer.score`; raise ``TypeError``/``ValueError`` naming the bad item.

    Example:
        >>> validate_score_args(["a"], ["b", "c"])
        Traceback (most recent call last):
        ...
        ValueError: `contexts` and `targets` must have the same length, got 1 and 2
    """
    if isinstance(contexts, str) or isinstance(targets, str):
        raise TypeError("`contexts` and `targets` must be lists (one item per pair), got a bare str")
    if len(contexts) != len(targets):
        raise ValueError(f"`contexts` and `targets` must have the same length, got {len(contexts)} and {len(targets)}")
    for i, (c, t) in enumerate(zip(contexts, targets, strict=True)):
        if not isinstance(t, str):
            raise TypeError(f"`targets[{i}]` must be a str, got {type(t).__name__}")
        if not t:
            raise ValueError(f"`targets[{i}]` is empty; a target needs at least one token")
        if isinstance(c, str):
            continue
        if not isinstance(c, (list, tuple)):
            raise TypeError(f"`contexts[{i}]` must be a str or a list of messages, got {type(c).__name__}")
        for j, m in enumerate(c):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise TypeError(f"`contexts[{i}][{j}]` must be a dict with str 'role' and 'content', got {m!r:.80}")


def context_text(context: Context) -> str:
    """Plain text of a context: the string itself, or the message contents joined by newlines.

    Example:
        >>> context_text([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
        'Hi\\nYo'
    """
    if isinstance(context, str):
        return context
    return "\n".join(m["content"] for m in context)


_WORD = re.compile(r"\w+")


class OverlapScorer:
    """A deterministic lexical stub scorer: a target word is likely iff it occurs in the context.

    Each target word gets log-prob ``log(hit)`` if it occurs (case-insensitively) in the context text, else
    ``log(miss)``. No model, no I/O; useful for docs, tests and wiring checks. It ignores the IGPO template (only the
    transcript's words matter).

    Args:
        hit: Probability of a target word found in the context, in (0, 1].
        miss: Probability of a target word not found, in (0, 1].

    Example:
        >>> s = OverlapScorer().score([[{"role": "user", "content": "Ilka Maren founded it"}]], ["Ilka Maren"])[0]
        >>> [round(x, 3) for x in s.token_logprobs]
        [-0.105, -0.105]

    Change logs:
        v0.1.0: added.
    """

    def __init__(self, hit: float = 0.9, miss: float = 0.05) -> None:
        self.hit = check_number("hit", hit, minimum=0, maximum=1, strict="minimum")
        self.miss = check_number("miss", miss, minimum=0, maximum=1, strict="minimum")

    def score(self, contexts: Sequence[Context], targets: Sequence[str]) -> list[TargetScore]:
        """Score each target word by its presence in the matching context."""
        validate_score_args(contexts, targets)
        out = []
        for context, target in zip(contexts, targets, strict=True):
            words = {w.lower() for w in _WORD.findall(context_text(context))}
            tokens = _WORD.findall(target) or [target]
            out.append(
                TargetScore.from_logprobs([math.log(self.hit if t.lower() in words else self.miss) for t in tokens])
            )
        return out
