"""Wrappers adding dense turn rewards to SearchQA-v0: information gain (IGPO), potential shaping and other schemes.

Every scheme is selectable by name with :func:`make_shaping` (names in :data:`SHAPING_SCHEMES`) and records its turn
reward as ``info["shaping"]`` (layout in :mod:`igpo_env.wrappers.shaping`).

Example:
    >>> from igpo_env.wrappers import InformationGainWrapper, PotentialShapingWrapper
    >>> InformationGainWrapper.__name__
    'InformationGainWrapper'
"""

from __future__ import annotations

from igpo_env.wrappers.discrete import CandidateActionWrapper
from igpo_env.wrappers.information_gain import InformationGainWrapper
from igpo_env.wrappers.shaping import PotentialShapingWrapper, TurnShapingWrapper
from igpo_env.wrappers.shaping_evidence import EvidenceRecallWrapper
from igpo_env.wrappers.shaping_mc import MCValueWrapper
from igpo_env.wrappers.shaping_registry import SHAPING_SCHEMES, make_shaping
from igpo_env.wrappers.shaping_turn import AnswerInContextWrapper, OutcomeWrapper, SearchCostWrapper

__all__ = [
    "InformationGainWrapper",
    "PotentialShapingWrapper",
    "TurnShapingWrapper",
    "OutcomeWrapper",
    "AnswerInContextWrapper",
    "SearchCostWrapper",
    "EvidenceRecallWrapper",
    "MCValueWrapper",
    "SHAPING_SCHEMES",
    "make_shaping",
    "CandidateActionWrapper",
]
