"""The KV-cached per-turn generator: one batched transformers cache kept across the turns of many episodes.

- :func:`growing_cache`: a transformers ``Cache`` whose layers grow a preallocated buffer instead of concatenating
  each step.
- :class:`CacheBatch`: one cache for a batch of rows of different lengths. Rows grow by different amounts each turn;
  the batch keeps masked holes (attention mask 0) and explicit ``position_ids`` so every row sees exactly its own
  tokens at its own positions. It appends chunks, steps one token per row, selects rows and scores a branch that is
  cropped off again.
- :class:`KVCacheGenerator`: the per-turn generator of :func:`agents.rollout.run_episodes` for a transformers causal
  LM. Rows that share a prompt share one prefill; each turn samples one token per active row per model call with the
  running cache, so the transcript is never re-encoded; the information gain is scored as a branch off each row's
  cache (only the IGPO pseudo-response and the gold tokens are new) and cropped off afterwards.

Example:
    >>> from igpo_env.data.toy import toy_corpus, toy_qa
    >>> from igpo_env.retrieval import BM25Retriever
    >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
    >>> from agents.rollout import make_envs, run_episodes
    >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    >>> gen = KVCacheGenerator(tiny_causal_lm(), temperature=0.0)
    >>> rollouts, _ = run_episodes(gen, tiny_tokenizer(), envs, ["tq0", "tq1"], max_turns=1, max_turn_tokens=3)
    >>> [r.num_turns for r in rollouts]
    [1, 1]
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from agents.rollout.sampling import TurnStops, sample_tokens
from agents.rollout.turns import Rollout, TurnOutput
from igpo_env._validation import check_fraction, check_int, check_number
from igpo_env.scoring.templates import IGPO_TEMPLATE, IGTemplate

__all__ = ["KVCacheGenerator", "CacheBatch", "growing_cache"]


def growing_cache() -> Any:
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


class CacheBatch:
    """One KV cache for a batch of rows of different lengths (masked holes + explicit positions)."""

    def __init__(self, model: Any, pad_id: int):
        import torch

        self.torch = torch
        self.model = model
        self.device = next(model.parameters()).device
        self.pad_id = pad_id
        self.cache = growing_cache()
        self.attn = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        self.n_real = torch.zeros(0, dtype=torch.long, device=self.device)
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x: `cache`

    @property
    def size(self) -> int:
        """Rows in the batch."""
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
        with torch.no_grad():
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


class KVCacheGenerator:
    """Per-turn generator over a transformers causal LM with one batched KV cache kept across turns.

    Implements the ``TurnGenerator`` protocol of :mod:`agents.rollout.loop` and the branch scoring its IG path uses
    when ``IGSpec.scorer`` is ``None``. The model runs in eval mode without gradients for the whole loop (its training
    mode is restored by :meth:`close`). One instance serves one loop call at a time.

    Args:
        model: A transformers causal LM.
        temperature: Sampling temperature; 0 is greedy.
        top_k: Top-k filter (0: off).
        top_p: Nucleus filter (1.0: off).
        seed: Seed of the sampling generator (``None``: drawn from torch's global RNG), or one seed per rollout:
            each rollout then samples from its own generator, so its tokens do not depend on the other rollouts
            played in the same batch (the trainer's rollouts match whatever way they are split across processes).
        actions: Teacher-forced assistant texts instead of sampling (tests, replay): per rollout, one per turn; each
            is encoded, cut to the turn's token limit and closed with the end-of-turn token.

    Example:
        >>> from igpo_env.scoring.tiny import tiny_causal_lm
        >>> KVCacheGenerator(tiny_causal_lm(), top_p=1.5)
        Traceback (most recent call last):
        ...
        ValueError: `top_p` must be a number in [0, 1], got 1.5
    """

    def __init__(
        self,
        model: Any,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | Sequence[int] | None = None,
        actions: Sequence[Sequence[str]] | None = None,
    ) -> None:
        self.model = model
        self.temperature = check_number("temperature", temperature, minimum=0)
        self.top_k = check_int("top_k", top_k, minimum=0)
        self.top_p = check_fraction("top_p", top_p)
        if seed is None or isinstance(seed, int):
            self.seed: int | list[int] | None = None if seed is None else check_int("seed", seed)
        else:
            self.seed = [check_int(f"seed[{i}]", s) for i, s in enumerate(seed)]
        self.actions = None if actions is None else [list(a) for a in actions]
        self._batch: CacheBatch | None = None
        self._was_training = False

    # ------------------------------------------------------------------ TurnGenerator
    def start(self, rollouts: Sequence[Rollout], stops: TurnStops) -> None:
        """Prefill the prompts, one cache row per distinct prompt (rows are repeated before the first turn)."""
        import torch

        n = len(rollouts)
        if self.actions is not None and len(self.actions) != n:
            raise ValueError(f"`actions` must hold one list per rollout ({n}), got {len(self.actions)}")
        self.stops = stops
        self.tokenizer = stops.tokenizer
        device = next(self.model.parameters()).device
        self.row_generators: list[Any] | None = None
        if isinstance(self.seed, list):
            if len(self.seed) != n:
                raise ValueError(f"`seed` must hold one seed per rollout ({n}), got {len(self.seed)}")
            self.row_generators = [torch.Generator(device=device).manual_seed(s) for s in self.seed]
        else:
            seed = self.seed if self.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            self.generator = torch.Generator(device=device).manual_seed(seed)
        self._was_training = self.model.training
        self.model.eval()
        uniq: dict[tuple[int, ...], int] = {}
        for r in rollouts:
            uniq.setdefault(tuple(r.prompt_ids), len(uniq))
        self._batch = CacheBatch(self.model, stops.pad_id)
        self._logits = self._batch.append(list(uniq))
        self._rep: list[int] | None = [uniq[tuple(r.prompt_ids)] for r in rollouts]
        self._first_of: dict[int, int] = {}
        for i, u in enumerate(self._rep):
            self._first_of.setdefault(u, i)

    def _expand(self) -> None:
        """Repeat the prefilled distinct-prompt rows into one row per rollout (once, before the first turn)."""
        if self._rep is not None:
            import torch

            self._batch.select(self._rep)
            self._logits = self._logits[torch.tensor(self._rep, device=self._logits.device)]
            self._rep = None

    def generate(
        self, rollouts: Sequence[Rollout], rows: Sequence[int], limits: Sequence[int], turn: int
    ) -> TurnOutput:
        """Sample (or force) one assistant turn for the cache rows, ``rows[j]`` being the rollout of row ``j``."""
        import torch

        self._expand()
        batch, stops = self._batch, self.stops
        b = len(rows)
        turn_tokens: list[list[int]] = [[] for _ in range(b)]
        turn_logps: list[list[float]] = [[] for _ in range(b)]
        generated = 0
        active = torch.tensor([lim > 0 for lim in limits], device=batch.device)
        if self.actions is not None:
            for j, r in enumerate(rows):
                if turn > len(self.actions[r]):
                    raise ValueError(f"`actions[{r}]` has {len(self.actions[r])} turns; the episode needs more")
                forced = self.tokenizer.encode(self.actions[r][turn - 1], add_special_tokens=False)
                turn_tokens[j] = stops.cut(forced[: limits[j] - 1] + [stops.close_id])
                turn_logps[j] = [0.0] * len(turn_tokens[j])
            self._logits = batch.append(turn_tokens)
            active[:] = False
        while bool(active.any()):
            sampling = active.clone()
            if self.row_generators is not None:  # each rollout draws from its own stream, only while it samples
                generator: Any = [self.row_generators[r] if bool(sampling[j]) else None for j, r in enumerate(rows)]
            else:
                generator = self.generator
            tokens, logps = sample_tokens(self._logits, self.temperature, self.top_k, self.top_p, generator)
            tok_list, lp_list = tokens.tolist(), logps.tolist()
            for j in range(b):
                if not bool(sampling[j]):
                    continue
                turn_tokens[j].append(tok_list[j])
                turn_logps[j].append(lp_list[j])
                generated += 1
                if tok_list[j] in stops.eot_ids or len(turn_tokens[j]) >= limits[j] or stops.has_stop(turn_tokens[j]):
                    active[j] = False
            # every sampled token (the last one of a turn included) goes into the cache
            self._logits = batch.step(tokens, sampling)
        return TurnOutput(turn_tokens, turn_logps, generated)

    def advance(self, keep: Sequence[int], chunks: Sequence[Sequence[int]]) -> None:
        """Keep the cache rows at positions ``keep`` and append each one's environment tokens."""
        self._batch.select(keep)
        self._logits = self._batch.append(chunks)

    def close(self) -> None:
        """Drop the cache and restore the model's training mode."""
        self._batch = None
        self._logits = None
        if self._was_training:
            self.model.train()
        self._was_training = False

    # ------------------------------------------------------------------ IG branch
    def score_targets(self, targets: Sequence[Sequence[str]], template: IGTemplate | None = None) -> list[list[float]]:
        """Mean log-prob of each target after each cache row + the IGPO pseudo-response, as a cropped-off branch.

        Args:
            targets: Per cache row (per rollout before the first turn), its gold aliases to score (at least one).
            template: The pseudo-response (``None``: IGPO's).

        Returns:
            Per row, one mean log-prob per target.
        """
        if self._rep is None:
            return self._score_rows(targets, template or IGPO_TEMPLATE)
        # before the first turn the cache holds the distinct prompts: score those, then map back to the rollouts
        distinct = [targets[self._first_of[u]] for u in range(len(self._first_of))]
        scores = self._score_rows(distinct, template or IGPO_TEMPLATE)
        return [scores[u] for u in self._rep]

    def _score_rows(self, targets: Sequence[Sequence[str]], template: IGTemplate) -> list[list[float]]:
        tok, pad_id = self.tokenizer, self.stops.pad_id
        prefix_ids = tok.encode(template.prefix(""), add_special_tokens=False)
        out: list[list[float]] = [[] for _ in targets]
        # one branch per alias depth; rows with fewer aliases repeat their last one (scored, then ignored)
        for a in range(max(len(t) for t in targets)):
            tgt = [tok.encode(al[min(a, len(al) - 1)], add_special_tokens=False) or [pad_id] for al in targets]
            lps = self._batch.score_branch([prefix_ids] * len(targets), tgt)
            for j, al in enumerate(targets):
                if a < len(al):
                    out[j].append(sum(lps[j]) / len(lps[j]))
        return out
