"""Turn-reward schemes by name: :data:`SHAPING_SCHEMES` and :func:`make_shaping`.

Each name maps to a wrapper class (a string entry point, imported on first use, as Gymnasium's registry does) and
the arguments the name fixes (``"ig"`` and ``"log_ig"`` are :class:`~igpo_env.wrappers.InformationGainWrapper` with
``mode="prob_diff"`` / ``"log_prob_diff"``). Every scheme writes the common ``info["shaping"]`` record
(:mod:`igpo_env.wrappers.shaping`) with ``scheme`` set to its name.

GiGPO's anchor-state advantage (``"gigpo_anchor"``) is a scheme of the advantage, not of the env's rewards: it lives
beside the trainer's advantage functions, in :mod:`agents.igpo.anchor_advantages`.

Example:
    >>> import gymnasium as gym, igpo_env
    >>> from igpo_env.data.toy import toy_corpus, toy_qa
    >>> from igpo_env.retrieval import BM25Retriever
    >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    >>> env = make_shaping("search_cost", env, cost=0.1)
    >>> _, info = env.reset(options={"question_id": "tq0"})
    >>> info["shaping"]
    {'scheme': 'search_cost', 'reward': 0.0, 'parts': {'searches': 0}}
    >>> sorted(SHAPING_SCHEMES)
    ['answer_in_context', 'evidence_recall', 'ig', 'log_ig', 'mc_value', 'outcome', 'potential', 'search_cost']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import gymnasium as gym

__all__ = ["ShapingScheme", "SHAPING_SCHEMES", "ADVANTAGE_SCHEMES", "make_shaping", "shaping_class"]


class ShapingScheme(NamedTuple):
    """A registered turn-reward scheme: its wrapper class and the constructor arguments its name fixes."""

    entry_point: str
    """``"module:Class"`` of the wrapper."""
    fixed: Mapping[str, Any]
    """Keyword arguments the name implies (a caller may repeat them with the same value, not change them)."""
    summary: str
    """One line for ``--help`` texts and error messages."""


def _scheme(entry_point: str, summary: str, **fixed: Any) -> ShapingScheme:
    return ShapingScheme(entry_point, MappingProxyType(fixed), summary)


_W = "igpo_env.wrappers."
SHAPING_SCHEMES: Mapping[str, ShapingScheme] = MappingProxyType(
    {
        "outcome": _scheme(_W + "shaping_turn:OutcomeWrapper", "F1 / EM / cover-EM outcome only (GRPO baseline)"),
        "ig": _scheme(
            _W + "information_gain:InformationGainWrapper", "IGPO information gain p_t - p_{t-1}", mode="prob_diff"
        ),
        "log_ig": _scheme(
            _W + "information_gain:InformationGainWrapper", "gain in mean log p(gold)", mode="log_prob_diff"
        ),
        "answer_in_context": _scheme(
            _W + "shaping_turn:AnswerInContextWrapper", "Search-R1 bonus when a gold alias is first retrieved"
        ),
        "evidence_recall": _scheme(
            _W + "shaping_evidence:EvidenceRecallWrapper", "StepSearch TF-IDF evidence gain - redundancy"
        ),
        "search_cost": _scheme(_W + "shaping_turn:SearchCostWrapper", "fixed penalty per search turn"),
        "potential": _scheme(_W + "shaping:PotentialShapingWrapper", "Ng et al. shaping with any potential_fn"),
        "mc_value": _scheme(_W + "shaping_mc:MCValueWrapper", "value by k policy continuations (reference only)"),
    }
)
"""Scheme name -> :class:`ShapingScheme`."""

ADVANTAGE_SCHEMES: Mapping[str, str] = MappingProxyType(
    {"gigpo_anchor": "agents.igpo.anchor_advantages:anchor_advantages"}
)
"""Schemes that act on advantages, not env rewards: name -> the function the trainer calls."""


def _unknown(name: Any) -> ValueError:
    if name in ADVANTAGE_SCHEMES:
        return ValueError(
            f"{name!r} is an advantage scheme, not an env wrapper: the trainer applies it with "
            f"{ADVANTAGE_SCHEMES[name]}; env shaping schemes are {tuple(SHAPING_SCHEMES)}"
        )
    return ValueError(f"unknown shaping scheme {name!r}; choose one of {tuple(SHAPING_SCHEMES)}")


def shaping_class(name: str) -> type[gym.Wrapper]:
    """Return the wrapper class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the registered ones.

    Example:
        >>> shaping_class("log_ig").__name__
        'InformationGainWrapper'
    """
    if name not in SHAPING_SCHEMES:
        raise _unknown(name)
    module, _, attr = SHAPING_SCHEMES[name].entry_point.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_shaping(name: str, env: gym.Env, **kwargs: Any) -> gym.Wrapper:
    """Wrap ``env`` with the turn-reward scheme ``name``; ``kwargs`` go to its wrapper class.

    Args:
        name: A key of :data:`SHAPING_SCHEMES`.
        env: A SearchQA-v0-like env.
        **kwargs: The scheme's arguments (see its class); an argument the name fixes may only repeat its value.

    Returns:
        The wrapper, with ``scheme`` (and so ``info["shaping"]["scheme"]``) set to ``name``.

    Raises:
        ValueError: for an unknown name (listing the registered ones) or a change to an argument the name fixes.

    Example:
        >>> make_shaping("gae", None)
        Traceback (most recent call last):
        ...
        ValueError: unknown shaping scheme 'gae'; choose one of ('outcome', 'ig', 'log_ig', ...)
    """
    cls = shaping_class(name)
    for key, value in SHAPING_SCHEMES[name].fixed.items():
        if key in kwargs and kwargs[key] != value:
            others = [n for n, s in SHAPING_SCHEMES.items() if s.fixed.get(key) == kwargs[key]]
            hint = f"; use scheme {others[0]!r}" if others else ""
            raise ValueError(f"scheme {name!r} fixes `{key}`={value!r}, got {kwargs[key]!r}{hint}")
    wrapper = cls(env, **{**kwargs, **SHAPING_SCHEMES[name].fixed})
    wrapper.scheme = name
    return wrapper
