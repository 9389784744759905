import json
import os

import numpy as np
import pytest

from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.error import DataFormatError, IndexNotFoundError
from igpo_env.retrieval import BM25Retriever, Retriever
from igpo_env.types import Doc


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


def test_is_retriever(retriever):
    assert isinstance(retriever, Retriever)
    assert len(retriever) == len(toy_corpus())


def test_search_returns_k_sorted_docs_with_scores(retriever):
    queries = [q.question for q in toy_qa()]
    for k in (1, 3, 5):
        results = retriever.search(queries, k)
        assert len(results) == len(queries)
        for docs in results:
            assert len(docs) == k
            assert all(isinstance(d, Doc) for d in docs)
            scores = [d.score for d in docs]
            assert scores == sorted(scores, reverse=True)
            assert len({d.id for d in docs}) == k


def test_first_hop_found(retriever):
    for ex in toy_qa():
        top = [d.id for d in retriever.search([ex.question], 3)[0]]
        assert ex.supporting_doc_ids[0] in top, (ex.question, top)


def test_k_larger_than_corpus_and_unknown_terms(retriever):
    n = len(toy_corpus())
    docs = retriever.search(["Karsel", "qqqq zzzz", ""], 100)
    assert [len(d) for d in docs] == [n, n, n]
    assert docs[0][0].title == "Karsel" and docs[0][0].score > 0
    assert all(d.score == 0.0 for d in docs[1])
    assert len({d.id for d in docs[1]}) == n


def test_empty_batch(retriever):
    assert retriever.search([], 3) == []


@pytest.mark.parametrize(
    ("queries", "k", "err", "match"),
    [
        ("a query", 3, TypeError, "wrap a single query"),
        ([1], 3, TypeError, r"queries\[0\]"),
        (["q"], 0, ValueError, "`k` must be >= 1, got 0"),
        (["q"], 2.5, TypeError, "`k` must be an int"),
    ],
)
def test_search_validation(retriever, queries, k, err, match):
    with pytest.raises(err, match=match):
        retriever.search(queries, k)


def test_constructor_validation():
    with pytest.raises(ValueError, match="`method`"):
        BM25Retriever.from_docs(toy_corpus(), method="bm99")
    with pytest.raises(ValueError, match=r"`b` must be a number in \[0, 1\], got 2.0"):
        BM25Retriever.from_docs(toy_corpus(), b=2.0)
    with pytest.raises(ValueError, match="empty"):
        BM25Retriever.from_docs([])
    with pytest.raises(ValueError, match="PyStemmer language"):
        BM25Retriever.from_docs(toy_corpus(), stemmer="klingon")


@pytest.mark.parametrize("options", [{}, {"stemmer": None, "stopwords": None}, {"method": "bm25+"}])
def test_save_load_round_trip(tmp_path, options):
    r = BM25Retriever.from_docs(toy_corpus(), **options)
    r.save(tmp_path / "idx")
    queries = [q.question for q in toy_qa()] + ["nothing matches here xq"]
    for mmap in (False, True):
        r2 = BM25Retriever.load(tmp_path / "idx", mmap=mmap)
        assert r2.search(queries, 4) == r.search(queries, 4)


def test_matches_bm25s_scores(retriever):
    import bm25s

    queries = [q.question for q in toy_qa()]
    tokens = bm25s.tokenize(queries, stemmer=retriever._stemmer, return_ids=False, show_progress=False)
    ref = retriever.model.retrieve(tokens, k=3, show_progress=False)
    _, scores = retriever.search_indices(queries, 3)
    np.testing.assert_allclose(scores, ref.scores, rtol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        BM25Retriever.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="meta.json"):
        BM25Retriever.load(tmp_path / "empty")
    d = BM25Retriever.from_docs(toy_corpus()).save(tmp_path / "idx")
    (d / "docs.jsonl").write_text('{"id": "t0", "title"\n')
    with pytest.raises(DataFormatError, match="docs.jsonl:1"):
        BM25Retriever.load(d)
    (d / "meta.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="corrupt"):
        BM25Retriever.load(d)
    (d / "meta.json").write_text(json.dumps({"format": "igpo-env-index", "version": 1, "kind": "dense"}))
    with pytest.raises(DataFormatError, match="expected 'bm25'"):
        BM25Retriever.load(d)


def test_from_corpus_file_and_records(tmp_path):
    from igpo_env.data import save_corpus

    path = tmp_path / "c.jsonl"
    save_corpus(toy_corpus(), path)
    a = BM25Retriever.from_docs(path)
    b = BM25Retriever.from_docs([{"id": d.id, "contents": d.contents} for d in toy_corpus()])
    assert a.search(["Dovia town"], 2) == b.search(["Dovia town"], 2)


def test_term_ids_do_not_depend_on_the_hash_seed():
    # bm25s numbers stemmed terms in `set` order (PYTHONHASHSEED-dependent); the term order fixes the float32
    # summation order of scores, so equal-scoring passages swapped places between processes. Ids must be sorted.
    import subprocess
    import sys

    code = (
        "from igpo_env.data.toy import toy_corpus; from igpo_env.retrieval import BM25Retriever; "
        "r = BM25Retriever.from_docs(toy_corpus()); print(sorted(r.model.vocab_dict.items(), key=lambda kv: kv[1]))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1 and outs != {""}
    vocab = BM25Retriever.from_docs(toy_corpus()).model.vocab_dict
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t]  # bm25s places "" (empty docs) itself
    assert by_id == sorted(by_id)
