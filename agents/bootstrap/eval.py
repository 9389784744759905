"""Quality report of a policy LM on a SynthWiki dev split: format, F1, question-only F1 and IG sanity.

- ``well_formed_rate``: share of generated turns the env parses as a search or an answer.
- ``dev_f1``: mean outcome F1 of greedy episodes in SearchQA-v0 (:func:`agents.rollout.evaluate_policy`, the one
  evaluation loop of the trainer and ``igpo-env eval``).
- ``question_only_f1``: F1 of the same model answering right after the question, forced into the IG pseudo-response
  (``<think>\\nNow there's enough information to answer\\n</think>\\n<answer>\\n``), i.e. with no search.
- IG sanity: ``p(gold | transcript)`` under the IGPO scoring template, after the scripted oracle has retrieved all the
  supporting passages (``p_oracle``) versus with the question only (``p_question_only``); ``ig_sanity_share`` is the
  share of questions with ``p_oracle > p_question_only``.
- In-context copying: ``repeat_copy_gain``, the drop in mean NLL (nats/token) from the first to the second pass over
  a repeated random token sequence. Reading an answer out of a passage needs this copying; a model that answers from
  memorized facts shows a gain near 0.

Example:
    >>> median([0.1, 0.9, 0.5])
    0.5
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.igpo.configs import train_defaults
from igpo_env.types import Message, QAExample

__all__ = ["quality_report", "oracle_transcripts", "score_gold", "median", "repeat_copy_gain", "env_prompts"]

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 64
"""Transcripts per generation / scoring batch."""

ANSWER_MAX_NEW_TOKENS = 16
"""Longest question-only answer generated."""


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (mean of the two middle values for even lengths)."""
    if not values:
        raise ValueError("`values` must not be empty")
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else float((s[mid - 1] + s[mid]) / 2)


def score_gold(
    model: Any, tokenizer: Any, contexts: Sequence[Sequence[Message]], golds: Sequence[str], batch_size: int
) -> list[float]:
    """``p = exp(mean log p(GT tokens))`` under the IGPO scoring template, batched.

    Uses :class:`igpo_env.scoring.hf.HFScorer` when it is available, so the numbers are those the IG wrapper sees.
    """
    try:
        from igpo_env.scoring.hf import HFScorer
    except ImportError:
        HFScorer = None  # noqa: N806
    if HFScorer is not None:
        scorer = HFScorer(model, tokenizer, batch_size=batch_size)
        return [s.prob for s in scorer.score([list(c) for c in contexts], list(golds))]
    return _score_gold_naive(model, tokenizer, contexts, golds, batch_size)


def _device(model: Any) -> Any:
    """Return the device of ``model``'s first parameter (the CPU for a module without parameters)."""
    import torch

    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _score_gold_naive(
    model: Any, tokenizer: Any, contexts: Sequence[Sequence[Message]], golds: Sequence[str], batch_size: int
) -> list[float]:
    import math

    import torch

    from igpo_env.scoring.templates import IGPO_TEMPLATE, render_transcript

    probs: list[float] = []
    pad = tokenizer.pad_token_id
    device = _device(model)
    for start in range(0, len(contexts), batch_size):
        rows = []
        for ctx, gold in zip(contexts[start : start + batch_size], golds[start : start + batch_size], strict=True):
            prefix = IGPO_TEMPLATE.prefix(render_transcript(ctx, tokenizer))
            p_ids = tokenizer.encode(prefix, add_special_tokens=False)
            g_ids = tokenizer.encode(gold, add_special_tokens=False)
            rows.append((p_ids + g_ids, len(p_ids), len(g_ids)))
        width = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (r, _, _) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
        for i, (r, n_prefix, n_gold) in enumerate(rows):
            pos = torch.arange(n_prefix - 1, n_prefix - 1 + n_gold, device=device)
            lp = logp[i, pos, torch.tensor(r[n_prefix:], device=device)]
            probs.append(math.exp(float(lp.mean())))
    return probs


def repeat_copy_gain(model: Any, tokenizer: Any, length: int = 40, rows: int = 8, seed: int = 0) -> float:
    """Mean NLL drop (nats/token) on the second pass of ``rows`` random ``length``-token sequences shown twice.

    Tokens are drawn uniformly from the non-special vocabulary under ``seed``. Induction ("copy what followed this
    token last time") makes the second pass nearly free; without it both passes cost about ``log(vocab)``.

    Example:
        >>> from agents.bootstrap.fixture import FIXTURE_POLICY, SIZES, make_model, train_tokenizer
        >>> tok = train_tokenizer(["Karsel is the capital of Ostrand."] * 4, vocab_size=300)
        >>> abs(repeat_copy_gain(make_model(SIZES[FIXTURE_POLICY], tok), tok)) < 1.0  # random init: no copying
        True
    """
    import torch

    if length < 2 or rows < 1:
        raise ValueError(f"`length` must be >= 2 and `rows` >= 1, got {length} and {rows}")
    special = set(tokenizer.all_special_ids)
    pool = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    seq = pool[torch.randint(len(pool), (rows, length), generator=gen)]
    ids = torch.cat([seq, seq], dim=1).to(_device(model))
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    nll = -logp[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
    return float(nll[:, : length - 1].mean() - nll[:, length:].mean())


def oracle_transcripts(examples: Sequence[QAExample], retriever: Any, seed: int = 0) -> list[list[Message]]:
    """Return the transcript after the scripted oracle's searches, just before it answers, for each question."""
    import gymnasium as gym

    from agents.scripted import OracleAgent

    env = gym.make("SearchQA-v0", dataset=list(examples), retriever=retriever)
    agent = OracleAgent(env)
    out: list[list[Message]] = []
    for i in range(len(examples)):
        obs, info = env.reset(seed=seed + i, options={"index": i})
        messages = list(info["messages"])
        for _ in range(len(examples[i].supporting_doc_ids) + 2):
            action = agent.act(obs, info)
            if "<answer>" in action:
                break
            obs, _, terminated, truncated, info = env.step(action)
            messages = list(info["messages"])
            if terminated or truncated:
                break
        out.append(messages)
    env.close()
    return out


def quality_report(
    model: Any,
    tokenizer: Any,
    world: str | Path,
    n_questions: int,
    seed: int = 0,
    verbose: bool = True,
    max_turns: int | None = None,
    max_turn_tokens: int | None = None,
    max_completion_length: int | None = None,
) -> dict[str, Any]:
    """Measure the quality numbers of the policy LM on the first ``n_questions`` dev questions of ``world``.

    ``well_formed_rate``, ``dev_f1`` and ``mean_turns`` come from :func:`agents.rollout.evaluate_policy`, the
    KV-cached greedy episode loop that the trainer's dev eval and ``igpo-env eval`` use, with the same settings
    (default: those of ``igpo-env train``, :func:`agents.igpo.configs.train_defaults`), so "dev F1" means one thing
    everywhere.

    Returns:
        ``well_formed_rate``, ``dev_f1``, ``question_only_f1``, ``ig_sanity_share``, ``median_p_oracle``,
        ``median_p_question_only``, ``repeat_copy_gain``, ``dev_f1_by_source``, ``episode_types`` (dev episodes per
        :data:`agents.rollout.EPISODE_TYPES`: what the wrong ones did), ``ig_sanity_by_source``, ``mean_turns``,
        ``answered``, ``eval_questions``, ``eval_seconds``.
    """
    import time

    from agents.llm_agent import LLMAgent
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.data import load_qa
    from igpo_env.metrics import f1
    from igpo_env.retrieval import get_retriever
    from igpo_env.scoring.templates import IGPO_TEMPLATE

    defaults = train_defaults()
    start = time.perf_counter()
    world = Path(world)
    examples = load_qa(world, "dev")[:n_questions]
    retriever = get_retriever(str(world / "corpus.jsonl"))
    model.eval()
    envs = make_envs(
        min(EVAL_BATCH_SIZE, max(1, len(examples))),
        dataset=examples,
        retriever=retriever,
        top_k=defaults["search_top_k"],
    )
    played = evaluate_policy(
        model,
        tokenizer,
        envs,
        [ex.id for ex in examples],
        max_turns=max_turns or defaults["max_turns"],
        max_turn_tokens=max_turn_tokens or defaults["max_turn_tokens"],
        max_completion_length=max_completion_length or defaults["max_completion_length"],
        verbose=verbose,
    )
    for env in envs:
        env.close()

    prompts = env_prompts(retriever, examples)
    answer_agent = LLMAgent(model, tokenizer, batch_size=EVAL_BATCH_SIZE, max_new_tokens=ANSWER_MAX_NEW_TOKENS)
    answers = answer_agent.generate([IGPO_TEMPLATE.prefix(answer_agent.render(p)) for p in prompts])
    q_only_f1 = [
        f1(a.replace("</answer>", "").strip(), ex.golden_answers) for a, ex in zip(answers, examples, strict=True)
    ]

    golds = [ex.golden_answers[0] for ex in examples]
    p_q = score_gold(model, tokenizer, prompts, golds, EVAL_BATCH_SIZE)
    p_o = score_gold(model, tokenizer, oracle_transcripts(examples, retriever, seed), golds, EVAL_BATCH_SIZE)
    n = max(1, len(examples))
    return {
        "well_formed_rate": played["well_formed_rate"],
        "dev_f1": played["f1"],
        "dev_em": played["em"],
        "question_only_f1": sum(q_only_f1) / n,
        "ig_sanity_share": sum(o > q for o, q in zip(p_o, p_q, strict=True)) / n,
        "median_p_oracle": median(p_o) if p_o else 0.0,
        "median_p_question_only": median(p_q) if p_q else 0.0,
        "repeat_copy_gain": repeat_copy_gain(model, tokenizer, seed=seed),
        "dev_f1_by_source": {k: v["f1"] for k, v in played["by_source"].items()},
        "episode_types": played["episode_types"],
        "ig_sanity_by_source": _share_by_source([o > q for o, q in zip(p_o, p_q, strict=True)], examples),
        "mean_turns": played["mean_turns"],
        "answered": played["answered"],
        "eval_questions": len(examples),
        "eval_seconds": time.perf_counter() - start,
    }


def _share_by_source(flags: Sequence[bool], examples: Sequence[QAExample]) -> dict[str, float]:
    """Share of true ``flags`` per data source of ``examples`` (aligned)."""
    out: dict[str, list[bool]] = {}
    for flag, ex in zip(flags, examples, strict=True):
        out.setdefault(ex.data_source, []).append(flag)
    return {src: sum(v) / len(v) for src, v in sorted(out.items())}


def env_prompts(retriever: Any, examples: Sequence[QAExample]) -> list[list[Message]]:
    """Return the transcripts SearchQA-v0 starts each question with (the instruction + question prompt)."""
    import gymnasium as gym

    env = gym.make("SearchQA-v0", dataset=list(examples), retriever=retriever)
    try:
        return [[dict(m) for m in env.reset(options={"index": i})[1]["messages"]] for i in range(len(examples))]
    finally:
        env.close()
