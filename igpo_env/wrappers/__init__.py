"""Wrappers adding dense turn rewards to SearchQA-v0: information gain (IGPO) and general potential shaping.

Example:
    >>> from igpo_env.wrappers import InformationGainWrapper, PotentialShapingWrapper
    >>> InformationGainWrapper.__name__
    'InformationGainWrapper'
"""

from __future__ import annotations

from igpo_env.wrappers.information_gain import InformationGainWrapper
from igpo_env.wrappers.shaping import PotentialShapingWrapper

__all__ = ["InformationGainWrapper", "PotentialShapingWrapper"]
