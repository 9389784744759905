from __future__ import annotations

import pytest

from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever


@pytest.fixture(scope="session")
def toy_retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture()
def toy_kwargs(toy_retriever):
    return {"dataset": toy_qa(), "retriever": toy_retriever}
