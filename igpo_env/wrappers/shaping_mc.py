"""Monte-Carlo value shaping: the value of a turn estimated by k policy continuations from that point.

After turn t, :class:`MCValueWrapper` replays the episode's actions so far on a fresh copy of the env (same question
via ``options={"question_id": ...}``; SearchQA-v0 and its retrievers are deterministic, and the replayed transcript is
checked against the live one), then lets ``policy`` play on to the end k times and averages the outcomes:
``V_t = mean_i outcome_i`` (an unanswered, truncated continuation counts 0). ``V`` is the potential of
potential-based shaping, ``term_t = coef * (gamma * V_t - V_{t-1})``, with ``V_0`` estimated at reset.

Each turn costs k continuations (k x the remaining turns of policy calls and retrievals): a reference scheme for
credit-assignment studies, not for training throughput. Per-env only: there is no vector twin (wrap each sub-env).

Classes: :class:`MCValueWrapper` (``"mc_value"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from igpo_env._validation import check_int
from igpo_env.types import Message
from igpo_env.wrappers.shaping import POTENTIAL_FINAL_MODES, TurnShapingWrapper, check_potential_args

__all__ = ["MCValueWrapper", "DEFAULT_MC_ROLLOUTS"]

DEFAULT_MC_ROLLOUTS = 4
"""Continuations per value estimate (``k``)."""

Policy = Callable[[list[Message]], str]
"""``messages -> action text``: the transcript so far in, the next assistant turn out."""


class MCValueWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """Shape turn rewards with the Monte-Carlo value of the state after each turn (see the module docstring).

    ``info["shaping"]["parts"] = {"value_prev", "value", "returns"}`` (``returns``: the k continuations' outcomes;
    ``value`` NaN on an answering turn that is not shaped).

    Args:
        env: A SearchQA-v0 env (``env.unwrapped.question``, ``options={"question_id": ...}`` at reset).
        policy: ``messages -> action text`` (e.g. an LLM sampling one turn, or a scripted agent).
        k: Continuations per estimate (>= 1).
        env_factory: ``() -> env`` building a fresh copy to replay on; ``None``: ``gym.make(env.unwrapped.spec)``
            (needs an env made by ``gym.make``).
        coef: Weight of the shaping term (>= 0).
        gamma: Discount in ``[0, 1]``.
        final: ``"outcome"`` (answering turn: outcome only) or ``"outcome+shaping"``.
        max_turns: Turn cap of a continuation (counted from the episode start) when the replay env has no time
            limit of its own; ``None``: ``igpo_env.MAX_TURNS``.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> def policy(messages):  # answers Karsel once it has seen it, else searches
        ...     seen = any("Karsel" in m["content"] for m in messages if m["role"] != "assistant")
        ...     return "<answer>Karsel</answer>" if seen else "<search>Ostrand</search>"
        >>> env = MCValueWrapper(env, policy, k=2)
        >>> _, info = env.reset(options={"question_id": "tq0"})
        >>> info["shaping"]["parts"]
        {'value_prev': 1.0, 'value': 1.0, 'returns': [1.0, 1.0]}

    Change logs:
        v0.2.0: added.
    """

    FINAL_MODES = POTENTIAL_FINAL_MODES

    def __init__(
        self,
        env: gym.Env,
        policy: Policy,
        k: int = DEFAULT_MC_ROLLOUTS,
        env_factory: Callable[[], gym.Env] | None = None,
        coef: float = 1.0,
        gamma: float = 1.0,
        final: str = "outcome",
        max_turns: int | None = None,
    ) -> None:
        if not callable(policy):
            raise TypeError(f"`policy` must be callable messages -> action text, got {policy!r}")
        k = check_int("k", k, minimum=1)
        if env_factory is not None and not callable(env_factory):
            raise TypeError(f"`env_factory` must be callable () -> env or None, got {env_factory!r}")
        coef, gamma = check_potential_args(coef, gamma, final)
        max_turns = check_int("max_turns", max_turns, minimum=1, optional=True)
        if env_factory is None and env.unwrapped.spec is None:
            raise ValueError(
                "`mc_value` replays episodes on a fresh env, and this env has no spec: make it with gym.make(...) "
                "or pass `env_factory=lambda: <a new env like it>`"
            )
        gym.utils.RecordConstructorArgs.__init__(
            self,
            policy=policy,
            k=k,
            env_factory=env_factory,
            coef=coef,
            gamma=gamma,
            final=final,
            max_turns=max_turns,
            _disable_deepcopy=True,
        )
        TurnShapingWrapper.__init__(self, env, coef, gamma, final == "outcome+shaping", scheme="mc_value")
        if max_turns is None:
            from igpo_env import MAX_TURNS

            max_turns = MAX_TURNS
        self.policy, self.k, self.final, self.max_turns = policy, k, final, max_turns
        self.env_factory = env_factory
        self._replay_env: gym.Env | None = None
        self._question_id: str | None = None

    @property
    def replay_env(self) -> gym.Env:
        """The fresh env copy continuations run on (built on first use)."""
        if self._replay_env is None:
            factory = self.env_factory or (lambda: gym.make(self.env.unwrapped.spec))
            self._replay_env = factory()
        return self._replay_env

    def begin_episode(self) -> None:
        """Remember the question to replay."""
        self._question_id = self.env.unwrapped.question.id

    def close(self) -> None:
        """Close the replay env too."""
        if self._replay_env is not None:
            self._replay_env.close()
        super().close()

    def continuation_returns(self, messages: Sequence[Message]) -> list[float]:
        """Replay the assistant turns of ``messages`` on the replay env and return the k continuations' outcomes.

        Raises:
            RuntimeError: if the replayed transcript differs from ``messages`` (a non-deterministic env or
                retriever, or an ``env_factory`` building a different env).
        """
        actions = [m["content"] for m in messages if m["role"] == "assistant"]
        returns = []
        for _ in range(self.k):
            renv = self.replay_env
            _, info = renv.reset(options={"question_id": self._question_id})
            terminated = truncated = False
            for action in actions:
                _, _, terminated, truncated, info = renv.step(action)
            if info["messages"] != list(messages):
                raise RuntimeError(
                    f"replaying {len(actions)} actions of question {self._question_id!r} gave another transcript: "
                    "the env or its retriever is not deterministic, or `env_factory` builds a different env"
                )
            if terminated or truncated:  # a final state: its value is known, no continuation needed
                return [float(info["outcome"]) if terminated else 0.0] * self.k
            while not (terminated or truncated) and info["turn"] < self.max_turns:
                _, _, terminated, truncated, info = renv.step(self.policy(info["messages"]))
            returns.append(float(info["outcome"]) if terminated else 0.0)
        return returns

    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Estimate ``V`` of the state after ``messages`` by k continuations."""
        returns = self.continuation_returns(messages)
        value = sum(returns) / len(returns)
        prev = value if self.potential is None else self.potential
        return value, {"value_prev": prev, "value": value, "returns": returns}

    def unscored_record(self) -> dict[str, Any]:
        """Answering turn without shaping: ``value`` is NaN (not estimated)."""
        return {"value_prev": self.potential, "value": math.nan, "returns": []}
