"""Turn-reward shaping for SearchQA-style envs: the shared base, its ``info`` layout, and potential-based shaping.

Every shaping scheme is a wrapper on :class:`TurnShapingWrapper`; each is selectable by name through
:func:`~igpo_env.wrappers.shaping_registry.make_shaping` (names and classes in
:data:`~igpo_env.wrappers.shaping_registry.SHAPING_SCHEMES`).

Rewards: a wrapper adds its per-turn term to the env's reward, ``r_t = r_env + term_t``. The env's own reward is
kept (0 for a search, the format penalty for an invalid action, the outcome on the answering turn), so a scheme
whose terms are all 0 leaves the env's rewards unchanged.

``info`` layout (one layout for every scheme, written at ``reset`` and on every ``step``)::

    info["shaping"] = {
        "scheme": str,    # registered name ("ig", "search_cost", ...; see make_shaping) or the wrapper's own
        "reward": float,  # the term this wrapper added to the env reward this turn (0.0 at reset)
        "parts": dict,    # the scheme's components of that term (below)
        "inner": dict,    # only when shaping wrappers are stacked: the inner wrapper's record, same layout
    }
    info["outcome"]       # the env's key: the outcome reward of the answering turn (``outcome`` may change the metric)

Parts per scheme (``scheme``: ``parts``):

- ``potential``: ``{"phi_prev", "phi"}`` (``phi`` NaN on an answering turn that is not shaped).
- ``ig`` / ``log_ig``: ``{"p_prev", "p", "mean_logprob"}``; :class:`~igpo_env.wrappers.InformationGainWrapper` also
  keeps its own ``info["information_gain"] = {**parts, "reward"}``.
- ``outcome``: ``{"metric", "outcome"}`` on the answering turn, ``{}`` otherwise.
- ``answer_in_context``: ``{"hit", "paid"}``: a gold alias is in this turn's retrieved text / the bonus was paid now.
- ``search_cost``: ``{"searches"}``: search turns so far.
- ``evidence_recall``: ``{"recall_prev", "recall", "gain", "redundancy", "per_doc"}``.
- ``mc_value``: ``{"value_prev", "value", "returns"}`` (``returns``: the k continuations' outcomes).

Potential-based shaping (the default hooks of the base): IGPO's information gain with ``mode="prob_diff"`` is
shaping with ``Phi = p(gold | transcript)`` and ``gamma = 1`` (the rewards telescope to ``p_T - p_0``);
:class:`PotentialShapingWrapper` takes any potential ``potential_fn(messages, ground_truth) -> float``. On a
non-final turn (a search or an invalid action) ``term_t = coef * (gamma * Phi_t - Phi_{t-1})``; on the answering
turn 0 (``final="outcome"``, IGPO) or the same term. A truncated turn (turn limit, no answer) is non-final: it gets
its term and no outcome.

Classes: :class:`TurnShapingWrapper`, :class:`PotentialShapingWrapper`. Function: :func:`messages_of`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym

from igpo_env._validation import check_choice, check_number
from igpo_env.types import Message

__all__ = [
    "PotentialShapingWrapper",
    "TurnShapingWrapper",
    "messages_of",
    "check_potential_args",
    "SHAPING_KEY",
    "POTENTIAL_FINAL_MODES",
]

SHAPING_KEY = "shaping"
"""The ``info`` key every shaping wrapper writes its ``{"scheme", "reward", "parts"}`` record under."""

POTENTIAL_FINAL_MODES = ("outcome", "outcome+shaping")
"""Reward of the answering turn under potential-based shaping: the outcome only, or the outcome plus the term."""


def check_potential_args(coef: Any, gamma: Any, final: Any) -> tuple[float, float]:
    """Validate the arguments of a potential-based scheme; return ``(coef, gamma)`` as floats.

    Example:
        >>> check_potential_args(1, 1.5, "outcome")
        Traceback (most recent call last):
        ...
        ValueError: `gamma` must be a number in [0, 1], got 1.5
    """
    coef = check_number("coef", coef, minimum=0.0)
    gamma = check_number("gamma", gamma, minimum=0.0, maximum=1.0)
    check_choice("final", final, POTENTIAL_FINAL_MODES)
    return coef, gamma


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
    """Base of the turn-shaping wrappers: adds a per-turn term to the env reward and records it in ``info``.

    ``reset`` calls :meth:`begin_episode`, then :meth:`reset_parts`; ``step`` calls :meth:`turn_reward` and adds the
    term it returns to the env reward; the record goes to ``info["shaping"]`` (layout in the module docstring) and,
    when ``info_key`` is given, also to ``info[info_key]`` as ``{**parts, "reward"}``. :meth:`end_episode` runs when
    an episode terminates or truncates, and at reset.

    The default :meth:`reset_parts` / :meth:`turn_reward` implement potential-based shaping: subclasses give
    :meth:`compute_potential` (and :meth:`unscored_record`). Schemes that add a term directly (a bonus, a cost)
    override :meth:`reset_parts` and :meth:`turn_reward` instead.

    Args:
        env: A SearchQA-v0-like env (text actions; ``info["messages"]``; ``env.unwrapped.ground_truth``).
        coef: Weight of the potential difference (potential-based schemes).
        gamma: Discount of the next potential in ``gamma * Phi_t - Phi_{t-1}``.
        shape_final: Add the shaping term to the outcome on the answering turn (potential-based schemes).
        info_key: Extra ``info`` key for the record ``{**parts, "reward"}`` (kept for
            :class:`~igpo_env.wrappers.InformationGainWrapper`'s ``"information_gain"``); ``None``: none.
        scheme: Name written as ``info["shaping"]["scheme"]`` (default: ``info_key``, else ``"shaping"``);
            :func:`~igpo_env.wrappers.make_shaping` sets it to the registered name.
    """

    def __init__(
        self,
        env: gym.Env,
        coef: float = 1.0,
        gamma: float = 1.0,
        shape_final: bool = False,
        info_key: str | None = None,
        scheme: str | None = None,
    ) -> None:
        gym.Wrapper.__init__(self, env)
        if info_key == SHAPING_KEY:
            raise ValueError(f"`info_key` {info_key!r} is the common record's key; choose another or None")
        self.coef = coef
        self.gamma = gamma
        self.shape_final = shape_final
        self.info_key = info_key
        self.scheme = scheme or info_key or SHAPING_KEY
        """Name in ``info["shaping"]["scheme"]``."""
        self.potential: float | None = None
        """The potential after the latest turn (potential-based schemes; ``None`` before reset)."""
        self._started = False

    # ------------------------------------------------------------------ hooks
    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Return ``(Phi, parts)`` for a transcript (potential-based schemes)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_potential or turn_reward")

    def begin_episode(self) -> None:
        """Start per-episode state (called at reset, after the env's reset and before :meth:`reset_parts`)."""

    def end_episode(self) -> None:
        """Release per-episode state (called when an episode terminates or truncates, and at reset)."""

    def unscored_record(self) -> dict[str, Any]:
        """Return the parts of an answering turn whose potential is not computed (``shape_final=False``)."""
        return {}

    def reset_parts(self, info: dict[str, Any]) -> dict[str, Any]:
        """Return the parts recorded at reset. Default: the potential of the bare prompt."""
        phi, parts = self.compute_potential(messages_of(self.env, info), self.env.unwrapped.ground_truth)
        self.potential = phi
        return parts

    def turn_reward(
        self, obs: str, info: dict[str, Any], terminated: bool, truncated: bool
    ) -> tuple[float, dict[str, Any]]:
        """Return ``(term, parts)`` of the turn just taken. Default: ``coef * (gamma * Phi_t - Phi_{t-1})``."""
        if terminated and not self.shape_final:
            return 0.0, self.unscored_record()
        phi, parts = self.compute_potential(messages_of(self.env, info), self.env.unwrapped.ground_truth)
        term = self.coef * (self.gamma * phi - self.potential)
        self.potential = phi
        return term, parts

    # ------------------------------------------------------------------ gymnasium API
    def _record(self, info: dict[str, Any], term: float, parts: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        record: dict[str, Any] = {"scheme": self.scheme, "reward": term, "parts": parts}
        if SHAPING_KEY in info:
            record["inner"] = info[SHAPING_KEY]
        info[SHAPING_KEY] = record
        if self.info_key is not None:
            info[self.info_key] = {**parts, "reward": term}
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Reset the env and record the scheme's reset parts (``reward`` 0)."""
        self.end_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        self.potential = None
        self._started = True
        self.begin_episode()
        return obs, self._record(info, 0.0, self.reset_parts(info))

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and add the scheme's term to its reward (see the module docstring)."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        term, parts = self.turn_reward(obs, info, terminated, truncated)
        term = float(term)
        info = self._record(info, term, parts)
        if terminated or truncated:
            self.end_episode()
        return obs, float(env_reward) + term, terminated, truncated, info


class PotentialShapingWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """Shape SearchQA turn rewards with any potential of the transcript: ``r_t += coef * (gamma Phi_t - Phi_{t-1})``.

    ``potential_fn(messages, ground_truth) -> float`` is called on the reset transcript and after every turn (not on
    the answering turn unless ``final="outcome+shaping"``). The env reward is kept on every turn; see the module
    docstring. ``info["shaping"]["parts"] = {"phi_prev", "phi"}``.

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
        (1.0, {'scheme': 'potential', 'reward': 1.0, 'parts': {'phi_prev': 0.0, 'phi': 1.0}})

    Change logs:
        v0.1.0: added.
        v0.2.0: ``info["shaping"]`` follows the common layout (``phi_prev`` / ``phi`` under ``parts``).
    """

    FINAL_MODES = POTENTIAL_FINAL_MODES

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
        coef, gamma = check_potential_args(coef, gamma, final)
        gym.utils.RecordConstructorArgs.__init__(
            self, potential_fn=potential_fn, coef=coef, gamma=gamma, final=final, _disable_deepcopy=True
        )
        TurnShapingWrapper.__init__(self, env, coef, gamma, final == "outcome+shaping", scheme="potential")
        self.potential_fn = potential_fn
        self.final = final

    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Call ``potential_fn`` and build the ``{"phi_prev", "phi"}`` parts."""
        phi = float(self.potential_fn(messages, ground_truth))
        if not math.isfinite(phi):
            raise ValueError(f"`potential_fn` returned a non-finite potential {phi!r}")
        prev = phi if self.potential is None else self.potential
        return phi, {"phi_prev": prev, "phi": phi}

    def unscored_record(self) -> dict[str, Any]:
        """Answering turn without shaping: ``phi`` is NaN (not computed)."""
        return {"phi_prev": self.potential, "phi": math.nan}
