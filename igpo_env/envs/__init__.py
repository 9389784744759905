"""Environments: SearchQA-v0 (:class:`SearchQAEnv`), its batched twin and the text spaces they use.

:class:`~igpo_env.envs.search_qa.SearchQAEnv`, :class:`~igpo_env.envs.vector.SearchQAVectorEnv`,
:class:`~igpo_env.envs.spaces.UnicodeText`.

Submodules are imported lazily so ``import igpo_env.envs`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SearchQAEnv", "SearchQAVectorEnv", "UnicodeText"]

_LAZY = {
    "SearchQAEnv": "igpo_env.envs.search_qa",
    "SearchQAVectorEnv": "igpo_env.envs.vector",
    "UnicodeText": "igpo_env.envs.spaces",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'igpo_env.envs' has no attribute {name!r}")
