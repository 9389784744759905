"""SynthWiki: a generated, fictional, Wikipedia-like world with a FlashRAG corpus and multi-hop QA.

Every question knows which passages it needs (``supporting_doc_ids``, in hop order) and how to get there
(``metadata["hops"]``), so credit assignment can be checked against ground truth. Names are fictional, so no model
knows the answers without searching.

- :func:`default_world` -> the cached default world directory (5k passages, 3k questions).
- :func:`build_world` -> write a world of any size (``igpo-env world build --passages N --seed S --out DIR``).
- :func:`load_synthwiki` -> the default world's questions of one split; :func:`to_dataset_dict` -> ``DatasetDict``.

Example:
    >>> import tempfile
    >>> from igpo_env.data import load_corpus
    >>> out = build_world(tempfile.mkdtemp(), passages=100, seed=0, verbose=False)
    >>> len(list(load_corpus(out / "corpus.jsonl")))
    100
"""

from __future__ import annotations

from igpo_env.data.synthwiki.build import (
    DEFAULT_PASSAGES,
    GENERATOR_VERSION,
    build_world,
    default_world,
    load_synthwiki,
    to_dataset_dict,
)
from igpo_env.data.synthwiki.world import ENTITY_TYPES, World, generate_world

__all__ = [
    "DEFAULT_PASSAGES",
    "GENERATOR_VERSION",
    "ENTITY_TYPES",
    "World",
    "build_world",
    "default_world",
    "generate_world",
    "load_synthwiki",
    "to_dataset_dict",
]
