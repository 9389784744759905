"""The one episode loop: multi-turn rollouts of a policy against SearchQA envs with a pluggable per-turn generator.

:func:`run_episodes` plays a batch of episodes in lock step. Each turn:

1. The per-turn generator produces one assistant turn for every active row (:class:`TurnGenerator`): the KV-cached
   transformers generator (:class:`~agents.rollout.kv_cache.KVCacheGenerator`), an external engine such as vLLM
   (:class:`CallableGenerator` around ``fn(token_id_lists, max_tokens)``), or anything with the same three methods.
   A turn ends at the end-of-turn token, a stop string or the turn's token limit
   (:class:`~agents.rollout.sampling.TurnStops`).
2. The decoded actions step the environments, all of a turn's searches in one retriever call
   (:func:`~agents.rollout.turns.apply_turn`); for rows that go on, the chat-template text between the action and the
   next generation prompt is appended with ``env_mask`` 0 and handed to the generator.
3. With ``ig`` set, the information gain of the turn is scored through the one IG path
   (:mod:`igpo_env.scoring.gold`): as a branch off the generator's KV cache when ``ig.scorer`` is ``None`` (the
   policy scores itself, exact to 1e-5 against ``HFScorer``), else by ``ig.scorer`` on the transcripts, with one
   cache key per episode where the scorer caches prefixes.

:func:`generate_rollouts` (KV cache) and :func:`generate_rollouts_with` (external engine) are the two ready-made
calls the trainer uses; :func:`~agents.rollout.evaluate.evaluate_policy` and :class:`agents.llm_agent.LLMAgent` play
through the same loop.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agents.rollout.kv_cache import KVCacheGenerator
from agents.rollout.sampling import TurnStops
from agents.rollout.turns import Rollout, RolloutStats, TurnContext, TurnOutput, apply_turn, start_episodes
from igpo_env._validation import check_int
from igpo_env.actions import STOP_STRINGS
from igpo_env.scoring.base import Scorer, is_caching_scorer
from igpo_env.scoring.gold import score_aliases, score_gold
from igpo_env.scoring.math import check_alias, check_mode, information_gain
from igpo_env.scoring.templates import IGTemplate

__all__ = [
    "IGSpec",
    "TurnGenerator",
    "CallableGenerator",
    "EngineFn",
    "run_episodes",
    "generate_rollouts",
    "generate_rollouts_with",
]

EngineFn = Callable[[list[list[int]], int], tuple[Sequence[Sequence[int]], Sequence[Sequence[float]] | None]]
"""``fn(token_id_lists, max_tokens) -> (completion_id_lists, logprob_lists | None)``: one call per turn for all
active rows, each given its full token sequence so far."""


@dataclass(frozen=True)
class IGSpec:
    """How information gain is scored during a rollout.

    Attributes:
        mode: ``"prob_diff"`` (IGPO) or ``"log_prob_diff"``.
        alias: ``"first"`` (IGPO), ``"max"`` or ``"mean"`` over the gold aliases.
        scorer: ``None`` scores with the rolled-out model as a branch off its KV cache; otherwise any
            :class:`~igpo_env.scoring.base.Scorer` (contexts are chat transcripts).
        template: The pseudo-response around the gold answer (``None``: IGPO's; with a ``scorer``, ``None`` lets the
            scorer render with its own).

    Example:
        >>> IGSpec(alias="all")
        Traceback (most recent call last):
        ...
        ValueError: `alias` must be one of ('first', 'max', 'mean'), got 'all'
    """

    mode: str = "prob_diff"
    alias: str = "first"
    scorer: Scorer | None = None
    template: IGTemplate | None = None

    def __post_init__(self) -> None:
        """Validate the fields."""
        check_mode(self.mode)
        check_alias(self.alias)
        if self.scorer is not None and not isinstance(self.scorer, Scorer):
            raise TypeError(
                f"`scorer` must be a Scorer (with score(contexts, targets)) or None, got {self.scorer!r:.80}"
            )
        if self.template is not None and not isinstance(self.template, IGTemplate):
            raise TypeError(f"`template` must be an IGTemplate or None, got {type(self.template).__name__}")


@runtime_checkable
class TurnGenerator(Protocol):
    """Produces one assistant turn per active row; :func:`run_episodes` drives it.

    ``start`` sees the freshly reset rollouts (prompts encoded); ``generate`` returns the next turn of the rollouts
    ``rows`` (rollout indices, one per generator row, in row order), each at most ``limits[j]`` tokens and cut at the
    end of turn (``stops``); ``advance`` keeps the generator rows at positions ``keep`` (the rows that go on, in
    order) and appends each one's environment tokens; ``close`` frees what the generator holds. A generator that
    can score the gold answer itself (:class:`~agents.rollout.kv_cache.KVCacheGenerator`) also has
    ``score_targets(targets, template)``.
    """

    def start(self, rollouts: Sequence[Rollout], stops: TurnStops) -> None:
        """Begin the episodes."""
        ...

    def generate(
        self, rollouts: Sequence[Rollout], rows: Sequence[int], limits: Sequence[int], turn: int
    ) -> TurnOutput:
        """Return one assistant turn for each of ``rows``."""
        ...

    def advance(self, keep: Sequence[int], chunks: Sequence[Sequence[int]]) -> None:
        """Keep rows ``keep`` and append their environment tokens."""
        ...

    def close(self) -> None:
        """Release what the generator holds."""
        ...


class CallableGenerator:
    """A :class:`TurnGenerator` around an external engine (vLLM, a server, a stub): one call per turn for all rows.

    The engine gets each row's full token sequence every turn (vLLM's prefix caching makes the repeated prefix
    cheap); tokens after the end of turn or beyond the turn's limit are cut here.

    Args:
        fn: See :data:`EngineFn`; the log-prob lists may be ``None`` (recorded as 0.0).
    """

    def __init__(self, fn: EngineFn) -> None:
        if not callable(fn):
            raise TypeError(f"`fn` must be callable as fn(token_id_lists, max_tokens), got {type(fn).__name__}")
        self.fn = fn

    def start(self, rollouts: Sequence[Rollout], stops: TurnStops) -> None:
        """Remember the end-of-turn rule."""
        self.stops = stops

    def generate(
        self, rollouts: Sequence[Rollout], rows: Sequence[int], limits: Sequence[int], turn: int
    ) -> TurnOutput:
        """Call the engine once on the rows' full sequences; cut each completion at the end of turn."""
        outs, lps = self.fn([rollouts[r].prompt_ids + rollouts[r].completion_ids for r in rows], max(limits))
        tokens = [self.stops.cut(list(o)[:lim]) for o, lim in zip(outs, limits, strict=True)]
        logps = [(list(lps[j])[: len(t)] if lps is not None else [0.0] * len(t)) for j, t in enumerate(tokens)]
        return TurnOutput(tokens, logps, sum(len(t) for t in tokens))

    def advance(self, keep: Sequence[int], chunks: Sequence[Sequence[int]]) -> None:
        """Nothing to do: the engine gets the full sequences next turn."""

    def close(self) -> None:
        """Nothing to release."""


class _GoldScoring:
    """The IG scoring of one loop call: the generator's KV branch or ``ig.scorer``, one cache key per episode."""

    def __init__(self, ig: IGSpec, generator: Any, envs: Sequence[Any], rollouts: list[Rollout], stats: RolloutStats):
        self.ig, self.generator, self.rollouts, self.stats = ig, generator, rollouts, stats
        self.golds = [tuple(getattr(envs[i], "unwrapped", envs[i]).ground_truth) for i in range(len(rollouts))]
        self.caching = ig.scorer is not None and is_caching_scorer(ig.scorer)
        self._ns = uuid.uuid4().hex

    def key(self, r: int) -> str:
        """Cache key of rollout ``r``'s episode."""
        return f"rollout-{self._ns}-{r}"

    def score(self, rows: Sequence[int]) -> list[float]:
        """Return the aggregated gold mean log-prob after the transcript of each rollout in ``rows``."""
        t0 = time.perf_counter()
        ig, golds = self.ig, [self.golds[r] for r in rows]
        if ig.scorer is None:

            def branch_pairs(owner: list[int], targets: list[str]) -> list[float]:
                per_row: list[list[str]] = [[] for _ in rows]
                for j, t in zip(owner, targets, strict=True):
                    per_row[j].append(t)
                return [v for row in self.generator.score_targets(per_row, ig.template) for v in row]

            result = score_aliases(branch_pairs, golds, ig.alias, ig.mode)
        else:
            contexts = [self.rollouts[r].messages for r in rows]
            keys = [self.key(r) for r in rows] if self.caching else None
            result = score_gold(ig.scorer, contexts, golds, ig.alias, ig.mode, ig.template, keys)
        self.stats.ig_seconds += time.perf_counter() - t0
        return result

    def release(self) -> None:
        """Drop the episodes' prefix caches in a caching scorer."""
        if self.caching:
            self.ig.scorer.release([self.key(r) for r in range(len(self.rollouts))])


def run_episodes(
    generator: TurnGenerator | EngineFn,
    tokenizer: Any,
    envs: Sequence[Any],
    question_ids: Sequence[str] | None = None,
    *,
    options: Sequence[dict[str, Any] | None] | None = None,
    seeds: Sequence[int | None] | None = None,
    max_turns: int = 10,
    max_turn_tokens: int = 128,
    max_completion_length: int | None = None,
    stop_strings: Sequence[str] = STOP_STRINGS,
    ig: IGSpec | None = None,
) -> tuple[list[Rollout], RolloutStats]:
    """Play one episode per env, ``envs[i]`` playing ``question_ids[i]`` (or reset with ``options[i]``), in lock step.

    Args:
        generator: A :class:`TurnGenerator` (e.g. :class:`~agents.rollout.kv_cache.KVCacheGenerator`) or an engine
            callable (wrapped in :class:`CallableGenerator`).
        tokenizer: The policy's tokenizer (chat template: ChatML when it has none).
        envs: At least one env per episode (see :func:`~agents.rollout.turns.make_envs`).
        question_ids: The question of each episode (reset with ``{"question_id": id}``).
        options: Instead of ``question_ids``: the reset options of each episode (e.g. ``{"index": i}``).
        seeds: Reset seeds, one per episode.
        max_turns: Turn limit (the episode is truncated after it).
        max_turn_tokens: New tokens per assistant turn.
        max_completion_length: Budget of completion tokens per rollout (observations included); ``None``: no budget.
        stop_strings: A turn ends at the first of these.
        ig: Score information gain per turn (``None``: no IG).

    Returns:
        ``(rollouts, stats)`` in the order of the episodes.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_tokenizer
        >>> from agents.rollout import make_envs
        >>> tok = tiny_tokenizer()
        >>> search = tok.encode("<search> Ostrand </search>", add_special_tokens=False)
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> engine = lambda prompts, max_tokens: ([search for _ in prompts], None)  # any callable, or a TurnGenerator
        >>> rollouts, _ = run_episodes(engine, tok, envs, options=[{"index": 0}, {"index": 1}], max_turns=2)
        >>> [r.question_id for r in rollouts], [r.action_types for r in rollouts], rollouts[0].truncated
        (['tq0', 'tq1'], [['search', 'search'], ['search', 'search']], True)
    """
    if (question_ids is None) == (options is None):
        raise ValueError("pass exactly one of `question_ids` and `options`")
    options = [{"question_id": q} for q in question_ids] if question_ids is not None else list(options)
    n = len(options)
    if n == 0:
        raise ValueError("`question_ids` must not be empty")
    if len(envs) < n:
        raise ValueError(f"need one env per rollout: {n} question ids but {len(envs)} envs")
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"`seeds` must hold one seed per episode ({n}), got {len(seeds)}")
    check_int("max_turns", max_turns, minimum=1)
    check_int("max_turn_tokens", max_turn_tokens, minimum=1)
    check_int("max_completion_length", max_completion_length, minimum=1, optional=True)
    if not isinstance(generator, TurnGenerator):
        generator = CallableGenerator(generator)
    if ig is not None and ig.scorer is None and not callable(getattr(generator, "score_targets", None)):
        raise ValueError("`ig.scorer` must be set: external engines have no KV cache to branch from")
    budget = max_completion_length if max_completion_length is not None else math.inf
    stats = RolloutStats()
    t_start = time.perf_counter()
    stops = TurnStops(tokenizer, stop_strings)
    rollouts = start_episodes(tokenizer, envs, options, seeds)
    ctx = TurnContext(tokenizer, envs, stops, budget, max_turns, stats)
    gold = _GoldScoring(ig, generator, envs, rollouts, stats) if ig is not None else None
    try:
        generator.start(rollouts, stops)
        row_ids = list(range(n))
        if gold is not None:
            for r, lp in zip(row_ids, gold.score(row_ids), strict=True):
                rollouts[r].mean_logprobs.append(lp)
        turn = 0
        while row_ids:
            turn += 1
            limits = [int(min(max_turn_tokens, budget - len(rollouts[r].completion_ids))) for r in row_ids]
            out = generator.generate(rollouts, row_ids, limits, turn)
            stats.generated_tokens += out.generated
            keep_rows, keep_idx, chunks = apply_turn(ctx, rollouts, row_ids, turn, out.tokens, out.logprobs)
            if not keep_rows:
                break
            generator.advance(keep_idx, chunks)
            row_ids = keep_rows
            if gold is not None:
                for r, lp in zip(row_ids, gold.score(row_ids), strict=True):
                    ro = rollouts[r]
                    ro.ig_rewards.append(information_gain(ro.mean_logprobs[-1], lp, ig.mode))
                    ro.mean_logprobs.append(lp)
    finally:
        generator.close()
        if gold is not None:
            gold.release()
    stats.total_seconds = time.perf_counter() - t_start
    return rollouts, stats


def generate_rollouts(
    model: Any,
    tokenizer: Any,
    envs: Sequence[Any],
    question_ids: Sequence[str],
    *,
    max_turns: int = 10,
    max_turn_tokens: int = 128,
    max_completion_length: int | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_strings: Sequence[str] = STOP_STRINGS,
    ig: IGSpec | None = None,
    seed: int | Sequence[int] | None = None,
    actions: Sequence[Sequence[str]] | None = None,
) -> tuple[list[Rollout], RolloutStats]:
    """Play one episode per question id with a transformers model and a KV cache kept across turns.

    :func:`run_episodes` with a :class:`~agents.rollout.kv_cache.KVCacheGenerator`; the model runs in eval mode
    without gradients (its training mode is restored).

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer (chat template: ChatML when it has none).
        envs: At least ``len(question_ids)`` SearchQA envs (see :func:`~agents.rollout.turns.make_envs`).
        question_ids: The question of each rollout; equal ids share one prompt prefill.
        max_turns: Turn limit (the episode is truncated after it).
        max_turn_tokens: New tokens per assistant turn.
        max_completion_length: Budget of completion tokens per rollout (observations included); ``None``: no budget.
        temperature: Sampling temperature; 0 is greedy.
        top_k: Top-k filter (0: off).
        top_p: Nucleus filter (1.0: off).
        stop_strings: A turn ends at the first of these.
        ig: Score information gain per turn (``None``: no IG).
        seed: Seed of the sampling generator, or one seed per rollout (each rollout samples from its own stream,
            whatever batch it is played in).
        actions: Teacher-forced assistant texts, per rollout one per turn, instead of sampling (tests, replay);
            each is encoded and closed with the end-of-turn token.

    Returns:
        ``(rollouts, stats)`` in the order of ``question_ids``.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> from agents.rollout import make_envs
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> rollouts, stats = generate_rollouts(tiny_causal_lm(), tiny_tokenizer(), envs, ["tq0", "tq0"], max_turns=2,
        ...                                     max_turn_tokens=4, ig=IGSpec(), seed=0)
        >>> [r.num_turns for r in rollouts], len(rollouts[0].ig_rewards)
        ([2, 2], 1)
    """
    return run_episodes(
        KVCacheGenerator(model, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, actions=actions),
        tokenizer,
        envs,
        question_ids,
        max_turns=max_turns,
        max_turn_tokens=max_turn_tokens,
        max_completion_length=max_completion_length,
        stop_strings=stop_strings,
        ig=ig,
    )


def generate_rollouts_with(
    generate_fn: EngineFn,
    tokenizer: Any,
    envs: Sequence[Any],
    question_ids: Sequence[str],
    *,
    max_turns: int = 10,
    max_turn_tokens: int = 128,
    max_completion_length: int | None = None,
    stop_strings: Sequence[str] = STOP_STRINGS,
    ig: IGSpec | None = None,
) -> tuple[list[Rollout], RolloutStats]:
    """Multi-turn rollouts through an external generation engine (vLLM), one call per turn for all active rows.

    :func:`run_episodes` with a :class:`CallableGenerator`. IG needs ``ig.scorer`` (e.g. ``HFScorer`` on the policy,
    which reuses each episode's prefix cache via its cache key, or a ``VLLMScorer``).

    Args:
        generate_fn: See :data:`EngineFn`; it stops at the end-of-turn token or the stop strings (extra tokens after
            a stop string are cut here).
        tokenizer: The policy's tokenizer.
        envs: One env per rollout.
        question_ids: The question of each rollout.
        max_turns: Turn limit.
        max_turn_tokens: New tokens per assistant turn.
        max_completion_length: Completion token budget per rollout.
        stop_strings: A turn ends at the first of these.
        ig: IG settings; ``ig.scorer`` must be set.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_tokenizer
        >>> from agents.rollout import make_envs
        >>> tok = tiny_tokenizer()
        >>> answer = tok.encode("<answer> Karsel </answer>", add_special_tokens=False) + [tok.eos_token_id]
        >>> envs = make_envs(1, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> rollouts, _ = generate_rollouts_with(lambda p, n: ([answer for _ in p], None), tok, envs, ["tq0"])
        >>> rollouts[0].f1, rollouts[0].num_turns
        (1.0, 1)
    """
    return run_episodes(
        CallableGenerator(generate_fn),
        tokenizer,
        envs,
        question_ids,
        max_turns=max_turns,
        max_turn_tokens=max_turn_tokens,
        max_completion_length=max_completion_length,
        stop_strings=stop_strings,
        ig=ig,
    )
