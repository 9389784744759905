"""Stable-Baselines3 plumbing for candidate-action agents on SearchQA-v0 (used by :mod:`agents.sb3`).

- :class:`CandidateVecEnv`: an SB3 ``VecEnv`` over a SearchQA text vector env
  (:class:`~igpo_env.envs.vector.SearchQAVectorEnv`, optionally wrapped in
  :class:`~igpo_env.wrappers.vector.information_gain.InformationGainVectorWrapper` so IG is scored in one batched
  call per step) with one :class:`~igpo_env.wrappers.discrete.CandidateSpace` per sub-env: the vector twin of
  :class:`~igpo_env.wrappers.discrete.CandidateActionWrapper` (same observations, actions, masks and rewards; tested).
  Finished sub-envs are reset in the same step (SB3's convention; ``info["terminal_observation"]``).
- :class:`MemoScorer`: a scorer that remembers every ``p`` it computed, so states revisited during training (the
  same question with the same search results) are scored once.
- :func:`evaluate_candidates`: dev F1 of any candidate policy (an SB3 model, random candidates), one episode per
  question; :func:`random_candidate_policy`; :class:`DevF1Callback` runs it during ``learn()``.
- :class:`CandidateExtractor`: the features extractor of the candidate policy (``Dict`` observations).

Heavy imports (stable-baselines3, torch) happen at import of this module: import it only where SB3 is used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from igpo_env._validation import check_choice
from igpo_env.scoring.base import Context, Scorer, is_caching_scorer
from igpo_env.types import TargetScore
from igpo_env.wrappers.candidates import CachedEncoder
from igpo_env.wrappers.discrete import (
    DEFAULT_OBSERVATION_PHRASES,
    DEFAULT_QUESTION_PHRASES,
    CandidateActionWrapper,
    CandidateSpace,
)

__all__ = [
    "CandidateVecEnv",
    "MemoScorer",
    "MEMO_KEYS",
    "CandidatePolicy",
    "CandidateExtractor",
    "DevF1Callback",
    "DEFAULT_EXTRACTOR_HIDDEN",
    "evaluate_candidates",
    "random_candidate_policy",
]

logger = logging.getLogger(__name__)

MEMO_KEYS = ("transcript", "observations")
"""What :class:`MemoScorer` keys a score on: the exact transcript, or the question prompt and the set of observations
(the retrieved passages; transcripts that differ only in the search wording or order share one score)."""

_INFO_KEYS = ("question_id", "turn", "action_type", "em", "f1", "outcome", "information_gain")

DEFAULT_EXTRACTOR_HIDDEN = 32
"""Per-phrase feature width of :class:`CandidateExtractor`."""

CandidatePolicy = Callable[[Any, np.ndarray], int]
"""``policy(observation, action_mask) -> action`` for one env."""


class MemoScorer:
    """Remember every score of a wrapped scorer; ask it only for (context, target) pairs not seen before.

    Args:
        scorer: Any :class:`~igpo_env.scoring.base.Scorer` (a caching one keeps its prefix reuse for the misses).
        key: ``"transcript"`` (exact) or ``"observations"`` (see :data:`MEMO_KEYS`).

    Example:
        >>> from igpo_env.scoring import OverlapScorer
        >>> memo = MemoScorer(OverlapScorer())
        >>> msgs = [{"role": "user", "content": "Karsel is a city"}]
        >>> [round(s.prob, 2) for s in memo.score([msgs, msgs], ["Karsel", "Karsel"])], memo.hits, memo.misses
        ([0.9, 0.9], 1, 1)

    Change logs:
        v0.1.0: added.
    """

    def __init__(self, scorer: Scorer, key: str = "transcript") -> None:
        if not callable(getattr(scorer, "score", None)):
            raise TypeError(f"`scorer` must have a score(contexts, targets) method, got {type(scorer).__name__}")
        self.scorer = scorer
        self.key = check_choice("key", key, MEMO_KEYS)
        self.tokenizer = getattr(scorer, "tokenizer", None)
        self._memo: dict[Hashable, TargetScore] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def _key(self, context: Context, target: str) -> Hashable:
        if isinstance(context, str):
            return (context, target)
        if self.key == "transcript":
            return (json.dumps(context, sort_keys=True), target)
        first = next((i for i, m in enumerate(context) if m["role"] == "user"), len(context))
        observations = frozenset(m["content"] for m in context[first + 1 :] if m["role"] != "assistant")
        return (json.dumps(context[: first + 1], sort_keys=True), observations, target)

    def score(
        self,
        contexts: Sequence[Context],
        targets: Sequence[str],
        cache_keys: Sequence[Hashable | None] | None = None,
    ) -> list[TargetScore]:
        """Score like the wrapped scorer, from memory where possible (``cache_keys`` reach a caching scorer)."""
        keys = [self._key(c, t) for c, t in zip(contexts, targets, strict=True)]
        todo: list[int] = []  # first row of each key not in memory
        pending: set[Hashable] = set()
        for i, k in enumerate(keys):
            if k not in self._memo and k not in pending:
                pending.add(k)
                todo.append(i)
        if todo:
            rows, tgts = [contexts[i] for i in todo], [targets[i] for i in todo]
            if cache_keys is not None and is_caching_scorer(self.scorer):
                scores = self.scorer.score(rows, tgts, cache_keys=[cache_keys[i] for i in todo])  # type: ignore[call-arg]
            else:
                scores = self.scorer.score(rows, tgts)
            for i, s in zip(todo, scores, strict=True):
                self._memo[keys[i]] = s
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        return [self._memo[k] for k in keys]

    def release(self, cache_keys: Sequence[Hashable]) -> None:
        """Forward to the wrapped scorer when it caches prefixes (the memo itself is kept)."""
        if is_caching_scorer(self.scorer):
            self.scorer.release(cache_keys)


class CandidateVecEnv(VecEnv):
    """SB3 ``VecEnv`` of candidate actions over a SearchQA text vector env (see the module docstring).

    Args:
        text_env: A SearchQA text vector env (NEXT_STEP autoreset, ``reset_mask`` support, ``get_attr("question")``):
            ``SearchQAVectorEnv``, optionally inside ``InformationGainVectorWrapper``.
        encoder: The :class:`~igpo_env.wrappers.candidates.CachedEncoder` shared by the sub-envs.
        num_question_phrases: Question phrase slots.
        num_observation_phrases: Observation phrase slots.
        observation_format: ``"box"`` or ``"dict"``.
        mask_repeated_searches: Mask searches already made in the episode.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.envs.vector import SearchQAVectorEnv
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.wrappers.candidates import CachedEncoder, HashingEncoder
        >>> text_env = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> venv = CandidateVecEnv(text_env, CachedEncoder(HashingEncoder(8)), 2, 2)
        >>> venv.seed(0)
        [0, 1]
        >>> obs = venv.reset()
        >>> obs.shape, venv.action_masks().shape
        ((2, 98), (2, 8))
        >>> obs, rewards, dones, infos = venv.step(np.array([0, 4]))  # a search; an answer (the episode restarts)
        >>> infos[0]["action_type"], dones.tolist(), "terminal_observation" in infos[1]
        ('search', [False, True], True)

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        text_env: gym.vector.VectorEnv,
        encoder: CachedEncoder,
        num_question_phrases: int = DEFAULT_QUESTION_PHRASES,
        num_observation_phrases: int = DEFAULT_OBSERVATION_PHRASES,
        observation_format: str = "box",
        mask_repeated_searches: bool = True,
    ) -> None:
        if not isinstance(text_env, gym.vector.VectorEnv):
            raise TypeError(
                f"`text_env` must be a gymnasium VectorEnv of SearchQA envs, got {type(text_env).__name__}"
            )
        protocol = text_env.unwrapped.get_attr("protocol")[0]
        self.spaces = [
            CandidateSpace(
                encoder,
                num_question_phrases,
                num_observation_phrases,
                observation_format,
                mask_repeated_searches,
                protocol,
            )
            for _ in range(text_env.num_envs)
        ]
        self.text_env = text_env
        super().__init__(text_env.num_envs, self.spaces[0].observation_space, self.spaces[0].action_space)
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ helpers
    def _stack(self, observations: list[Any]) -> Any:
        if isinstance(observations[0], dict):
            return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
        return np.stack(observations)

    def _info(self, infos: dict[str, Any], i: int) -> dict[str, Any]:
        out = {}
        for key in _INFO_KEYS:
            if key in infos and infos.get(f"_{key}", np.ones(self.num_envs, bool))[i]:
                value = infos[key]
                if isinstance(value, dict):  # nested records (information_gain): one value per field
                    out[key] = {k: v[i].item() for k, v in value.items() if not k.startswith("_")}
                else:
                    out[key] = value[i].item() if isinstance(value[i], np.generic) else value[i]
        return out

    def _questions(self) -> list[str]:
        return [q.question for q in self.text_env.unwrapped.get_attr("question")]

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> Any:
        """Reset every sub-env (seeds from :meth:`seed`, options from :meth:`set_options`)."""
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        options = {k: [o.get(k) for o in self._options] for k in self._options[0]} if self._options[0] else None
        _, infos = self.text_env.reset(seed=seeds, options=options)
        self._reset_seeds()
        self._reset_options()
        obs = [space.reset(q) for space, q in zip(self.spaces, self._questions(), strict=True)]
        self.reset_infos = [
            {**self._info(infos, i), "action_mask": s.action_mask()} for i, s in enumerate(self.spaces)
        ]
        return self._stack(obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every sub-env with its candidate's text; reset the finished ones at once."""
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        texts = [space.action_text(int(a)) for space, a in zip(self.spaces, self._actions, strict=True)]
        self._actions = None
        text_obs, rewards, terminated, truncated, infos = self.text_env.step(texts)
        dones = np.asarray(terminated) | np.asarray(truncated)
        obs = [space.observe(o) for space, o in zip(self.spaces, text_obs, strict=True)]
        out_infos = []
        for i, text in enumerate(texts):
            info = {**self._info(infos, i), "action_text": text, "action_mask": self.spaces[i].action_mask()}
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                info["terminal_observation"] = obs[i]
            out_infos.append(info)
        if dones.any():
            self.text_env.reset(options={"reset_mask": dones})
            questions = self._questions()
            for i in np.flatnonzero(dones):
                obs[i] = self.spaces[i].reset(questions[i])
        return self._stack(obs), np.asarray(rewards, dtype=np.float32), dones, out_infos

    def action_masks(self) -> np.ndarray:
        """Return the valid actions of every sub-env, shape ``(num_envs, K)``."""
        return np.stack([space.action_mask() for space in self.spaces])

    def close(self) -> None:
        """Close the text env."""
        self.text_env.close()

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """``action_masks`` (the bound method of each sub-env's mask), else the text sub-envs' attribute."""
        rows = self._indices(indices)
        if attr_name == "action_masks":
            return [self.spaces[i].action_mask for i in rows]
        values = self.text_env.unwrapped.get_attr(attr_name)
        return [values[i] for i in rows]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Not supported: the sub-envs share one vector env."""
        raise AttributeError(f"CandidateVecEnv cannot set {attr_name!r} on its sub-envs")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """``action_masks`` only (what sb3-contrib's ``MaskablePPO`` calls)."""
        if method_name != "action_masks":
            raise AttributeError(f"CandidateVecEnv has no per-env method {method_name!r} (only 'action_masks')")
        return [self.spaces[i].action_mask() for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No sub-env is a gymnasium-wrapped single env."""
        return [False] * len(self._indices(indices))


def random_candidate_policy(seed: int | None = None) -> CandidatePolicy:
    """Return a policy picking uniformly among the valid candidate actions (the random-candidate baseline).

    Example:
        >>> policy = random_candidate_policy(0)
        >>> policy(None, np.array([False, True, False, True])) in (1, 3)
        True
    """
    rng = np.random.default_rng(seed)
    return lambda observation, mask: int(rng.choice(np.flatnonzero(mask)))


def evaluate_candidates(
    policy: CandidatePolicy,
    env: CandidateActionWrapper,
    question_ids: Sequence[str],
    max_turns: int,
) -> dict[str, Any]:
    """Dev F1 of a candidate policy: one episode per question, EM/F1 overall and per data source.

    Args:
        policy: ``policy(observation, action_mask) -> action``; for an SB3 model
            ``lambda o, m: model.predict(o, action_masks=m, deterministic=True)[0]``.
        env: A :class:`CandidateActionWrapper` over the evaluation split (no IG wrapper needed).
        question_ids: The questions to play.
        max_turns: Turn limit; an episode cut there scores 0.

    Returns:
        ``{"em", "f1", "n", "answered", "mean_turns", "by_source": {source: {"em", "f1", "n"}}}``.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.wrappers.candidates import HashingEncoder
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = CandidateActionWrapper(env, HashingEncoder(8))
        >>> res = evaluate_candidates(random_candidate_policy(0), env, ["tq0", "tq1"], max_turns=3)
        >>> res["n"], 0.0 <= res["f1"] <= 1.0
        (2, True)
    """
    if not question_ids:
        raise ValueError("`question_ids` is empty: pass at least one question to evaluate")
    rows = []
    for qid in question_ids:
        obs, info = env.reset(options={"question_id": qid})
        source = env.unwrapped.question.data_source
        terminated = truncated = False
        turns = 0
        while not (terminated or truncated or turns >= max_turns):
            obs, _, terminated, truncated, info = env.step(int(policy(obs, env.action_masks())))
            turns += 1
        em, f1 = (info["em"], info["f1"]) if terminated else (0.0, 0.0)
        rows.append((source, em, f1, terminated, turns))
    by_source: dict[str, dict[str, float]] = {}
    for source, em, f1, *_ in rows:
        agg = by_source.setdefault(source, {"em": 0.0, "f1": 0.0, "n": 0})
        agg["em"], agg["f1"], agg["n"] = agg["em"] + em, agg["f1"] + f1, agg["n"] + 1
    for agg in by_source.values():
        agg["em"] /= agg["n"]
        agg["f1"] /= agg["n"]
    n = len(rows)
    return {
        "em": sum(r[1] for r in rows) / n,
        "f1": sum(r[2] for r in rows) / n,
        "n": n,
        "answered": sum(r[3] for r in rows) / n,
        "mean_turns": sum(r[4] for r in rows) / n,
        "by_source": dict(sorted(by_source.items())),
    }


class CandidateExtractor(BaseFeaturesExtractor):
    """Features of a ``Dict`` candidate observation, with weights shared across phrase slots.

    Each phrase slot gets ``h_i = ReLU(W [tanh(P e_i * Q q), f_i, t])`` from its embedding ``e_i``, the question
    embedding ``q``, its features ``f_i`` and the turn features ``t``; a global ``g = ReLU(G [q, o, t])`` adds the
    question and the last observation ``o``. The features are ``[h_1 .. h_M, g]``; the policy and value heads read
    them (slot ``i``'s action logits see ``h_i`` in place ``i``).

    Args:
        observation_space: The ``Dict`` space of :class:`~igpo_env.wrappers.discrete.CandidateSpace`.
        hidden: Width of ``h_i`` and ``g``.
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int = DEFAULT_EXTRACTOR_HIDDEN) -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or "phrases" not in observation_space.spaces:
            raise TypeError("CandidateExtractor needs the Dict observations of observation_format='dict'")
        m, d = observation_space["phrases"].shape
        f = observation_space["phrase_features"].shape[1]
        t = observation_space["turn"].shape[0]
        super().__init__(observation_space, features_dim=(m + 1) * hidden)
        self.num_phrases = m
        self.phrase_proj = nn.Linear(d, hidden)
        self.question_proj = nn.Linear(d, hidden)
        self.slot = nn.Sequential(nn.Linear(hidden + f + t, hidden), nn.ReLU())
        self.glob = nn.Sequential(nn.Linear(2 * d + t, hidden), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Map a batch of observations to features ``(batch, (M + 1) * hidden)``."""
        q, turn = observations["question"], observations["turn"]
        inter = torch.tanh(self.phrase_proj(observations["phrases"]) * self.question_proj(q).unsqueeze(1))
        per_slot = torch.cat(
            [inter, observations["phrase_features"], turn.unsqueeze(1).expand(-1, self.num_phrases, -1)], dim=-1
        )
        glob = self.glob(torch.cat([q, observations["observation"], turn], dim=-1))
        return torch.cat([self.slot(per_slot).flatten(1), glob], dim=-1)


class DevF1Callback(BaseCallback):
    """Evaluate dev F1 (:func:`evaluate_candidates`, deterministic policy) every ``eval_freq`` steps and at the end.

    Each point (``timesteps``, ``f1``, ``em``, ``answered``, ``mean_turns``, ``by_source``: F1 per data source) is
    appended to :attr:`curve` and logged as ``eval/dev_f1`` / ``eval/dev_em`` (TensorBoard).

    Args:
        env: The evaluation :class:`CandidateActionWrapper`.
        question_ids: Dev questions.
        eval_freq: Env steps between evaluations (0: only before and after training).
        max_turns: Turn limit of an evaluation episode.
    """

    def __init__(self, env: CandidateActionWrapper, question_ids: Sequence[str], eval_freq: int, max_turns: int):
        super().__init__()
        self.env, self.question_ids, self.eval_freq, self.max_turns = env, list(question_ids), eval_freq, max_turns
        self.curve: list[dict[str, float]] = []
        self._next = 0

    def evaluate(self) -> dict[str, float]:
        """Evaluate the current policy now; record and log the point."""
        model = self.model
        masked = "action_masks" in model.predict.__code__.co_varnames

        def policy(obs: Any, mask: np.ndarray) -> int:
            kwargs = {"action_masks": mask} if masked else {}
            return int(model.predict(obs, deterministic=True, **kwargs)[0])

        res = evaluate_candidates(policy, self.env, self.question_ids, self.max_turns)
        point = {"timesteps": int(self.num_timesteps), **{k: res[k] for k in ("f1", "em", "answered", "mean_turns")}}
        point["by_source"] = {source: agg["f1"] for source, agg in res["by_source"].items()}
        self.curve.append(point)
        self.logger.record("eval/dev_f1", point["f1"])
        self.logger.record("eval/dev_em", point["em"])
        logger.info("step %d: dev F1 %.3f", point["timesteps"], point["f1"])
        return point

    def _on_training_start(self) -> None:
        self.evaluate()
        self._next = self.num_timesteps + self.eval_freq if self.eval_freq else None

    def _on_step(self) -> bool:
        if self._next is not None and self.num_timesteps >= self._next:
            self.evaluate()
            self._next += self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if not self.curve or self.curve[-1]["timesteps"] != self.num_timesteps:
            self.evaluate()
