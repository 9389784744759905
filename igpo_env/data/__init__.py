"""QA data and corpora: loaders for FlashRAG / verl / ``datasets`` and the embedded SynthWiki world."""

from __future__ import annotations

from igpo_env.data.datasets import from_dataset, load_qa, to_dataset
from igpo_env.data.formats import (
    load_corpus,
    load_flashrag_qa,
    load_verl_parquet,
    save_corpus,
    save_flashrag_qa,
    save_verl_parquet,
)

__all__ = [
    "load_qa",
    "load_corpus",
    "to_dataset",
    "from_dataset",
    "load_flashrag_qa",
    "save_flashrag_qa",
    "load_verl_parquet",
    "save_verl_parquet",
    "save_corpus",
]
