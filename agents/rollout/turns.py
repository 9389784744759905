"""Episode and turn bookkeeping of the rollout loop: records, env reset and stepping, the chat text between turns.

- :class:`Rollout` / :class:`RolloutStats`: one episode as token ids with per-turn spans, masks and rewards; timing.
- :func:`make_envs`: sub-envs sharing one dataset and retriever (a turn's searches go out in one batched call).
- :func:`start_episodes`: reset each env and encode its chat-templated prompt.
- :func:`apply_turn`: record one assistant turn per row, step the envs, and append the environment tokens (end of
  turn, observation message, next generation prompt) of the rows that go on, with ``env_mask`` 0. Envs wrapped by a
  turn-shaping scheme (:func:`igpo_env.wrappers.make_shaping`) have each turn's term recorded apart from the env's
  reward (:attr:`Rollout.shaping_rewards`).

Example:
    >>> from igpo_env.data.toy import toy_corpus, toy_qa
    >>> from igpo_env.retrieval import BM25Retriever
    >>> from igpo_env.scoring.tiny import tiny_tokenizer
    >>> envs = make_envs(1, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    >>> (r,) = start_episodes(tiny_tokenizer(), envs, [{"question_id": "tq0"}])
    >>> r.question_id, r.num_turns, r.messages[0]["role"]
    ('tq0', 0, 'user')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from igpo_env._validation import check_int
from igpo_env.types import Message
from igpo_env.wrappers.shaping import SHAPING_KEY

__all__ = ["Rollout", "RolloutStats", "TurnOutput", "make_envs", "start_episodes", "apply_turn", "TurnContext"]


@dataclass
class Rollout:
    """One multi-turn episode as token ids with per-turn bookkeeping.

    Attributes:
        question_id: Id of the question played.
        data_source: Its data source.
        prompt_ids: Chat-templated prompt (generation prompt included).
        completion_ids: Every token after the prompt: assistant turns and observations.
        env_mask: Per completion token, 1 for tokens the policy sampled, 0 for environment tokens.
        turn_spans: Per turn, the ``[start, end)`` span of the sampled assistant tokens in ``completion_ids``.
        obs_ends: Per non-final turn, the index of the last token appended after it (its observation).
        ig_rewards: Per non-final turn, its information gain.
        mean_logprobs: Gold-answer mean log-probs after each turn boundary (index 0: the bare prompt).
        env_rewards: Per turn, the environment's reward (0 for searches, the format penalty, the outcome); from a
            shaping-wrapped env, its reward minus the wrapper's term.
        outcome: Episode return (sum of ``env_rewards``): the reward of the final turn.
        terminated: The agent answered.
        truncated: Cut at ``max_turns`` or at the completion budget.
        final_info: The last ``info`` of the episode (``em``/``f1`` when it answered).
        messages: The chat transcript.
        logprobs: Per completion token, the sampling log-prob (0.0 for environment tokens).
        action_types: Per turn, the env's ``info["action_type"]`` (``"search"``, ``"answer"`` or ``"invalid"``).
        retrieved_doc_ids: Per turn, the env's ``info["retrieved_doc_ids"]`` (empty for a turn that did not search).
        shaping_rewards: Per turn, the term a shaping wrapper added to the env reward (``info["shaping"]["reward"]``,
            see :mod:`igpo_env.wrappers.shaping`); empty when the env is not shaped.
    """

    question_id: str
    data_source: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    obs_ends: list[int] = field(default_factory=list)
    ig_rewards: list[float] = field(default_factory=list)
    mean_logprobs: list[float] = field(default_factory=list)
    env_rewards: list[float] = field(default_factory=list)
    outcome: float = 0.0
    terminated: bool = False
    truncated: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    action_types: list[str] = field(default_factory=list)
    retrieved_doc_ids: list[list[str]] = field(default_factory=list)
    shaping_rewards: list[float] = field(default_factory=list)

    @property
    def num_turns(self) -> int:
        """Assistant turns taken."""
        return len(self.turn_spans)

    @property
    def f1(self) -> float:
        """F1 of the answer (0 when the episode did not answer)."""
        return float(self.final_info.get("f1", 0.0)) if self.terminated else 0.0

    @property
    def em(self) -> float:
        """Exact match of the answer (0 when the episode did not answer)."""
        return float(self.final_info.get("em", 0.0)) if self.terminated else 0.0


@dataclass
class RolloutStats:
    """Timing of one rollout-loop call (seconds) and the number of tokens the policy sampled."""

    total_seconds: float = 0.0
    ig_seconds: float = 0.0
    env_seconds: float = 0.0
    generated_tokens: int = 0

    @property
    def ig_share(self) -> float:
        """IG scoring time as a share of the rollout wall time."""
        return self.ig_seconds / self.total_seconds if self.total_seconds > 0 else 0.0


class TurnOutput(NamedTuple):
    """One assistant turn for each active row, as a per-turn generator returns it.

    Attributes:
        tokens: Per row, the turn's token ids, ending at (and including) the end-of-turn token or the token that
            completes a stop string, or cut at the row's token limit.
        logprobs: Per row, one sampling log-prob per token (0.0 where unknown, e.g. teacher-forced text).
        generated: Tokens the policy sampled in this turn (for :class:`RolloutStats`).
    """

    tokens: list[list[int]]
    logprobs: list[list[float]]
    generated: int


def make_envs(num_envs: int, env_id: str = "SearchQA-v0", **env_kwargs: Any) -> list[Any]:
    """Build ``num_envs`` SearchQA sub-envs sharing one dataset and retriever (a ``SearchQAVectorEnv``'s ``envs``).

    For ``env_id="SearchQA-v0"`` the sub-envs of :class:`~igpo_env.envs.vector.SearchQAVectorEnv` are returned, so a
    turn's searches go to the retriever in one batched call; any other id is built with ``gym.make`` per env.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> len(make_envs(3, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus())))
        3
    """
    check_int("num_envs", num_envs, minimum=1)
    if env_id == "SearchQA-v0":
        from igpo_env.envs.vector import SearchQAVectorEnv

        kwargs = {k: v for k, v in env_kwargs.items() if k not in ("max_turns", "max_episode_steps")}
        return list(SearchQAVectorEnv(num_envs, max_episode_steps=None, **kwargs).envs)
    import gymnasium as gym

    import igpo_env  # noqa: F401  (registers the envs)

    return [gym.make(env_id, **env_kwargs) for _ in range(num_envs)]


def render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    """Render a transcript with the tokenizer's chat template (ChatML when it has none)."""
    from igpo_env.scoring.templates import render_transcript

    return render_transcript(list(messages), tokenizer, add_generation_prompt=add_generation_prompt)


def start_episodes(
    tokenizer: Any,
    envs: Sequence[Any],
    options: Sequence[dict[str, Any] | None],
    seeds: Sequence[int | None] | None = None,
) -> list[Rollout]:
    """Reset ``envs[i]`` with ``options[i]`` (and ``seeds[i]``); return one :class:`Rollout` per env with its prompt.

    The prompt is the chat-templated reset transcript with the generation prompt, encoded once.
    """
    rollouts = []
    for i, opts in enumerate(options):
        _, info = envs[i].reset(seed=None if seeds is None else seeds[i], options=opts)
        messages = info["messages"]
        ids = tokenizer.encode(render(tokenizer, messages, True), add_special_tokens=False)
        qid = info.get("question_id", (opts or {}).get("question_id", ""))
        source = str(info.get("data_source", "unknown"))
        rollouts.append(Rollout(str(qid), source, ids, messages=[dict(m) for m in messages]))
    return rollouts


def suffix_text(tokenizer: Any, messages: Sequence[Message], eot: str, sampled_eot: bool) -> str:
    """Text from the end of the last assistant content to the end of the next generation prompt."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    head = render(tokenizer, messages[:last], add_generation_prompt=True) + messages[last]["content"]
    full = render(tokenizer, messages, add_generation_prompt=True)
    if not full.startswith(head):
        from igpo_env.error import Error

        raise Error(
            "the chat template is not prefix-preserving (rendering more messages changed earlier text); multi-turn "
            "rollouts with a KV cache need one that is (ChatML / Qwen templates are)"
        )
    suffix = full[len(head) :]
    if sampled_eot and suffix.startswith(eot):
        suffix = suffix[len(eot) :]
    return suffix


def step_envs(envs: Sequence[Any], rows: Sequence[int], actions: Sequence[str]) -> list[tuple]:
    """Step ``envs[rows[i]]`` with ``actions[i]``; one batched retriever call when the envs support it."""
    subset = [envs[r] for r in rows]
    if subset and all(hasattr(e, "begin_step") for e in subset):
        retriever = subset[0].retriever
        if all(e.retriever is retriever for e in subset):
            pending = [e.begin_step(a) for e, a in zip(subset, actions, strict=True)]
            queries = [q for p in pending for q in p.queries]
            results = retriever.search(queries, subset[0].top_k) if queries else []
            out, pos = [], 0
            for e, p in zip(subset, pending, strict=True):
                n = len(p.queries)
                out.append(e.finish_step(p, results[pos : pos + n]))
                pos += n
            return out
    return [e.step(a) for e, a in zip(subset, actions, strict=True)]


@dataclass
class TurnContext:
    """What :func:`apply_turn` needs besides the turn itself (fixed for one loop call)."""

    tokenizer: Any
    envs: Sequence[Any]
    stops: Any  # sampling.TurnStops
    budget: float
    max_turns: int
    stats: RolloutStats


def apply_turn(
    ctx: TurnContext,
    rollouts: list[Rollout],
    row_ids: list[int],
    turn: int,
    turn_tokens: list[list[int]],
    turn_logps: list[list[float]],
) -> tuple[list[int], list[int], list[list[int]]]:
    """Record one assistant turn per row, step the envs, append the env tokens of the rows that go on.

    A row ends when its env terminates or truncates, at ``max_turns``, or when the next observation would overrun
    the completion budget; an ending turn that did not end with the end-of-turn token gets one (``env_mask`` 0).

    Returns:
        ``(rollout indices that go on, their positions in row_ids, the env tokens appended to each)``.
    """
    tokenizer, stops = ctx.tokenizer, ctx.stops
    action_texts = []
    for j, r in enumerate(row_ids):
        ro = rollouts[r]
        start = len(ro.completion_ids)
        ro.completion_ids.extend(turn_tokens[j])
        ro.env_mask.extend([1] * len(turn_tokens[j]))
        ro.logprobs.extend(turn_logps[j])
        ro.turn_spans.append((start, len(ro.completion_ids)))
        action_texts.append(tokenizer.decode(turn_tokens[j], skip_special_tokens=True))
    t_env = time.perf_counter()
    results = step_envs(ctx.envs, row_ids, action_texts)
    ctx.stats.env_seconds += time.perf_counter() - t_env
    keep_rows, keep_idx, chunks = [], [], []
    for j, (r, res) in enumerate(zip(row_ids, results, strict=True)):
        _, reward, terminated, truncated, info = res
        ro = rollouts[r]
        sampled_eot = stops.ends_with_eot(turn_tokens[j])
        shaping = info.get(SHAPING_KEY)
        if shaping is not None:  # a shaping wrapper's term, kept apart from the env's own reward
            ro.shaping_rewards.append(float(shaping["reward"]))
            reward = float(reward) - ro.shaping_rewards[-1]
        ro.env_rewards.append(float(reward))
        ro.action_types.append(str(info.get("action_type", "invalid")))
        ro.retrieved_doc_ids.append([str(d) for d in info.get("retrieved_doc_ids") or ()])
        ro.messages = [dict(m) for m in info["messages"]]
        ro.final_info = {k: v for k, v in info.items() if k != "messages"}
        ends = terminated or truncated or turn >= ctx.max_turns
        suffix: list[int] = []
        if not ends:
            text = suffix_text(tokenizer, ro.messages, stops.eot, sampled_eot)
            suffix = tokenizer.encode(text, add_special_tokens=False)
            if len(ro.completion_ids) + len(suffix) + 1 > ctx.budget:
                ends = True
        if ends:
            ro.terminated = bool(terminated)
            ro.truncated = not terminated
            ro.outcome = float(sum(ro.env_rewards))
            if not sampled_eot and stops.close_id is not None:
                ro.completion_ids.append(stops.close_id)
                ro.env_mask.append(0)
                ro.logprobs.append(0.0)
            continue
        ro.completion_ids.extend(suffix)
        ro.env_mask.extend([0] * len(suffix))
        ro.logprobs.extend([0.0] * len(suffix))
        ro.obs_ends.append(len(ro.completion_ids) - 1)
        keep_rows.append(r)
        keep_idx.append(j)
        chunks.append(suffix)
    return keep_rows, keep_idx, chunks
