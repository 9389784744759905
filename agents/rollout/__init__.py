"""Multi-turn rollouts of a policy against SearchQA-v0: one episode loop with a pluggable per-turn generator.

One loop (:func:`run_episodes`) serves training rollouts, evaluation and agents:

- :mod:`agents.rollout.loop`: the loop, :class:`IGSpec`, the :class:`TurnGenerator` protocol, the engine adapter
  :class:`CallableGenerator`, and the two calls the trainer uses, :func:`generate_rollouts` (KV cache) and
  :func:`generate_rollouts_with` (external engine such as vLLM).
- :mod:`agents.rollout.kv_cache`: :class:`KVCacheGenerator`, a transformers model with one batched KV cache kept
  across turns; the information gain is scored as a branch off it.
- :mod:`agents.rollout.sampling`: token sampling and the end of a turn (:class:`TurnStops`).
- :mod:`agents.rollout.turns`: :class:`Rollout` records, env reset and stepping, the chat text between turns,
  :func:`make_envs`.
- :mod:`agents.rollout.evaluate`: :func:`evaluate_policy`, the one definition of dev EM/F1.

:class:`agents.llm_agent.LLMAgent` plays through the same loop.

Example:
    >>> from igpo_env.data.toy import toy_corpus, toy_qa
    >>> from igpo_env.retrieval import BM25Retriever
    >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
    >>> tok, model = tiny_tokenizer(), tiny_causal_lm()
    >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    >>> rollouts, stats = generate_rollouts(model, tok, envs, ["tq0", "tq0"], max_turns=2, max_turn_tokens=4,
    ...                                     ig=IGSpec(), seed=0)
    >>> [r.num_turns for r in rollouts], len(rollouts[0].ig_rewards)
    ([2, 2], 1)
"""

from __future__ import annotations

from agents.rollout.evaluate import (
    EPISODE_TYPES,
    episode_type,
    evaluate_policy,
    process_slice,
    summarize_rollouts,
)
from agents.rollout.kv_cache import KVCacheGenerator
from agents.rollout.loop import (
    CallableGenerator,
    EngineFn,
    IGSpec,
    TurnGenerator,
    generate_rollouts,
    generate_rollouts_with,
    run_episodes,
)
from agents.rollout.sampling import TurnStops
from agents.rollout.turns import Rollout, RolloutStats, TurnOutput, make_envs

__all__ = [
    "IGSpec",
    "Rollout",
    "RolloutStats",
    "TurnOutput",
    "TurnGenerator",
    "TurnStops",
    "KVCacheGenerator",
    "CallableGenerator",
    "EngineFn",
    "make_envs",
    "run_episodes",
    "generate_rollouts",
    "generate_rollouts_with",
    "evaluate_policy",
    "summarize_rollouts",
    "process_slice",
    "episode_type",
    "EPISODE_TYPES",
]
