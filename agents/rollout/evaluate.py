"""The one evaluation function: greedy episodes through the rollout loop, EM/F1 overall and per data source.

:func:`evaluate_policy` defines "dev F1" everywhere: the trainer's dev eval, ``igpo-env eval`` and the bootstrap
quality report all call it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from agents.rollout.loop import generate_rollouts
from agents.rollout.turns import Rollout
from igpo_env._validation import check_int
from igpo_env.actions import STOP_STRINGS
from igpo_env.types import QAExample

__all__ = ["evaluate_policy", "summarize_rollouts", "process_slice", "episode_type", "EPISODE_TYPES"]

EPISODE_TYPES = (
    "correct",
    "invalid_turns",
    "no_answer",
    "extra_search",
    "too_few_searches",
    "retrieval_miss",
    "wrong_answer",
)
"""What an evaluated episode did (:func:`episode_type`), in the order the rules are tried."""


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    envs: Sequence[Any],
    question_ids: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    max_turns: int = 10,
    max_turn_tokens: int = 128,
    max_completion_length: int | None = None,
    stop_strings: Sequence[str] = STOP_STRINGS,
    verbose: bool = False,
    return_rollouts: bool = False,
) -> dict[str, Any]:
    """Greedy-decode one episode per question and report EM/F1 overall and per data source.

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer.
        envs: SearchQA envs (the batch size is ``len(envs)``); their dataset is evaluated.
        question_ids: Questions to play (default: every question of ``envs[0]``'s dataset).
        limit: Play only the first ``limit`` questions.
        max_turns: Turn limit.
        max_turn_tokens: New tokens per assistant turn.
        max_completion_length: Completion token budget per episode.
        stop_strings: A turn ends at the first of these.
        verbose: Show a progress bar.
        return_rollouts: Also return the episodes (:class:`~agents.rollout.Rollout`, in question order) as
            ``"rollouts"``, e.g. to re-score their answers (``igpo-env eval``'s other answer normalization).

    Returns:
        ``{"em", "f1", "n", "answered", "mean_turns", "well_formed_rate", "by_source": {source: {"em", "f1", "n"}},
        "episode_types", "episode_types_by_source"}`` (``well_formed_rate``: share of turns the env parsed as a search
        or an answer; ``episode_types``: episodes per :data:`EPISODE_TYPES`, see :func:`episode_type`).

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> from agents.rollout import make_envs
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> res = evaluate_policy(tiny_causal_lm(), tiny_tokenizer(), envs, limit=2, max_turns=1, max_turn_tokens=3)
        >>> res["n"], sorted(res)  # doctest: +NORMALIZE_WHITESPACE
        (2, ['answered', 'by_source', 'em', 'episode_types', 'episode_types_by_source', 'f1', 'mean_turns', 'n',
             'well_formed_rate'])
    """
    from tqdm.auto import tqdm

    if not envs:
        raise ValueError("`envs` must hold at least one env")
    if question_ids is None:
        question_ids = [ex.id for ex in getattr(envs[0], "unwrapped", envs[0]).examples]
    question_ids = list(question_ids)
    if limit is not None:
        check_int("limit", limit, minimum=1)
        question_ids = question_ids[:limit]
    if not question_ids:
        raise ValueError("no questions to evaluate")
    size = len(envs)
    rollouts: list[Rollout] = []
    for start in tqdm(range(0, len(question_ids), size), desc="eval", disable=not verbose):
        chunk = question_ids[start : start + size]
        out, _ = generate_rollouts(
            model,
            tokenizer,
            envs,
            chunk,
            max_turns=max_turns,
            max_turn_tokens=max_turn_tokens,
            max_completion_length=max_completion_length,
            temperature=0.0,
            stop_strings=stop_strings,
        )
        rollouts.extend(out)
    examples = {ex.id: ex for ex in getattr(envs[0], "unwrapped", envs[0]).examples}
    result = summarize_rollouts(rollouts, examples)
    return {**result, "rollouts": rollouts} if return_rollouts else result


def summarize_rollouts(rollouts: Sequence[Rollout], examples: Mapping[str, QAExample] | None = None) -> dict[str, Any]:
    """EM/F1 overall and per data source, answered share, mean turns and well-formed share of played episodes.

    The summary :func:`evaluate_policy` returns; also the one a multi-process evaluation computes from the episodes
    all processes played (each a slice of the questions, :func:`process_slice`). With ``examples`` (question id ->
    :class:`~igpo_env.types.QAExample`) it also counts the episodes per :data:`EPISODE_TYPES`, overall
    (``episode_types``) and per data source (``episode_types_by_source``).

    Raises:
        ValueError: if ``rollouts`` is empty.

    Example:
        >>> from agents.rollout import Rollout
        >>> r = Rollout("q1", "nq", [1], terminated=True, action_types=["search", "answer"], final_info={"f1": 1.0})
        >>> summarize_rollouts([r])["by_source"]
        {'nq': {'em': 0.0, 'f1': 1.0, 'n': 1}}
    """
    if not rollouts:
        raise ValueError("no episodes to summarize")
    by_source: dict[str, dict[str, float]] = {}
    for r in rollouts:
        agg = by_source.setdefault(r.data_source, {"em": 0.0, "f1": 0.0, "n": 0})
        agg["em"] += r.em
        agg["f1"] += r.f1
        agg["n"] += 1
    for agg in by_source.values():
        agg["em"] /= agg["n"]
        agg["f1"] /= agg["n"]
    total = len(rollouts)
    turn_types = [t for r in rollouts for t in r.action_types]
    result = {
        "em": sum(r.em for r in rollouts) / total,
        "f1": sum(r.f1 for r in rollouts) / total,
        "n": total,
        "answered": sum(r.terminated for r in rollouts) / total,
        "mean_turns": sum(r.num_turns for r in rollouts) / total,
        "well_formed_rate": sum(t != "invalid" for t in turn_types) / max(1, len(turn_types)),
        "by_source": dict(sorted(by_source.items())),
    }
    if examples is not None:
        counts = Counter((r.data_source, episode_type(r, examples.get(r.question_id))) for r in rollouts)
        per_source = {src: {t: counts[src, t] for t in EPISODE_TYPES} for src in result["by_source"]}
        result["episode_types"] = {t: sum(c[t] for c in per_source.values()) for t in EPISODE_TYPES}
        result["episode_types_by_source"] = per_source
    return result


def episode_type(rollout: Rollout, example: QAExample | None = None) -> str:
    """Say what an evaluated episode did: the first of :data:`EPISODE_TYPES` whose rule holds.

    - ``correct``: exact match.
    - ``invalid_turns``: some turn was neither a search nor an answer.
    - ``no_answer``: cut at the turn or token limit without answering.
    - ``extra_search``: more searches than the question's supporting documents (hops), e.g. a 1-hop question
      answered with a second hop's answer.
    - ``too_few_searches``: fewer searches than hops.
    - ``retrieval_miss``: as many searches as hops, but some supporting document never retrieved.
    - ``wrong_answer``: the supporting documents were all retrieved and the answer is still wrong.

    The three search rules need the question's ``supporting_doc_ids`` (SynthWiki has them); without them (``example``
    None or no labels) a wrong answer is ``wrong_answer``.

    Example:
        >>> from agents.rollout import Rollout
        >>> from igpo_env.types import QAExample
        >>> ex = QAExample("q1", "Where is Zivyn Press headquartered?", ["Zedodirburg"], supporting_doc_ids=["d1"])
        >>> r = Rollout("q1", "synthwiki-1hop", [], terminated=True, action_types=["search", "search", "answer"],
        ...             retrieved_doc_ids=[["d1", "d2"], ["d3"], []], final_info={"em": 0.0, "f1": 0.0})
        >>> episode_type(r, ex), episode_type(r)
        ('extra_search', 'wrong_answer')
    """
    if rollout.em >= 1.0:
        return "correct"
    if "invalid" in rollout.action_types:
        return "invalid_turns"
    if not rollout.terminated:
        return "no_answer"
    support = list(example.supporting_doc_ids) if example is not None else []
    if not support:
        return "wrong_answer"
    searches = rollout.action_types.count("search")
    if searches > len(support):
        return "extra_search"
    if searches < len(support):
        return "too_few_searches"
    retrieved = {d for turn in rollout.retrieved_doc_ids for d in turn}
    return "wrong_answer" if set(support) <= retrieved else "retrieval_miss"


def process_slice(n: int, num_processes: int, process_index: int) -> slice:
    """Return the contiguous share of ``n`` questions that process ``process_index`` of ``num_processes`` plays.

    Shares differ in size by at most one and, concatenated in process order, give back all ``n`` in order (so the
    gathered episodes summarize exactly as on one process).

    Example:
        >>> [range(5)[process_slice(5, 2, i)] for i in range(2)]
        [range(0, 3), range(3, 5)]
    """
    check_int("num_processes", num_processes, minimum=1)
    check_int("process_index", process_index, minimum=0, maximum=num_processes - 1)
    base, extra = divmod(n, num_processes)
    start = process_index * base + min(process_index, extra)
    return slice(start, start + base + (process_index < extra))
