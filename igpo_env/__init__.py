"""igpo-env: multi-turn search-QA Gymnasium environments with information-gain (IGPO) turn rewards.

Importing the package registers ``SearchQA-v0``; heavy modules (torch, retrievers, scorers) load on first use.

Example:
    >>> import gymnasium as gym, igpo_env
    >>> "SearchQA-v0" in gym.registry
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from gymnasium.envs.registration import register

from igpo_env.types import Doc, QAExample, TargetScore

__version__ = "0.1.0"

MAX_TURNS = 10
"""Default turn limit of SearchQA-v0 (IGPO's ``max_turns``)."""

register(
    id="SearchQA-v0",
    entry_point="igpo_env.envs.search_qa:SearchQAEnv",
    vector_entry_point="igpo_env.envs.vector:SearchQAVectorEnv",
    max_episode_steps=MAX_TURNS,
    disable_env_checker=True,
)

_LAZY = {
    "SearchQAEnv": "igpo_env.envs.search_qa",
    "SearchQAVectorEnv": "igpo_env.envs.vector",
    "InformationGainWrapper": "igpo_env.wrappers.information_gain",
    "InformationGainVectorWrapper": "igpo_env.wrappers.vector.information_gain",
    "HFScorer": "igpo_env.scoring.hf",
    "BM25Retriever": "igpo_env.retrieval.bm25",
    "DenseRetriever": "igpo_env.retrieval.dense",
    "RemoteRetriever": "igpo_env.retrieval.client",
    "load_qa": "igpo_env.data",
    "load_corpus": "igpo_env.data",
}

__all__ = ["Doc", "QAExample", "TargetScore", "MAX_TURNS", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'igpo_env' has no attribute {name!r}")
