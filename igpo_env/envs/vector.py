"""SearchQAVectorEnv: N SearchQA-v0 episodes stepped together with one batched retriever call per step."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from igpo_env._validation import check_int
from igpo_env.envs.search_qa import PendingStep, SearchQAEnv
from igpo_env.retrieval.base import Retriever
from igpo_env.types import Doc

__all__ = ["SearchQAVectorEnv"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_EPISODE_STEPS = 10
"""Turn limit when none is given (same as the registered ``max_episode_steps`` of SearchQA-v0)."""


class SearchQAVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~igpo_env.envs.search_qa.SearchQAEnv` sharing one dataset and one retriever.

    Each ``step`` parses every sub-env's action, then sends all search queries of all sub-envs to the retriever in a
    single ``search(queries, top_k)`` call, then builds each observation. Sub-env ``i`` behaves exactly like a single
    ``gym.make("SearchQA-v0", ...)`` env seeded with ``seed + i`` and given the same actions (tested).

    Truncation: a sub-env is truncated when its episode reaches ``max_episode_steps`` turns (as ``TimeLimit`` does;
    ``gym.make_vec`` passes the registered 10). ``max_turns``, when given, caps it further.

    Autoreset (``metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP``, the Gymnasium 1.x default): the step on
    which sub-env ``i`` terminates or truncates returns its final observation, reward and info; on the *next* call to
    ``step`` its action is ignored and it is reset instead (new question drawn from its own RNG stream), returning the
    reset observation, reward 0, ``terminated=truncated=False`` and the reset info.

    Observations are a tuple of ``num_envs`` strings; actions any sequence of ``num_envs`` strings. ``infos`` is a
    dict of arrays with ``_key`` boolean masks, as in Gymnasium vector envs: ``messages`` and ``retrieved_doc_ids``
    are object arrays, ``em``/``f1``/``cover_em``/``outcome`` are set (masked) only for sub-envs that answered.

    Args:
        num_envs: Number of parallel episodes.
        max_episode_steps: Turn limit per episode (``TimeLimit`` equivalent).
        **kwargs: Every :class:`SearchQAEnv` argument (``dataset``, ``split``, ``retriever``, ``top_k``,
            ``max_turns``, ``reward``, ...). Dataset and retriever are resolved once and shared.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> envs = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> obs, infos = envs.reset(seed=0)
        >>> len(obs), infos["turn"]
        (2, array([0, 0]))
        >>> obs, rewards, terminated, truncated, infos = envs.step(["<search>Ostrand</search>", "<answer>x</answer>"])
        >>> rewards.tolist(), terminated.tolist(), infos["_em"].tolist()
        ([0.0, 0.0], [False, True], [False, True])

    Change logs:
        v0.1.0: initial version.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int, max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS, **kwargs: Any
    ) -> None:
        check_int("num_envs", num_envs, minimum=1)
        check_int("max_episode_steps", max_episode_steps, minimum=1, optional=True)
        if kwargs.get("render_mode") is not None:
            raise ValueError(f"`render_mode` is not supported by the vector env, got {kwargs['render_mode']!r}")
        max_turns = kwargs.pop("max_turns", None)
        limits = [x for x in (max_episode_steps, max_turns) if x is not None]
        self.max_episode_steps = min(limits) if limits else None

        # the first env validates every argument, then loads the data; the others share its questions and retriever
        first = SearchQAEnv(max_turns=max_turns, **kwargs)
        kwargs.update(dataset=list(first.examples), retriever=first.retriever)
        self.envs: list[SearchQAEnv] = [first] + [
            SearchQAEnv(max_turns=max_turns, **kwargs) for _ in range(num_envs - 1)
        ]
        retriever = first.retriever
        self._retriever = retriever
        self.top_k = first.top_k
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._started = False

    # ------------------------------------------------------------------ hidden labels
    @property
    def retriever(self) -> Retriever:
        """The shared retriever."""
        return self._retriever

    @property
    def ground_truths(self) -> tuple[tuple[str, ...], ...]:
        """Gold aliases of each sub-env's current question (hidden from agents)."""
        return tuple(env.ground_truth for env in self.envs)

    @property
    def tool_schema(self) -> dict[str, Any]:
        """OpenAI function schema of the ``web_search`` tool."""
        return self.envs[0].tool_schema

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Return attribute ``name`` of every sub-env (like ``SyncVectorEnv.get_attr``)."""
        return tuple(getattr(env, name) for env in self.envs)

    # ------------------------------------------------------------------ API
    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"`seed` must be an int or a list of {self.num_envs} seeds, got {len(seeds)} seeds")
        return seeds

    def _options_for(self, options: dict[str, Any], i: int) -> dict[str, Any]:
        """Per-env options: a list/array value of length ``num_envs`` gives each env its own value."""
        out = {}
        for key, value in options.items():
            if key == "reset_mask":
                continue
            if isinstance(value, (list, tuple, np.ndarray)):
                if len(value) != self.num_envs:
                    n = self.num_envs
                    raise ValueError(f"options[{key!r}] must be a scalar or hold {n} values, got {len(value)}")
                value = value[i]
            out[key] = value
        return out

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset sub-envs (all, or those in ``options["reset_mask"]``).

        Args:
            seed: An int (sub-env ``i`` gets ``seed + i``), a list of per-env seeds, or ``None``.
            options: ``{"index": i}`` / ``{"question_id": id}`` for every env, or a list of ``num_envs`` values for
                one per env (e.g. ``{"index": [0, 0, 1, 1]}`` for groups on the same question);
                ``{"reset_mask": bool array}`` resets only the marked envs (Gymnasium 1.x convention).

        Returns:
            The observations (tuple of str) and infos (dict of arrays with ``_key`` masks).
        """
        options = dict(options or {})
        mask = np.ones(self.num_envs, dtype=np.bool_)
        if "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=np.bool_)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}")
            if not self._started and not mask.all():
                raise ValueError("the first reset must reset every env: drop options['reset_mask']")
        if seed is not None:
            super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        seeds = self._seeds(seed)
        obs: list[str] = []
        env_infos: list[dict[str, Any]] = [{}] * self.num_envs
        for i, env in enumerate(self.envs):
            if mask[i]:
                o, env_infos[i] = env.reset(seed=seeds[i], options=self._options_for(options, i))
                self._elapsed[i] = 0
                self._autoreset[i] = False
            else:
                o = env.messages[-1]["content"] if env.messages else ""
            obs.append(o)
        self._started = True
        return tuple(obs), self._batch_infos(env_infos)

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env; sub-envs that finished on the previous step are reset instead (NEXT_STEP autoreset).

        Raises:
            gymnasium.error.ResetNeeded: if ``reset`` was never called.
            ValueError: if ``actions`` does not hold ``num_envs`` items.
        """
        if not self._started:
            from gymnasium.error import ResetNeeded

            raise ResetNeeded("call reset() before step()")
        if isinstance(actions, str) or len(actions) != self.num_envs:
            raise ValueError(f"`actions` must be a sequence of {self.num_envs} strings, got {actions!r:.80}")
        n = self.num_envs
        obs: list[str] = [""] * n
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        env_infos: list[dict[str, Any]] = [{}] * n
        pending: list[PendingStep | None] = [None] * n
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                obs[i], env_infos[i] = env.reset()
                self._elapsed[i] = 0
            else:
                pending[i] = env.begin_step(actions[i])
        results = self._batched_search([p.queries for p in pending if p is not None])
        for i, env in enumerate(self.envs):
            p = pending[i]
            if p is None:
                continue
            obs[i], rewards[i], terminated[i], truncated[i], env_infos[i] = env.finish_step(p, next(results))
            self._elapsed[i] += 1
            if self.max_episode_steps is not None and self._elapsed[i] >= self.max_episode_steps:
                truncated[i] = True
        self._autoreset = terminated | truncated
        return tuple(obs), rewards, terminated, truncated, self._batch_infos(env_infos)

    def _batched_search(self, query_lists: list[tuple[str, ...]]) -> Iterator[list[list[Doc]]]:
        """One retriever call for all sub-envs' queries (duplicates sent once); yields each sub-env's results."""
        unique = list(dict.fromkeys(q for qs in query_lists for q in qs))
        found = self._retriever.search(unique, self.top_k) if unique else []
        if len(found) != len(unique):
            raise ValueError(f"retriever returned {len(found)} result lists for {len(unique)} queries")
        by_query = dict(zip(unique, found, strict=True))
        for qs in query_lists:
            yield [list(by_query[q]) for q in qs]

    def _batch_infos(self, env_infos: list[dict[str, Any]]) -> dict[str, Any]:
        """Build Gymnasium's dict-of-arrays infos with ``_key`` masks (dtypes as in ``VectorEnv._add_info``)."""
        n = self.num_envs
        keys = list(dict.fromkeys(k for info in env_infos for k in info))
        out: dict[str, Any] = {}
        for key in keys:
            mask = np.fromiter((key in info for info in env_infos), dtype=np.bool_, count=n)
            first = env_infos[int(mask.argmax())][key]
            if type(first) in (int, float, bool) or isinstance(first, np.number):
                array = np.zeros(n, dtype=type(first))
            else:
                array = np.full(n, None, dtype=object)
            for i in np.flatnonzero(mask):
                array[i] = env_infos[i][key]
            out[key], out[f"_{key}"] = array, mask
        return out
