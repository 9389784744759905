"""Multi-turn rollouts of a causal LM against SearchQA-v0, with a KV cache kept across turns and fused IG scoring.

:func:`generate_rollouts` plays a batch of episodes (e.g. ``num_generations`` rollouts of each prompt) in lockstep:

1. The prompts are rendered with the tokenizer's chat template (generation prompt included) and encoded once; rows
   that share a prompt share one prefill (the cache rows are copied).
2. Each turn, the active rows sample tokens from one batched ``model(...)`` call per token with the running
   ``past_key_values``; a row's turn ends at the end-of-turn token, a stop string (``</search>``, ``</answer>``) or
   ``max_turn_tokens``. The transcript is never re-encoded: only new tokens go through the model.
3. The decoded actions step the environments, with all search queries of the turn sent to the retriever in one call
   (sub-envs of :class:`~igpo_env.envs.vector.SearchQAVectorEnv` expose ``begin_step`` / ``finish_step``).
4. For rows that go on, the chat-template text between the action and the next generation prompt (end-of-turn,
   observation message, generation prompt) is appended with ``env_mask`` 0.
5. With ``ig`` set, the information gain of the turn is scored as a *branch* off each row's cache: only the IGPO
   pseudo-response and the gold-answer tokens are new (``igpo_env.scoring.templates`` convention), and the branch is
   cropped off afterwards. With the policy as scorer this gives the same numbers as ``HFScorer`` on the same token
   sequence (tested to 1e-5), at a few percent of the rollout time. Any other :class:`~igpo_env.scoring.base.Scorer`
   can be given instead (it re-encodes the transcripts).

Rows of a batch grow by different amounts each turn; the batch keeps one cache with masked holes (attention mask 0)
and explicit ``position_ids`` so every row sees exactly its own tokens at its own positions.

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

import inspect
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from igpo_env.types import Message

__all__ = [
    "IGSpec",
    "Rollout",
    "RolloutStats",
    "make_envs",
    "generate_rollouts",
    "generate_rollouts_with",
    "evaluate_policy",
    "DEFAULT_STOP_STRINGS",
]

logger = logging.getLogger(__name__)

DEFAULT_STOP_STRINGS = ("</search>", "</answer>")
"""An assistant turn ends at the first of these (or at the end-of-turn token)."""

STOP_WINDOW_TOKENS = 8
"""Tokens decoded at the end of a turn to look for a stop string."""


@dataclass(frozen=True)
class IGSpec:
    """How information gain is scored during a rollout.

    Attributes:
        mode: ``"prob_diff"`` (IGPO) or ``"log_prob_diff"``.
        alias: ``"first"`` (IGPO), ``"max"`` or ``"mean"`` over the gold aliases.
        scorer: ``None`` scores with the rolled-out model as a branch off its KV cache; otherwise any object with
            ``score(contexts, targets) -> list[TargetScore]`` (contexts are chat transcripts).
        template: An :class:`~igpo_env.scoring.templates.IGTemplate` (``None``: IGPO's).
    """

    mode: str = "prob_diff"
    alias: str = "first"
    scorer: Any = None
    template: Any = None


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
        env_rewards: Per turn, the environment's reward (0 for searches, the format penalty, the outcome).
        outcome: Episode return (sum of ``env_rewards``): the reward of the final turn.
        terminated: The agent answered.
        truncated: Cut at ``max_turns`` or at the completion budget.
        final_info: The last ``info`` of the episode (``em``/``f1`` when it answered).
        messages: The chat transcript.
        logprobs: Per completion token, the sampling log-prob (0.0 for environment tokens).
        action_types: Per turn, the env's ``info["action_type"]`` (``"search"``, ``"answer"`` or ``"invalid"``).
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
    """Timing of one :func:`generate_rollouts` call (seconds)."""

    total_seconds: float = 0.0
    ig_seconds: float = 0.0
    env_seconds: float = 0.0
    generated_tokens: int = 0

    @property
    def ig_share(self) -> float:
        """IG scoring time as a share of the rollout wall time."""
        return self.ig_seconds / self.total_seconds if self.total_seconds > 0 else 0.0


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
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"`num_envs` must be an int >= 1, got {num_envs!r}")
    if env_id == "SearchQA-v0":
        from igpo_env.envs.vector import SearchQAVectorEnv

        kwargs = {k: v for k, v in env_kwargs.items() if k not in ("max_turns", "max_episode_steps")}
        return list(SearchQAVectorEnv(num_envs, max_episode_steps=None, **kwargs).envs)
    import gymnasium as gym

    import igpo_env  # noqa: F401  (registers the envs)

    return [gym.make(env_id, **env_kwargs) for _ in range(num_envs)]


# ---------------------------------------------------------------------------------------------- batched KV cache
def _growing_cache():
    """Build a transformers ``Cache`` whose layers grow a preallocated buffer instead of concatenating each step."""
    import torch
    from transformers.cache_utils import Cache, DynamicLayer

    class GrowingLayer(DynamicLayer):
        min_growth = 256

        def lazy_initialization(self, key_states, value_states):
            super().lazy_initialization(key_states, value_states)
            self._k = self._v = None
            self._len = 0

        def _view(self):
            self.keys = self._k[..., : self._len, :]
            self.values = self._v[..., : self._len, :]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            new = key_states.shape[-2]
            if self._k is None or self._len + new > self._k.shape[-2]:
                cap = max(2 * (self._k.shape[-2] if self._k is not None else 0), self._len + new + self.min_growth)
                shape = (*key_states.shape[:-2], cap, key_states.shape[-1])
                k = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
                v = torch.empty(shape, dtype=value_states.dtype, device=value_states.device)
                if self._len:
                    k[..., : self._len, :] = self._k[..., : self._len, :]
                    v[..., : self._len, :] = self._v[..., : self._len, :]
                self._k, self._v = k, v
            self._k[..., self._len : self._len + new, :] = key_states
            self._v[..., self._len : self._len + new, :] = value_states
            self._len += new
            self._view()
            return self.keys, self.values

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError(f"pass a negative number of tokens to remove, got {tokens_to_remove}")
            if self.is_initialized and tokens_to_remove:
                self._len -= abs(tokens_to_remove)
                self._view()

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized and self._k is not None:
                self._k, self._v = self._k[indices], self._v[indices]
                self._view()

        def drop_leading(self, n: int) -> None:
            if self.is_initialized and self._k is not None and n:
                self._k, self._v = self._k[..., n:, :], self._v[..., n:, :]
                self._len -= n
                self._view()

    return Cache(layer_class_to_replicate=GrowingLayer)


class _CacheBatch:
    """One KV cache for a batch of rows of different lengths (masked holes + explicit positions)."""

    def __init__(self, model: Any, pad_id: int):
        import torch

        self.torch = torch
        self.model = model
        self.device = next(model.parameters()).device
        self.pad_id = pad_id
        self.cache = _growing_cache()
        self.attn = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        self.n_real = torch.zeros(0, dtype=torch.long, device=self.device)
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x: `cache`

    @property
    def size(self) -> int:
        return int(self.n_real.shape[0])

    def _pack(self, chunks: Sequence[Sequence[int]]):
        torch = self.torch
        width = max(1, max(len(c) for c in chunks))
        ids = torch.full((len(chunks), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(chunks), width), dtype=torch.long, device=self.device)
        for i, c in enumerate(chunks):
            if c:
                ids[i, width - len(c) :] = torch.tensor(list(c), dtype=torch.long, device=self.device)
                mask[i, width - len(c) :] = 1
        return ids, mask, width

    def _forward(self, ids, mask, logits_to_keep: int):
        torch = self.torch
        base = self.n_real if self.size else torch.zeros(ids.shape[0], dtype=torch.long, device=self.device)
        position_ids = (base[:, None] + mask.cumsum(1) - 1).clamp(min=0)
        attn = torch.cat([self.attn, mask], dim=1) if self.size else mask
        out = self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **{self.cache_arg: self.cache},
        )
        return out.logits, attn

    def append(self, chunks: Sequence[Sequence[int]]):
        """Append one (left-padded) chunk per row; return the logits after each row's last real token."""
        ids, mask, _ = self._pack(chunks)
        logits, attn = self._forward(ids, mask, logits_to_keep=1)
        self.attn = attn
        self.n_real = (self.n_real if self.size else 0) + mask.sum(1)
        return logits[:, -1, :].float()

    def score_branch(self, prefixes: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per row, the log-probs of ``targets[i]`` after ``prefixes[i]``, as a branch that is cropped off again."""
        torch = self.torch
        chunks = [list(p) + list(t) for p, t in zip(prefixes, targets, strict=True)]
        ids, mask, width = self._pack(chunks)
        keep = max(len(t) for t in targets) + 1
        logits, _ = self._forward(ids, mask, logits_to_keep=keep)
        self.cache.crop(-width)
        logp = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, t in enumerate(targets):
            n = len(t)
            # target token j sits at chunk position width - n + j; its logits at the position before it
            rows = logp[i, keep - 1 - n : keep - 1, :]
            tgt = torch.tensor(list(t), dtype=torch.long, device=self.device)
            out.append(rows.gather(1, tgt[:, None]).squeeze(1).tolist())
        return out

    def step(self, tokens, active):
        """Feed one token per row (rows with ``active`` False get a masked pad); return next-token logits."""
        torch = self.torch
        ids = torch.where(active, tokens, torch.full_like(tokens, self.pad_id))[:, None]
        mask = active.long()[:, None]
        logits, attn = self._forward(ids, mask, logits_to_keep=1)
        self.attn = attn
        self.n_real = self.n_real + mask[:, 0]
        return logits[:, -1, :].float()

    def select(self, index: Sequence[int]) -> None:
        """Keep (or repeat) rows by index."""
        idx = self.torch.tensor(list(index), dtype=self.torch.long, device=self.device)
        self.cache.batch_select_indices(idx)
        self.attn = self.attn[idx]
        self.n_real = self.n_real[idx]
        # drop leading columns that no row attends to any more
        if self.attn.shape[1] and self.attn.shape[0]:
            first = int(self.attn.any(0).long().argmax().item()) if bool(self.attn.any()) else 0
            if first > 0:
                self.attn = self.attn[:, first:]
                for layer in self.cache.layers:
                    layer.drop_leading(first)


# ---------------------------------------------------------------------------------------------- sampling
def _sample(logits, temperature: float, top_k: int, top_p: float, generator):
    import torch

    if temperature <= 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    logits = logits / temperature
    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    logp = torch.log_softmax(logits, -1)
    tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


# ---------------------------------------------------------------------------------------------- chat text helpers
def _render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    from igpo_env.scoring.templates import render_transcript

    return render_transcript(list(messages), tokenizer, add_generation_prompt=add_generation_prompt)


def _suffix_text(tokenizer: Any, messages: Sequence[Message], eot: str, sampled_eot: bool) -> str:
    """Text from the end of the last assistant content to the end of the next generation prompt."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    head = _render(tokenizer, messages[:last], add_generation_prompt=True) + messages[last]["content"]
    full = _render(tokenizer, messages, add_generation_prompt=True)
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


def _step_envs(envs: Sequence[Any], rows: Sequence[int], actions: Sequence[str]) -> list[tuple]:
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


def _ig_branch_ids(tokenizer: Any, template: Any, golds: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    prefix = template.think + template.pseudo_response
    return tokenizer.encode(prefix, add_special_tokens=False), [
        tokenizer.encode(g, add_special_tokens=False) for g in golds
    ]


@dataclass
class _TurnContext:
    tokenizer: Any
    envs: Sequence[Any]
    eot: str
    eot_ids: set[int]
    budget: float
    max_turns: int
    stats: RolloutStats


def _apply_turn(
    ctx: _TurnContext,
    rollouts: list[Rollout],
    row_ids: list[int],
    turn: int,
    turn_tokens: list[list[int]],
    turn_logps: list[list[float]],
    sampled_eot: list[bool],
) -> tuple[list[int], list[int], list[list[int]]]:
    """Record one assistant turn per row, step the envs, append the env tokens of the rows that go on.

    Returns:
        ``(rollout indices that go on, their positions in row_ids, the env tokens appended to each)``.
    """
    tokenizer = ctx.tokenizer
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
    results = _step_envs(ctx.envs, row_ids, action_texts)
    ctx.stats.env_seconds += time.perf_counter() - t_env
    keep_rows, keep_idx, chunks = [], [], []
    for j, (r, res) in enumerate(zip(row_ids, results, strict=True)):
        obs, reward, terminated, truncated, info = res
        ro = rollouts[r]
        ro.env_rewards.append(float(reward))
        ro.action_types.append(str(info.get("action_type", "invalid")))
        ro.messages = [dict(m) for m in info["messages"]]
        ro.final_info = {k: v for k, v in info.items() if k != "messages"}
        ends = terminated or truncated or turn >= ctx.max_turns
        suffix: list[int] = []
        if not ends:
            text = _suffix_text(tokenizer, ro.messages, ctx.eot, sampled_eot[j])
            suffix = tokenizer.encode(text, add_special_tokens=False)
            if len(ro.completion_ids) + len(suffix) + 1 > ctx.budget:
                ends = True
        if ends:
            ro.terminated = bool(terminated)
            ro.truncated = not terminated
            ro.outcome = float(sum(ro.env_rewards))
            if not sampled_eot[j] and ctx.eot_ids:
                ro.completion_ids.append(next(iter(ctx.eot_ids)))
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


# ---------------------------------------------------------------------------------------------- main loop
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
    stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
    ig: IGSpec | None = None,
    seed: int | None = None,
    actions: Sequence[Sequence[str]] | None = None,
) -> tuple[list[Rollout], RolloutStats]:
    """Play one episode per question id, ``envs[i]`` playing ``question_ids[i]``, with the model in eval/no-grad.

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer (chat template: ChatML when it has none).
        envs: At least ``len(question_ids)`` SearchQA envs (see :func:`make_envs`).
        question_ids: The question of each rollout; equal ids share one prompt prefill.
        max_turns: Turn limit (the episode is truncated after it).
        max_turn_tokens: New tokens per assistant turn.
        max_completion_length: Budget of completion tokens per rollout (observations included); ``None``: no budget.
        temperature: Sampling temperature; 0 is greedy.
        top_k: Top-k filter (0: off).
        top_p: Nucleus filter (1.0: off).
        stop_strings: A turn ends at the first of these.
        ig: Score information gain per turn (``None``: no IG).
        seed: Seed of the sampling generator.
        actions: Teacher-forced assistant texts, per rollout one per turn, instead of sampling (tests, replay);
            each is encoded and closed with the end-of-turn token.

    Returns:
        ``(rollouts, stats)`` in the order of ``question_ids``.
    """
    import torch

    from igpo_env.scoring.math import aggregate_aliases, check_alias, check_mode, information_gain
    from igpo_env.scoring.templates import IGPO_TEMPLATE, end_of_turn

    n = len(question_ids)
    if n == 0:
        raise ValueError("`question_ids` must not be empty")
    if len(envs) < n:
        raise ValueError(f"need one env per rollout: {n} question ids but {len(envs)} envs")
    for name, value in (("max_turns", max_turns), ("max_turn_tokens", max_turn_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    if max_completion_length is not None and max_completion_length < 1:
        raise ValueError(f"`max_completion_length` must be >= 1 or None, got {max_completion_length}")
    if actions is not None and len(actions) != n:
        raise ValueError(f"`actions` must hold one list per rollout ({n}), got {len(actions)}")
    if ig is not None:
        check_mode(ig.mode)
        check_alias(ig.alias)
    budget = max_completion_length if max_completion_length is not None else math.inf
    stats = RolloutStats()
    t_start = time.perf_counter()
    generator = torch.Generator(device=next(model.parameters()).device)
    generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item()))

    eot = end_of_turn(tokenizer)
    eot_ids = {tokenizer.convert_tokens_to_ids(eot)} if eot in tokenizer.get_vocab() else set()
    if tokenizer.eos_token_id is not None:
        eot_ids.add(int(tokenizer.eos_token_id))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eot_ids))
    template = (ig.template if ig is not None and ig.template is not None else IGPO_TEMPLATE) if ig else None

    rollouts: list[Rollout] = []
    for i, qid in enumerate(question_ids):
        obs, info = envs[i].reset(options={"question_id": qid})
        messages = info["messages"]
        ids = tokenizer.encode(_render(tokenizer, messages, True), add_special_tokens=False)
        rollouts.append(
            Rollout(str(qid), str(info.get("data_source", "unknown")), ids, messages=[dict(m) for m in messages])
        )
    golds = [tuple(getattr(envs[i], "unwrapped", envs[i]).ground_truth) for i in range(n)] if ig else []
    ig_targets = [(golds[i][:1] if ig.alias == "first" else golds[i]) for i in range(n)] if ig else []

    def _aggregate(lps: list[float]) -> float:
        return aggregate_aliases(lps, ig.alias, ig.mode)

    def _score_rows(batch: _CacheBatch, rows: list[int]) -> list[float]:
        """Return the aggregated gold mean log-prob of the given batch rows (policy branch or external scorer)."""
        t0 = time.perf_counter()
        if ig.scorer is None:
            prefix_ids, _ = _ig_branch_ids(tokenizer, template, [])
            per_alias: list[list[float]] = [[] for _ in rows]
            depth = max(len(ig_targets[row_ids[b]]) for b in rows)
            for a in range(depth):
                tgt = []
                for b in rows:
                    al = ig_targets[row_ids[b]]
                    tgt.append(tokenizer.encode(al[min(a, len(al) - 1)], add_special_tokens=False) or [pad_id])
                lp_all = _branch_on_rows(batch, rows, prefix_ids, tgt)
                for j, b in enumerate(rows):
                    if a < len(ig_targets[row_ids[b]]):
                        per_alias[j].append(sum(lp_all[j]) / len(lp_all[j]))
            result = [_aggregate(x) for x in per_alias]
        else:
            contexts, targets, owner = [], [], []
            for j, b in enumerate(rows):
                for al in ig_targets[row_ids[b]]:
                    contexts.append(rollouts[row_ids[b]].messages)
                    targets.append(al)
                    owner.append(j)
            scores = ig.scorer.score(contexts, targets)
            grouped: list[list[float]] = [[] for _ in rows]
            for j, s in zip(owner, scores, strict=True):
                grouped[j].append(float(s.mean_logprob))
            result = [_aggregate(x) for x in grouped]
        stats.ig_seconds += time.perf_counter() - t0
        return result

    def _branch_on_rows(batch: _CacheBatch, rows: list[int], prefix_ids: list[int], tgt: list[list[int]]):
        if len(rows) == batch.size:
            return batch.score_branch([prefix_ids] * len(rows), tgt)
        # score a subset: give the other rows a 1-token dummy branch (cropped off like the rest)
        full_t = [[pad_id]] * batch.size
        for j, b in enumerate(rows):
            full_t[b] = tgt[j]
        res = batch.score_branch([prefix_ids] * batch.size, full_t)
        return [res[b] for b in rows]

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # ---- prefill: one row per distinct prompt, then repeat rows
            uniq: dict[tuple[int, ...], int] = {}
            for r in rollouts:
                uniq.setdefault(tuple(r.prompt_ids), len(uniq))
            batch = _CacheBatch(model, pad_id)
            uniq_ids = list(uniq)
            logits_u = batch.append(uniq_ids)
            row_ids = list(range(n))  # batch row -> rollout index
            if ig is not None:
                # p_0 on the distinct prompts, computed on the distinct rows before repetition
                first_of = {}
                for i, r in enumerate(rollouts):
                    first_of.setdefault(uniq[tuple(r.prompt_ids)], i)
                saved = row_ids
                row_ids = [first_of[u] for u in range(len(uniq_ids))]
                p0 = _score_rows(batch, list(range(len(uniq_ids))))
                row_ids = saved
                for r in rollouts:
                    r.mean_logprobs.append(p0[uniq[tuple(r.prompt_ids)]])
            rep = [uniq[tuple(r.prompt_ids)] for r in rollouts]
            batch.select(rep)
            logits = logits_u[torch.tensor(rep, device=logits_u.device)]

            turn = 0
            while row_ids:
                turn += 1
                # ---- generate one assistant turn for every active row
                b = len(row_ids)
                turn_tokens: list[list[int]] = [[] for _ in range(b)]
                turn_logps: list[list[float]] = [[] for _ in range(b)]
                sampled_eot = [False] * b
                limit = [int(min(max_turn_tokens, budget - len(rollouts[r].completion_ids))) for r in row_ids]
                active = torch.tensor([lim > 0 for lim in limit], device=batch.device)
                if actions is not None:
                    for j, r in enumerate(row_ids):
                        if turn > len(actions[r]):
                            raise ValueError(f"`actions[{r}]` has {len(actions[r])} turns; the episode needs more")
                        forced = tokenizer.encode(actions[r][turn - 1], add_special_tokens=False)
                        forced = forced[: limit[j] - 1] + [next(iter(eot_ids))]
                        turn_tokens[j] = _cut_at_stop(tokenizer, forced, stop_strings, eot_ids)
                        turn_logps[j] = [0.0] * len(turn_tokens[j])
                        sampled_eot[j] = turn_tokens[j][-1] in eot_ids
                    logits = batch.append(turn_tokens)
                    active[:] = False
                while bool(active.any()):
                    sampling = active.clone()
                    tokens, logps = _sample(logits, temperature, top_k, top_p, generator)
                    tok_list, lp_list = tokens.tolist(), logps.tolist()
                    for j in range(b):
                        if not bool(sampling[j]):
                            continue
                        turn_tokens[j].append(tok_list[j])
                        turn_logps[j].append(lp_list[j])
                        stats.generated_tokens += 1
                        if tok_list[j] in eot_ids:
                            sampled_eot[j] = done = True
                        elif len(turn_tokens[j]) >= limit[j]:
                            done = True
                        else:
                            tail = tokenizer.decode(turn_tokens[j][-STOP_WINDOW_TOKENS:], skip_special_tokens=True)
                            done = any(s in tail for s in stop_strings)
                        if done:
                            active[j] = False
                    # every sampled token (the last one of a turn included) goes into the cache
                    logits = batch.step(tokens, sampling)
                # ---- bookkeeping + env step
                keep_rows, keep_idx, chunks = _apply_turn(
                    _TurnContext(tokenizer, envs, eot, eot_ids, budget, max_turns, stats),
                    rollouts,
                    row_ids,
                    turn,
                    turn_tokens,
                    turn_logps,
                    sampled_eot,
                )
                if not keep_rows:
                    break
                batch.select(keep_idx)
                row_ids = keep_rows
                logits = batch.append(chunks)
                if ig is not None:
                    cur = _score_rows(batch, list(range(len(row_ids))))
                    for j, r in enumerate(row_ids):
                        ro = rollouts[r]
                        ro.ig_rewards.append(information_gain(ro.mean_logprobs[-1], cur[j], ig.mode))
                        ro.mean_logprobs.append(cur[j])
    finally:
        if was_training:
            model.train()
    stats.total_seconds = time.perf_counter() - t_start
    return rollouts, stats


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
    stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
    verbose: bool = False,
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

    Returns:
        ``{"em", "f1", "n", "answered", "mean_turns", "well_formed_rate", "by_source": {source: {"em", "f1", "n"}}}``
        (``well_formed_rate``: share of turns the env parsed as a search or an answer).

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> res = evaluate_policy(tiny_causal_lm(), tiny_tokenizer(), envs, limit=2, max_turns=1, max_turn_tokens=3)
        >>> res["n"], sorted(res)
        (2, ['answered', 'by_source', 'em', 'f1', 'mean_turns', 'n', 'well_formed_rate'])
    """
    from tqdm.auto import tqdm

    if not envs:
        raise ValueError("`envs` must hold at least one env")
    if question_ids is None:
        question_ids = [ex.id for ex in getattr(envs[0], "unwrapped", envs[0]).examples]
    question_ids = list(question_ids)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"`limit` must be >= 1, got {limit}")
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
    return {
        "em": sum(r.em for r in rollouts) / total,
        "f1": sum(r.f1 for r in rollouts) / total,
        "n": total,
        "answered": sum(r.terminated for r in rollouts) / total,
        "mean_turns": sum(r.num_turns for r in rollouts) / total,
        "well_formed_rate": sum(t != "invalid" for t in turn_types) / max(1, len(turn_types)),
        "by_source": dict(sorted(by_source.items())),
    }


def _cut_at_stop(tokenizer: Any, ids: list[int], stop_strings: Sequence[str], eot_ids: set[int]) -> list[int]:
    """Keep tokens up to the first end-of-turn token or the token that completes a stop string."""
    for k, t in enumerate(ids):
        if t in eot_ids:
            return ids[: k + 1]
        tail = tokenizer.decode(ids[max(0, k + 1 - STOP_WINDOW_TOKENS) : k + 1], skip_special_tokens=True)
        if any(s in tail for s in stop_strings):
            return ids[: k + 1]
    return ids


def generate_rollouts_with(
    generate_fn: Any,
    tokenizer: Any,
    envs: Sequence[Any],
    question_ids: Sequence[str],
    *,
    max_turns: int = 10,
    max_turn_tokens: int = 128,
    max_completion_length: int | None = None,
    stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
    ig: IGSpec | None = None,
) -> tuple[list[Rollout], RolloutStats]:
    """Multi-turn rollouts through an external generation engine (vLLM), one call per turn for all active rows.

    The engine gets each row's full token sequence every turn (vLLM's prefix caching makes the repeated prefix
    cheap); IG needs ``ig.scorer`` (e.g. ``HFScorer`` on the policy, which reuses each episode's prefix cache via
    ``cache_keys``, or a ``VLLMScorer``). The bookkeeping (spans, env masks, rewards) is the same as
    :func:`generate_rollouts`.

    Args:
        generate_fn: ``generate_fn(token_id_lists, max_tokens) -> (completion_id_lists, logprob_lists | None)``,
            stopping at the end-of-turn token or the stop strings (extra tokens after a stop string are cut here).
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
        >>> tok = tiny_tokenizer()
        >>> answer = tok.encode("<answer> Karsel </answer>", add_special_tokens=False) + [tok.eos_token_id]
        >>> envs = make_envs(1, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> rollouts, _ = generate_rollouts_with(lambda p, n: ([answer for _ in p], None), tok, envs, ["tq0"])
        >>> rollouts[0].f1, rollouts[0].num_turns
        (1.0, 1)
    """
    from igpo_env.scoring.math import aggregate_aliases, check_alias, check_mode, information_gain
    from igpo_env.scoring.templates import end_of_turn

    n = len(question_ids)
    if n == 0 or len(envs) < n:
        raise ValueError(f"need one env per rollout and at least one rollout: {n} question ids, {len(envs)} envs")
    if ig is not None:
        check_mode(ig.mode)
        check_alias(ig.alias)
        if ig.scorer is None:
            raise ValueError("`ig.scorer` must be set: external engines have no KV cache to branch from")
    budget = max_completion_length if max_completion_length is not None else math.inf
    stats = RolloutStats()
    t_start = time.perf_counter()
    eot = end_of_turn(tokenizer)
    eot_ids = {tokenizer.convert_tokens_to_ids(eot)} if eot in tokenizer.get_vocab() else set()
    if tokenizer.eos_token_id is not None:
        eot_ids.add(int(tokenizer.eos_token_id))
    rollouts: list[Rollout] = []
    for i, qid in enumerate(question_ids):
        _, info = envs[i].reset(options={"question_id": qid})
        msgs = info["messages"]
        ids = tokenizer.encode(_render(tokenizer, msgs, True), add_special_tokens=False)
        rollouts.append(
            Rollout(str(qid), str(info.get("data_source", "unknown")), ids, messages=[dict(m) for m in msgs])
        )

    def score(rows: list[int]) -> list[float]:
        t0 = time.perf_counter()
        contexts, targets, owner = [], [], []
        for r in rows:
            golds = tuple(getattr(envs[r], "unwrapped", envs[r]).ground_truth)
            for g in golds[:1] if ig.alias == "first" else golds:
                contexts.append(rollouts[r].messages)
                targets.append(g)
                owner.append(r)
        kwargs = {"cache_keys": [f"rollout-{id(rollouts)}-{r}" for r in owner]} if _takes_cache_keys(ig.scorer) else {}
        scores = ig.scorer.score(contexts, targets, **kwargs)
        grouped: dict[int, list[float]] = {r: [] for r in rows}
        for r, sc in zip(owner, scores, strict=True):
            grouped[r].append(float(sc.mean_logprob))
        stats.ig_seconds += time.perf_counter() - t0
        return [aggregate_aliases(grouped[r], ig.alias, ig.mode) for r in rows]

    row_ids = list(range(n))
    if ig is not None:
        for r, lp in zip(row_ids, score(row_ids), strict=True):
            rollouts[r].mean_logprobs.append(lp)
    turn = 0
    while row_ids:
        turn += 1
        limits = [int(min(max_turn_tokens, budget - len(rollouts[r].completion_ids))) for r in row_ids]
        outs, lps = generate_fn([rollouts[r].prompt_ids + rollouts[r].completion_ids for r in row_ids], max(limits))
        turn_tokens = [
            _cut_at_stop(tokenizer, list(o)[:lim], stop_strings, eot_ids) for o, lim in zip(outs, limits, strict=True)
        ]
        turn_logps = [
            (list(lps[j])[: len(t)] if lps is not None else [0.0] * len(t)) for j, t in enumerate(turn_tokens)
        ]
        stats.generated_tokens += sum(len(t) for t in turn_tokens)
        sampled_eot = [bool(t) and t[-1] in eot_ids for t in turn_tokens]
        ctx = _TurnContext(tokenizer, envs, eot, eot_ids, budget, max_turns, stats)
        keep_rows, _, _ = _apply_turn(ctx, rollouts, row_ids, turn, turn_tokens, turn_logps, sampled_eot)
        row_ids = keep_rows
        if ig is not None and row_ids:
            for r, lp in zip(row_ids, score(row_ids), strict=True):
                ro = rollouts[r]
                ro.ig_rewards.append(information_gain(ro.mean_logprobs[-1], lp, ig.mode))
                ro.mean_logprobs.append(lp)
    if ig is not None and hasattr(ig.scorer, "release"):
        ig.scorer.release([f"rollout-{id(rollouts)}-{r}" for r in range(n)])
    stats.total_seconds = time.perf_counter() - t_start
    return rollouts, stats


def _takes_cache_keys(scorer: Any) -> bool:
    try:
        return "cache_keys" in inspect.signature(scorer.score).parameters
    except (TypeError, ValueError):
        return False
