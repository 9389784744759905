import json
import multiprocessing
import os

import pytest

from igpo_env.data import save_corpus
from igpo_env.data.toy import toy_corpus
from igpo_env.error import DataFormatError, IndexNotFoundError
from igpo_env.retrieval import BM25Retriever, build_index, get_retriever, load_index
from igpo_env.retrieval.index import cached_index_dir


@pytest.fixture()
def corpus_path(tmp_path, monkeypatch):
    monkeypatch.setenv("IGPO_ENV_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "corpus.jsonl"
    save_corpus(toy_corpus(), path)
    return path


def test_get_retriever_object_is_returned_as_is():
    r = BM25Retriever.from_docs(toy_corpus())
    assert get_retriever(r) is r


def test_get_retriever_builds_and_caches(corpus_path):
    r1 = get_retriever(corpus_path)
    cached = cached_index_dir(corpus_path, "bm25")
    assert (cached / "meta.json").is_file()
    mtime = (cached / "meta.json").stat().st_mtime_ns
    r2 = get_retriever(str(corpus_path), kind="bm25")
    assert (cached / "meta.json").stat().st_mtime_ns == mtime  # not rebuilt
    assert r1.search(["Karsel"], 2) == r2.search(["Karsel"], 2)
    # no temp dirs left behind
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]


def test_cache_key_changes_with_file_and_options(corpus_path):
    a = cached_index_dir(corpus_path)
    assert cached_index_dir(corpus_path, stemmer=None) != a
    os.utime(corpus_path, ns=(1, 1))
    assert cached_index_dir(corpus_path) != a


def _build_in_child(path):
    r = get_retriever(path)
    return r.search(["Karsel"], 1)[0][0].id


def test_concurrent_builds_are_safe(corpus_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        ids = pool.map(_build_in_child, [str(corpus_path)] * 2)
    assert ids == ["t2", "t2"]
    cached = cached_index_dir(corpus_path)
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]


def test_get_retriever_index_dir(tmp_path):
    d = build_index(toy_corpus(), tmp_path / "idx", kind="bm25")
    assert get_retriever(d).search(["Velmora"], 1)[0][0].id == "t0"
    assert load_index(d).search(["Velmora"], 1)[0][0].id == "t0"
    with pytest.raises(DataFormatError, match="expected 'dense'"):
        get_retriever(d, kind="dense")


def test_build_index_refuses_to_overwrite(tmp_path):
    d = build_index(toy_corpus(), tmp_path / "idx")
    with pytest.raises(FileExistsError, match="overwrite"):
        build_index(toy_corpus(), d)
    build_index(toy_corpus(), d, overwrite=True, stemmer=None)
    assert json.loads((d / "meta.json").read_text())["stemmer"] is None


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"):
        get_retriever(tmp_path / "nope.jsonl")
    with pytest.raises(TypeError, match="`spec`"):
        get_retriever(42)
    with pytest.raises(ValueError, match="`kind`"):
        get_retriever(tmp_path, kind="sparse")
    with pytest.raises(IndexNotFoundError, match="meta.json"):
        get_retriever(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_index(tmp_path / "missing.jsonl", tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "contents": "T\\nx"}\n{"id": 2, "cont')
    with pytest.raises(DataFormatError, match="bad.jsonl:2"):
        build_index(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
