"""InformationGainVectorWrapper: IGPO turn rewards for a vector env, one batched scorer call per step.

The twin of :class:`~igpo_env.wrappers.InformationGainWrapper`: same arguments, validation and reward rules (tested
to match it on the same seeds and actions). Works with :class:`~igpo_env.envs.vector.SearchQAVectorEnv`
(``gym.make_vec("SearchQA-v0", ...)``) and any vector env in ``NEXT_STEP`` autoreset mode whose infos carry
``messages`` and whose sub-envs expose ``ground_truth``.

Autoreset: on the step after sub-env ``i`` finished, the env resets it and returns its reset observation with reward
0; the wrapper then scores ``p_0`` of the new episode (in the same batched call) and reports reward 0 with
``p_prev == p == p_0``.

Classes: :class:`InformationGainVectorWrapper`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from igpo_env.scoring.base import Scorer, is_caching_scorer
from igpo_env.scoring.gold import score_gold
from igpo_env.scoring.math import potential
from igpo_env.scoring.templates import IGTemplate
from igpo_env.types import Message
from igpo_env.wrappers.information_gain import IGArgs, resolve_scorer

__all__ = ["InformationGainVectorWrapper"]

_RECORD_KEYS = ("p_prev", "p", "mean_logprob", "reward")


class InformationGainVectorWrapper(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Add IGPO information-gain turn rewards to a SearchQA vector env, one batched scorer call per step.

    ``infos["information_gain"]`` holds arrays ``p_prev``, ``p``, ``mean_logprob``, ``reward`` (with ``_key``
    masks, all True) for every sub-env; rewards follow :mod:`igpo_env.wrappers.information_gain`.

    Args:
        env: A vector env (``SearchQAVectorEnv``), NEXT_STEP autoreset.
        scorer: Any :class:`~igpo_env.scoring.base.Scorer`, a model directory / packaged name, or ``None`` (the
            packaged default model); a caching scorer gets one key per episode.
        mode: ``"prob_diff"`` (IGPO) or ``"log_prob_diff"``.
        alias: ``"first"`` (IGPO), ``"max"`` or ``"mean"``.
        final: ``"outcome"`` (IGPO) or ``"outcome+ig"``.
        ig_coef: Weight of the IG term (>= 0).
        template: ``None`` (the scorer's template) or an :class:`~igpo_env.scoring.templates.IGTemplate`.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.envs.vector import SearchQAVectorEnv
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring import OverlapScorer
        >>> envs = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> envs = InformationGainVectorWrapper(envs, OverlapScorer())
        >>> _ = envs.reset(options={"question_id": "tq0"})  # gold: Karsel
        >>> _, rewards, *_, infos = envs.step(["<search>capital of Ostrand</search>", "<search>Velmora</search>"])
        >>> rewards.round(2).tolist(), infos["information_gain"]["p"].round(2).tolist()
        ([0.85, 0.0], [0.9, 0.05])

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        env: VectorEnv,
        scorer: Scorer | str | None = None,
        mode: str = "prob_diff",
        alias: str = "first",
        final: str = "outcome",
        ig_coef: float = 1.0,
        template: IGTemplate | None = None,
    ) -> None:
        if not isinstance(env, VectorEnv):
            raise TypeError(f"`env` must be a gymnasium VectorEnv, got {type(env).__name__}")
        autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if autoreset != AutoresetMode.NEXT_STEP:
            raise ValueError(f"`env` must use NEXT_STEP autoreset (the Gymnasium default), got {autoreset}")
        scorer = resolve_scorer(scorer)
        ig_coef = IGArgs.record(self, scorer, mode, alias, final, ig_coef, template)
        VectorWrapper.__init__(self, env)
        IGArgs.set(self, scorer, mode, alias, final, ig_coef, template)
        n = self.num_envs
        self._keys: list[Hashable | None] = [None] * n
        self._p = np.full(n, math.nan)
        self._phi = np.full(n, math.nan)
        self._done = np.zeros(n, dtype=np.bool_)
        self._started = False

    @property
    def p(self) -> np.ndarray:
        """Probability of the gold answer after each sub-env's latest scored turn."""
        return self._p.copy()

    # ------------------------------------------------------------------ helpers
    def _ground_truths(self) -> Sequence[Sequence[str]]:
        base = self.env.unwrapped
        if hasattr(base, "ground_truths"):
            return base.ground_truths
        return self.env.get_attr("ground_truth")

    def _messages(self, infos: dict[str, Any], i: int) -> list[Message]:
        if "messages" not in infos or not infos.get("_messages", np.ones(self.num_envs, bool))[i]:
            raise KeyError(f"the vector env gave no infos['messages'] for sub-env {i}; SearchQAVectorEnv provides it")
        return list(infos["messages"][i])

    def _release(self, rows: Sequence[int]) -> None:
        keys = [self._keys[i] for i in rows if self._keys[i] is not None]
        if keys and is_caching_scorer(self.scorer):
            self.scorer.release(keys)
        for i in rows:
            self._keys[i] = None

    def _new_episode(self, i: int) -> None:
        self._keys[i] = (self._uid, i, next(self._episodes))

    def _score(self, rows: Sequence[int], infos: dict[str, Any]) -> list[float]:
        if not rows:
            return []
        gts = self._ground_truths()
        keys = [self._keys[i] for i in rows]
        contexts = [self._messages(infos, i) for i in rows]
        return score_gold(self.scorer, contexts, [gts[i] for i in rows], self.alias, self.mode, self.template, keys)

    def _attach(self, infos: dict[str, Any], records: dict[str, np.ndarray]) -> dict[str, Any]:
        infos = dict(infos)
        ones = np.ones(self.num_envs, dtype=np.bool_)
        infos["information_gain"] = {**records, **{f"_{k}": ones for k in records}}
        infos["_information_gain"] = ones
        return infos

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset (all sub-envs, or those in ``options["reset_mask"]``) and score ``p_0`` of each new episode."""
        obs, infos = self.env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, dtype=np.bool_)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=np.bool_)
        rows = [i for i in range(self.num_envs) if mask[i]]
        self._release(rows)
        for i in rows:
            self._new_episode(i)
        logps = self._score(rows, infos)
        for i, logp in zip(rows, logps, strict=True):
            self._p[i] = math.exp(logp)
            self._phi[i] = potential(logp, self.mode)
            self._done[i] = False
        self._started = True
        records = {
            "p_prev": self._p.copy(),
            "p": self._p.copy(),
            "mean_logprob": np.log(self._p),
            "reward": np.zeros(self.num_envs),
        }
        return obs, self._attach(infos, records)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all sub-envs and add each one's IG term (see the class docstring for autoreset)."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, env_rewards, terminated, truncated, infos = self.env.step(actions)
        n = self.num_envs
        rewards = np.asarray(env_rewards, dtype=np.float64).copy()
        records = {k: np.full(n, math.nan) for k in _RECORD_KEYS}
        records["reward"] = np.zeros(n)
        was_reset = self._done.copy()
        for i in np.flatnonzero(was_reset):
            self._new_episode(int(i))
        scored = [i for i in range(n) if was_reset[i] or not (terminated[i] and self.final == "outcome")]
        logps = self._score(scored, infos)
        for i, logp in zip(scored, logps, strict=True):
            p, phi = math.exp(logp), potential(logp, self.mode)
            if was_reset[i]:  # the env reset this sub-env: p_0 of its new episode, reward 0
                records["p_prev"][i] = p
                rewards[i] = 0.0
            else:
                records["p_prev"][i] = self._p[i]
                records["reward"][i] = self.ig_coef * (phi - self._phi[i])
                rewards[i] += records["reward"][i]
            records["p"][i], records["mean_logprob"][i] = p, logp
            self._p[i], self._phi[i] = p, phi
        for i in range(n):
            if i not in scored:  # answering turn, final="outcome": outcome only, not scored
                records["p_prev"][i] = self._p[i]
        done = (np.asarray(terminated) | np.asarray(truncated)) & ~was_reset
        self._release([int(i) for i in np.flatnonzero(done)])
        self._done = done
        return obs, rewards, terminated, truncated, self._attach(infos, records)

    def close(self, **kwargs: Any) -> None:
        """Release every open episode cache, then close the env."""
        self._release(list(range(self.num_envs)))
        super().close(**kwargs)
