import json

import pytest

from igpo_env.cli import main
from igpo_env.data import save_corpus
from igpo_env.data.toy import toy_corpus
from igpo_env.retrieval import BM25Retriever, load_index


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    save_corpus(toy_corpus(), path)
    return path


def test_index_build_bm25(tmp_path, corpus, capsys):
    out = tmp_path / "idx"
    assert main(["index", "build", "--corpus", str(corpus), "--kind", "bm25", "--out", str(out), "--quiet"]) == 0
    assert "built bm25 index" in capsys.readouterr().out
    r = load_index(out)
    assert isinstance(r, BM25Retriever) and r.search(["Karsel"], 1)[0][0].id == "t2"
    # refuses to overwrite, then --overwrite with options
    assert main(["index", "build", "--corpus", str(corpus), "--out", str(out), "--quiet"]) == 2
    assert "overwrite" in capsys.readouterr().err
    args = ["index", "build", "--corpus", str(corpus), "--out", str(out), "--overwrite", "--stemmer", "none"]
    assert main([*args, "--stopwords", "none", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["stemmer"] is None


def test_index_build_dense(tmp_path, corpus):
    out = tmp_path / "dense"
    args = ["index", "build", "--corpus", str(corpus), "--kind", "dense", "--faiss-index", "HNSW8", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["kind"], meta["index_type"], meta["model"]) == ("dense", "HNSW8", "all-MiniLM-L6-v2")


def test_index_build_errors(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert main(["index", "build", "--corpus", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "contents": "A\\nb"}\n{"id": 2,')
    assert main(["index", "build", "--corpus", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("igpo-env: error:") and "bad.jsonl:2" in err
    assert not (tmp_path / "o").exists()


def test_serve_errors(tmp_path, capsys):
    assert main(["serve", "retriever", "--index", str(tmp_path / "nope")]) == 2
    assert "neither an existing index directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["serve", "retriever", "--index", str(tmp_path / "empty")]) == 2
    assert "meta.json" in capsys.readouterr().err
    d = BM25Retriever.from_docs(toy_corpus()).save(tmp_path / "idx")
    assert main(["serve", "retriever", "--index", str(d), "--max-topk", "0"]) == 2
    assert "`max_topk` must be an int >= 1" in capsys.readouterr().err


def test_serve_runs_server(tmp_path, monkeypatch):
    from igpo_env.retrieval import server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda retriever, **kw: seen.update(kw, retriever=retriever))
    d = BM25Retriever.from_docs(toy_corpus()).save(tmp_path / "idx")
    assert main(["serve", "retriever", "--index", str(d), "--port", "8123", "--max-batch", "7"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["max_batch"] == 7
    assert isinstance(seen["retriever"], BM25Retriever)


def test_serve_mmap_and_dense_search_options(tmp_path, monkeypatch, capsys):
    import faiss

    from igpo_env.retrieval import DenseRetriever, server

    seen, loads = {}, []
    monkeypatch.setattr(server, "serve", lambda retriever, **kw: seen.update(kw, retriever=retriever))
    bm25 = BM25Retriever.from_docs(toy_corpus()).save(tmp_path / "bm25")
    assert main(["serve", "retriever", "--index", str(bm25), "--mmap"]) == 0
    assert isinstance(seen["retriever"], BM25Retriever)
    assert main(["serve", "retriever", "--index", str(bm25), "--nprobe", "4"]) == 2
    assert "--nprobe applies to a dense index" in capsys.readouterr().err
    DenseRetriever.build(toy_corpus(), tmp_path / "dense", index_type="IVF2,Flat", use_gpu=False)
    load = DenseRetriever.load.__func__
    monkeypatch.setattr(
        DenseRetriever, "load", classmethod(lambda cls, d, **kw: loads.append(kw) or load(cls, d, **kw))
    )
    argv = ["serve", "retriever", "--index", str(tmp_path / "dense"), "--mmap", "--nprobe", "2", "--no-gpu"]
    assert main(argv) == 0
    assert loads == [{"mmap": True, "use_gpu": False, "nprobe": 2}]
    assert faiss.extract_index_ivf(seen["retriever"].index).nprobe == 2
    assert seen["retriever"].search(["Karsel"], 1)[0][0].id == "t2"
