"""Scoring the gold answer after a transcript: the one information-gain scoring path.

The IG wrappers (:mod:`igpo_env.wrappers.information_gain` and its vector twin) and the rollout loop
(:mod:`agents.rollout`, hence the trainer) all score ``p_t`` here:

- :func:`score_aliases` expands each row's gold aliases (:func:`~igpo_env.scoring.math.alias_targets`: the first one
  for ``alias="first"``, all otherwise), scores every (row, alias) pair in one call of a pair-scoring function and
  aggregates per row (:func:`~igpo_env.scoring.math.aggregate_aliases`). The rollout loop's fused KV-cache branch
  plugs its own pair scorer in.
- :func:`score_gold` does that with any :class:`~igpo_env.scoring.base.Scorer` over chat transcripts, passing
  ``cache_keys`` where the scorer caches prefixes (:func:`~igpo_env.scoring.base.is_caching_scorer`).

Example:
    >>> import math
    >>> from igpo_env.scoring import OverlapScorer
    >>> msgs = [{"role": "user", "content": "Karsel is a city"}]
    >>> [round(math.exp(x), 3) for x in score_gold(OverlapScorer(), [msgs], [("Oslo", "Karsel")], alias="max")]
    [0.9]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from igpo_env.scoring.base import Context, Scorer, is_caching_scorer
from igpo_env.scoring.math import aggregate_aliases, alias_targets
from igpo_env.scoring.templates import IGTemplate, render_scoring_prefix
from igpo_env.types import Message

__all__ = ["score_aliases", "score_gold", "PairScorer"]

PairScorer = Callable[[list[int], list[str]], Sequence[float]]
"""``fn(owner, targets) -> mean log-probs``: scores ``targets[j]`` after row ``owner[j]``'s context, one value per
pair (``owner`` is ascending, each row's aliases in order)."""


def score_aliases(
    score_pairs: PairScorer,
    ground_truths: Sequence[Sequence[str]],
    alias: str = "first",
    mode: str = "prob_diff",
) -> list[float]:
    """Score each row's gold aliases with one ``score_pairs`` call and aggregate them into one mean log-prob per row.

    Args:
        score_pairs: Scores (row, alias) pairs; see :data:`PairScorer`.
        ground_truths: Gold aliases per row (first = canonical).
        alias: ``"first"`` scores only the first alias; ``"max"`` / ``"mean"`` score all and aggregate.
        mode: IG mode (decides how ``"mean"`` aggregates, see :func:`~igpo_env.scoring.math.aggregate_aliases`).

    Returns:
        One mean log-prob per row.

    Raises:
        ValueError: If a row has no alias or ``score_pairs`` returns the wrong number of values.

    Example:
        >>> import math
        >>> fake = lambda owner, targets: [math.log(0.1 * len(t)) for t in targets]
        >>> [round(math.exp(x), 3) for x in score_aliases(fake, [("ab", "abcd"), ("abc",)], alias="mean")]
        [0.3, 0.3]
    """
    owner: list[int] = []
    targets: list[str] = []
    for i, gold in enumerate(ground_truths):
        try:
            aliases = alias_targets(gold, alias)
        except ValueError as err:
            raise ValueError(f"ground truth #{i}: {err}") from err
        owner.extend([i] * len(aliases))
        targets.extend(aliases)
    values = list(score_pairs(owner, targets))
    if len(values) != len(targets):
        raise ValueError(f"scorer returned {len(values)} scores for {len(targets)} (context, target) pairs")
    per: list[list[float]] = [[] for _ in ground_truths]
    for i, value in zip(owner, values, strict=True):
        per[i].append(float(value))
    return [aggregate_aliases(v, alias, mode) for v in per]


def score_gold(
    scorer: Scorer,
    contexts: Sequence[list[Message]],
    ground_truths: Sequence[Sequence[str]],
    alias: str = "first",
    mode: str = "prob_diff",
    template: IGTemplate | None = None,
    cache_keys: Sequence[Hashable] | None = None,
) -> list[float]:
    """Score the gold answer after each transcript (aggregated mean log-prob), one scorer call for all rows.

    Args:
        scorer: Any :class:`~igpo_env.scoring.base.Scorer`; ``cache_keys`` reach it where it caches prefixes.
        contexts: Transcripts.
        ground_truths: Gold aliases per transcript (first = canonical).
        alias: ``"first"`` scores only the first alias; ``"max"`` / ``"mean"`` score all and aggregate.
        mode: IG mode (decides how ``"mean"`` aggregates, see :func:`~igpo_env.scoring.math.aggregate_aliases`).
        template: ``None``: the scorer renders messages itself; an :class:`IGTemplate`: transcripts are rendered
            here (with ``scorer.tokenizer``'s chat template when it has one, else ChatML) and sent as strings.
        cache_keys: One key per transcript (its episode), for prefix reuse.

    Returns:
        One mean log-prob per transcript.

    Example:
        >>> import math
        >>> from igpo_env.scoring import OverlapScorer
        >>> msgs = [{"role": "user", "content": "Oslo"}]
        >>> [round(math.exp(x), 3) for x in score_gold(OverlapScorer(), [msgs, msgs], [("Oslo",), ("Karsel",)])]
        [0.9, 0.05]
    """
    if cache_keys is not None and len(cache_keys) != len(contexts):
        raise ValueError(f"`cache_keys` must have one key per transcript ({len(contexts)}), got {len(cache_keys)}")
    rows: list[Context] = list(contexts)
    if template is not None:
        rows = [render_scoring_prefix(c, getattr(scorer, "tokenizer", None), template) for c in contexts]
    keys = cache_keys if cache_keys is not None and is_caching_scorer(scorer) else None

    def score_pairs(owner: list[int], targets: list[str]) -> list[float]:
        pair_contexts = [rows[i] for i in owner]
        if keys is None:
            scores = scorer.score(pair_contexts, targets)
        else:
            scores = scorer.score(pair_contexts, targets, cache_keys=[keys[i] for i in owner])  # type: ignore[call-arg]
        return [s.mean_logprob for s in scores]

    return score_aliases(score_pairs, ground_truths, alias, mode)
