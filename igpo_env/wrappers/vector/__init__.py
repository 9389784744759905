"""Vector twins of the reward wrappers (same arguments and rewards, batched scoring).

Example:
    >>> from igpo_env.wrappers.vector import InformationGainVectorWrapper
    >>> InformationGainVectorWrapper.__name__
    'InformationGainVectorWrapper'
"""

from __future__ import annotations

from igpo_env.wrappers.vector.information_gain import InformationGainVectorWrapper

__all__ = ["InformationGainVectorWrapper"]
