"""Retrieval backends behind one protocol: in-process BM25 (bm25s), dense FAISS, and a Search-R1-compatible HTTP pair.

- :class:`Retriever`: ``search(queries: list[str], k: int) -> list[list[Doc]]``.
- :class:`BM25Retriever`, :class:`DenseRetriever`: in-process indexes, saved to / loaded from a directory.
- :class:`RemoteRetriever`: a client of ``POST /retrieve`` (ours from ``igpo-env serve retriever``, or Search-R1's).
- :func:`get_retriever`: Retriever object | URL | index directory | corpus path -> :class:`Retriever`.
- :func:`build_index`, :func:`load_index`: write and read index directories.

Heavy libraries (faiss, torch, sentence-transformers, fastapi) load on first use.

Example:
    >>> from igpo_env.retrieval import BM25Retriever
    >>> from igpo_env.data.toy import toy_corpus
    >>> BM25Retriever.from_docs(toy_corpus()).search(["The Amber Gate film of 1994"], k=1)[0][0].id
    't6'
"""

from __future__ import annotations

import importlib
from typing import Any

from igpo_env.retrieval.base import DocStore, Retriever
from igpo_env.retrieval.bm25 import BM25Retriever
from igpo_env.retrieval.index import build_index, get_retriever, load_index

_LAZY = {
    "DenseRetriever": "igpo_env.retrieval.dense",
    "RemoteRetriever": "igpo_env.retrieval.client",
    "create_app": "igpo_env.retrieval.server",
}

__all__ = ["Retriever", "DocStore", "BM25Retriever", "get_retriever", "load_index", "build_index", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'igpo_env.retrieval' has no attribute {name!r}")
