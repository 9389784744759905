"""Rule-based turn rewards on SearchQA-v0: the outcome-only baseline, a retrieval bonus and a search cost.

Each is a :class:`~igpo_env.wrappers.shaping.TurnShapingWrapper` writing the common ``info["shaping"]`` record (layout
in :mod:`igpo_env.wrappers.shaping`); none calls a model, so none needs a vector twin (wrap each sub-env).

Classes: :class:`OutcomeWrapper` (``"outcome"``), :class:`AnswerInContextWrapper` (``"answer_in_context"``),
:class:`SearchCostWrapper` (``"search_cost"``).
"""

from __future__ import annotations

import re
from typing import Any, SupportsFloat

import gymnasium as gym

from igpo_env._validation import check_choice, check_number
from igpo_env.metrics import METRICS, NORMALIZATIONS, cover_em
from igpo_env.wrappers.shaping import TurnShapingWrapper

__all__ = [
    "retrieved_text",
    "OutcomeWrapper",
    "AnswerInContextWrapper",
    "SearchCostWrapper",
    "DEFAULT_CONTEXT_BONUS",
    "DEFAULT_SEARCH_COST",
]

DEFAULT_CONTEXT_BONUS = 0.1
"""Search-R1's retrieval reward: paid once, the first time a gold alias appears in retrieved text."""

DEFAULT_SEARCH_COST = 0.05
"""Penalty per search turn of :class:`SearchCostWrapper` (our default; no reference fixes one)."""


_INFORMATION_RE = re.compile(r"<information>(.*?)</information>", flags=re.DOTALL)
_QUERY_HEADER_RE = re.compile(r'^Results for ".*":$', flags=re.MULTILINE)


def retrieved_text(observation: str) -> str:
    """Return the retrieved passages of a search observation, without markup or echoed queries.

    Keeps the inside of each ``<information>`` block (passage text is escaped, so it cannot close one; see
    :func:`igpo_env.actions.format_observation`) minus the ``Results for "query":`` headers of multi-query turns, so
    an alias typed in the agent's own query does not count as retrieved.

    Example:
        >>> from igpo_env.actions import format_observation
        >>> from igpo_env.types import Doc
        >>> obs = format_observation(["Oslo?", "Bergen?"], [[Doc("1", "A", "a.")], [Doc("2", "B", "b.")]])
        >>> retrieved_text(obs).split()
        ['Doc', '1(Title:', 'A)', 'a.', 'Doc', '1(Title:', 'B)', 'b.']
    """
    return "\n".join(_QUERY_HEADER_RE.sub(" ", block) for block in _INFORMATION_RE.findall(observation))


def _is_search(info: dict[str, Any]) -> bool:
    return info.get("action_type") == "search"


class OutcomeWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """The outcome-only (GRPO) baseline: no turn term; the answering turn gets the outcome metric.

    Non-answering turns keep the env's reward (0 for a search, the format penalty for an invalid action), so with
    ``metric=None`` the rewards are exactly the env's. ``metric`` picks F1, EM or cover-EM for the answering turn
    (from the env's ``info["f1"|"em"|"cover_em"]``), and ``info["outcome"]`` is set to the reward given.
    ``info["shaping"]["parts"] = {"metric", "outcome"}`` on the answering turn, ``{}`` otherwise.

    Args:
        env: A SearchQA-v0-like env (``info["em"|"f1"|"cover_em"]`` on the answering turn).
        metric: ``"f1"`` | ``"em"`` | ``"cover_em"``, or ``None``: the env's own outcome reward.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = OutcomeWrapper(env, metric="em")
        >>> _ = env.reset(options={"question_id": "tq1"})  # gold: Ilka Maren, Maren
        >>> _, r, terminated, _, info = env.step("<answer>Ilka Maren Dovia</answer>")
        >>> r, info["outcome"], info["shaping"]["parts"]
        (0.0, 0.0, {'metric': 'em', 'outcome': 0.0})

    Change logs:
        v0.2.0: added.
    """

    def __init__(self, env: gym.Env, metric: str | None = None) -> None:
        if metric is not None:
            check_choice("metric", metric, tuple(METRICS))
        gym.utils.RecordConstructorArgs.__init__(self, metric=metric)
        TurnShapingWrapper.__init__(self, env, scheme="outcome")
        self.metric = metric

    def reset_parts(self, info: dict[str, Any]) -> dict[str, Any]:
        """Nothing to record at reset."""
        return {}

    def turn_reward(
        self, obs: str, info: dict[str, Any], terminated: bool, truncated: bool
    ) -> tuple[float, dict[str, Any]]:
        """No term; the answering turn records the metric used and its value."""
        if not terminated:
            return 0.0, {}
        if self.metric is None:  # the env's own outcome, named by the env's metric when it says
            return 0.0, {"metric": getattr(self.env.unwrapped, "reward_metric", None), "outcome": info["outcome"]}
        return 0.0, {"metric": self.metric, "outcome": float(info[self.metric])}

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; on the answering turn the reward (and ``info["outcome"]``) is the chosen metric."""
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated:
            reward = info["outcome"] = info["shaping"]["parts"]["outcome"]
        return obs, reward, terminated, truncated, info


class AnswerInContextWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """Search-R1's retrieval reward: ``bonus`` once, on the first search turn whose retrieved text holds a gold alias.

    A search turn matches when a normalized gold alias occurs on token boundaries in its retrieved passages
    (:func:`retrieved_text` of the observation, as the agent saw them; :func:`igpo_env.metrics.cover_em` with the
    env's answer normalization). Later matches pay nothing.
    ``info["shaping"]["parts"] = {"hit", "paid"}``: this turn's text holds an alias / the bonus was paid on this turn.

    Args:
        env: A SearchQA-v0-like env (``info["action_type"]``, ``env.unwrapped.ground_truth``).
        bonus: The one-off reward (>= 0).
        normalization: ``"squad"`` | ``"igpo"``, or ``None``: the env's ``normalization`` (else ``"squad"``).

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = AnswerInContextWrapper(env)
        >>> _ = env.reset(options={"question_id": "tq0"})  # gold: Karsel
        >>> [env.step("<search>capital of Ostrand</search>")[1] for _ in range(2)]
        [0.1, 0.0]

    Change logs:
        v0.2.0: added.
    """

    def __init__(self, env: gym.Env, bonus: float = DEFAULT_CONTEXT_BONUS, normalization: str | None = None) -> None:
        bonus = check_number("bonus", bonus, minimum=0.0)
        if normalization is not None:
            check_choice("normalization", normalization, NORMALIZATIONS)
        gym.utils.RecordConstructorArgs.__init__(self, bonus=bonus, normalization=normalization)
        TurnShapingWrapper.__init__(self, env, scheme="answer_in_context")
        self.bonus = bonus
        self.normalization = normalization or getattr(env.unwrapped, "normalization", "squad")
        self.found = False
        """Whether a gold alias has appeared in retrieved text in the current episode."""

    def begin_episode(self) -> None:
        """No alias seen yet."""
        self.found = False

    def reset_parts(self, info: dict[str, Any]) -> dict[str, Any]:
        """Nothing retrieved at reset."""
        return {"hit": False, "paid": False}

    def turn_reward(
        self, obs: str, info: dict[str, Any], terminated: bool, truncated: bool
    ) -> tuple[float, dict[str, Any]]:
        """Pay ``bonus`` on the first search turn whose observation holds a gold alias."""
        golds = self.env.unwrapped.ground_truth
        hit = _is_search(info) and cover_em(retrieved_text(obs), golds, self.normalization) == 1.0
        paid = hit and not self.found
        self.found = self.found or hit
        return (self.bonus if paid else 0.0), {"hit": hit, "paid": paid}


class SearchCostWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """A fixed penalty per search turn: ``r_t -= cost`` when turn t searched.

    ``info["shaping"]["parts"] = {"searches"}`` (search turns so far in the episode).

    Args:
        env: A SearchQA-v0-like env (``info["action_type"]``).
        cost: The penalty per search turn (>= 0).

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = SearchCostWrapper(env, cost=0.25)
        >>> _ = env.reset(options={"question_id": "tq0"})
        >>> [env.step(a)[1] for a in ("<search>Ostrand</search>", "<answer>Karsel</answer>")]
        [-0.25, 1.0]

    Change logs:
        v0.2.0: added.
    """

    def __init__(self, env: gym.Env, cost: float = DEFAULT_SEARCH_COST) -> None:
        cost = check_number("cost", cost, minimum=0.0)
        gym.utils.RecordConstructorArgs.__init__(self, cost=cost)
        TurnShapingWrapper.__init__(self, env, scheme="search_cost")
        self.cost = cost
        self.searches = 0
        """Search turns taken in the current episode."""

    def begin_episode(self) -> None:
        """Reset the search count."""
        self.searches = 0

    def reset_parts(self, info: dict[str, Any]) -> dict[str, Any]:
        """No search yet."""
        return {"searches": 0}

    def turn_reward(
        self, obs: str, info: dict[str, Any], terminated: bool, truncated: bool
    ) -> tuple[float, dict[str, Any]]:
        """``-cost`` on a search turn, 0 otherwise."""
        if not _is_search(info):
            return 0.0, {"searches": self.searches}
        self.searches += 1
        return -self.cost, {"searches": self.searches}
