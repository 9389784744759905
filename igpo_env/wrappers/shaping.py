"""Potential-based turn-reward shaping for SearchQA-style envs.

IGPO's information gain with ``mode="prob_diff"`` is potential-based shaping with ``Phi = p(gold | transcript)`` and
``gamma = 1`` (the rewards telescope to ``p_T - p_0``). :class:`PotentialShapingWrapper` exposes the general form with
any potential ``potential_fn(messages, ground_truth) -> float``; :class:`~igpo_env.wrappers.InformationGainWrapper`
is the IGPO special case with a scorer model as the potential.

Rewards (both wrappers): on a non-final turn (a search or an invalid action) ``r_t = r_env + coef * (gamma * Phi_t -
Phi_{t-1})``; the env's own reward is kept (0 for a search, the format penalty for an invalid action, as IGPO). On
the answering turn: the outcome reward (``final="outcome"``, IGPO), or outcome + shaping term. A truncated turn
(turn limit, no answer) is non-final: it gets its shaping term and no outcome.

Classes: :class:`PotentialShapingWrapper`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym

from igpo_env.types import Message

__all__ = ["PotentialShapingWrapper", "TurnShapingWrapper", "check_number", "messages_of"]


def check_number(name: str, value: Any, minimum: float | None = None) -> float:
    """Validate a finite real number (not bool), optionally ``>= minimum``; return it as float.

    Example:
        >>> check_number("ig_coef", -1, minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: `ig_coef` must be a finite number >= 0, got -1
    """
    bound = f" >= {minimum:g}" if minimum is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number{bound}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be a finite number{bound}, got {value!r}")
    return float(value)


def messages_of(env: gym.Env, info: dict[str, Any]) -> list[Message]:
    """Return the transcript: ``info["messages"]`` when present, else ``env.unwrapped.messages``.

    Example:
        >>> messages_of(None, {"messages": [{"role": "user", "content": "Q"}]})
        [{'role': 'user', 'content': 'Q'}]
    """
    if "messages" in info:
        return list(info["messages"])
    messages = getattr(env.unwrapped, "messages", None)
    if messages is None:
        raise AttributeError("the env provides no transcript: expected info['messages'] or env.unwrapped.messages")
    return list(messages)


class TurnShapingWrapper(gym.Wrapper[str, str, str, str]):
    """Base of the turn-shaping wrappers: reward bookkeeping around a potential computed after every turn.

    Subclasses implement :meth:`compute_potential` (returning the potential and the info record of a turn) and may
    override :meth:`end_episode` (release per-episode state). The potential of the reset transcript is computed at
    ``reset``; each ``step`` computes the new one (skipped on the answering turn unless ``shape_final``).

    Args:
        env: A SearchQA-v0-like env (text actions; ``info["messages"]``; ``env.unwrapped.ground_truth``).
        coef: Weight of the shaping term.
        gamma: Discount of the next potential in ``gamma * Phi_t - Phi_{t-1}``.
        shape_final: Add the shaping term to the outcome on the answering turn.
        info_key: Key of the per-turn record in ``info``.
    """

    def __init__(self, env: gym.Env, coef: float, gamma: float, shape_final: bool, info_key: str) -> None:
        gym.Wrapper.__init__(self, env)
        self.coef = coef
        self.gamma = gamma
        self.shape_final = shape_final
        self.info_key = info_key
        self.potential: float | None = None
        """The potential after the latest turn (``None`` before reset)."""
        self._record: dict[str, Any] = {}

    # ------------------------------------------------------------------ hooks
    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Return ``(Phi, record)`` for a transcript; ``record`` goes into ``info[info_key]`` (plus ``reward``)."""
        raise NotImplementedError

    def begin_episode(self) -> None:
        """Start per-episode state (called at reset, before the first potential)."""

    def end_episode(self) -> None:
        """Release per-episode state (called when an episode terminates or truncates, and at reset)."""

    def unscored_record(self) -> dict[str, Any]:
        """Return the record of an answering turn whose potential is not computed (``shape_final=False``)."""
        return {}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Reset the env and compute the potential of the bare prompt (``reward`` 0 in the record)."""
        self.end_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        self.potential = None
        self.begin_episode()
        phi, record = self.compute_potential(messages_of(self.env, info), self.env.unwrapped.ground_truth)
        self.potential = phi
        info = dict(info)
        info[self.info_key] = {**record, "reward": 0.0}
        return obs, info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and shape the reward (see the module docstring)."""
        if self.potential is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        if terminated and not self.shape_final:
            shaping, record = 0.0, self.unscored_record()
            reward = float(env_reward)
        else:
            phi, record = self.compute_potential(messages_of(self.env, info), self.env.unwrapped.ground_truth)
            shaping = self.coef * (self.gamma * phi - self.potential)
            self.potential = phi
            reward = float(env_reward) + shaping
        info[self.info_key] = {**record, "reward": shaping}
        if terminated or truncated:
            self.end_episode()
        return obs, reward, terminated, truncated, info


class PotentialShapingWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """Shape SearchQA turn rewards with any potential of the transcript: ``r_t += coef * (gamma Phi_t - Phi_{t-1})``.

    ``potential_fn(messages, ground_truth) -> float`` is called on the reset transcript and after every turn (not on
    the answering turn unless ``final="outcome+shaping"``). The env reward is kept on every turn; see the module
    docstring. ``info["shaping"] = {"phi_prev", "phi", "reward"}`` (``reward`` is the added term).

    Args:
        env: A SearchQA-v0-like env.
        potential_fn: ``(messages, ground_truth) -> float``.
        coef: Weight of the shaping term (>= 0).
        gamma: Discount in ``[0, 1]`` (1 makes the terms telescope to ``Phi_T - Phi_0``).
        final: ``"outcome"`` (answering turn: outcome only) or ``"outcome+shaping"``.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> def found(messages, gold):  # 1 once a gold alias appears in the transcript
        ...     return float(any(g in m["content"] for m in messages for g in gold))
        >>> env = PotentialShapingWrapper(env, found)
        >>> _ = env.reset(options={"question_id": "tq0"})
        >>> _, r, *_ , info = env.step("<search>capital of Ostrand</search>")
        >>> r, info["shaping"]
        (1.0, {'phi_prev': 0.0, 'phi': 1.0, 'reward': 1.0})

    Change logs:
        v0.1.0: added.
    """

    FINAL_MODES = ("outcome", "outcome+shaping")

    def __init__(
        self,
        env: gym.Env,
        potential_fn: Callable[[list[Message], Sequence[str]], float],
        coef: float = 1.0,
        gamma: float = 1.0,
        final: str = "outcome",
    ) -> None:
        if not callable(potential_fn):
            raise TypeError(f"`potential_fn` must be callable (messages, ground_truth) -> float, got {potential_fn!r}")
        coef = check_number("coef", coef, minimum=0.0)
        gamma = check_number("gamma", gamma, minimum=0.0)
        if gamma > 1.0:
            raise ValueError(f"`gamma` must be in [0, 1], got {gamma!r}")
        if final not in self.FINAL_MODES:
            raise ValueError(f"`final` must be one of {self.FINAL_MODES}, got {final!r}")
        gym.utils.RecordConstructorArgs.__init__(
            self, potential_fn=potential_fn, coef=coef, gamma=gamma, final=final, _disable_deepcopy=True
        )
        TurnShapingWrapper.__init__(self, env, coef, gamma, final == "outcome+shaping", "shaping")
        self.potential_fn = potential_fn
        self.final = final

    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Call ``potential_fn`` and build the ``{"phi_prev", "phi"}`` record."""
        phi = float(self.potential_fn(messages, ground_truth))
        if not math.isfinite(phi):
            raise ValueError(f"`potential_fn` returned a non-finite potential {phi!r}")
        prev = phi if self.potential is None else self.potential
        return phi, {"phi_prev": prev, "phi": phi}

    def unscored_record(self) -> dict[str, Any]:
        """Answering turn without shaping: ``phi`` is NaN (not computed)."""
        return {"phi_prev": self.potential, "phi": math.nan}
