import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.error import DataFormatError, IndexNotFoundError
from igpo_env.retrieval import DenseRetriever, Retriever, get_retriever, load_index
from igpo_env.retrieval.encoder import default_model_path, load_encoder
from igpo_env.types import Doc


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()  # packaged all-MiniLM-L6-v2, offline


@pytest.fixture(scope="module")
def retriever(encoder):
    return DenseRetriever.from_docs(toy_corpus(), model=encoder)


def test_offline_packaged_model(retriever, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert isinstance(retriever, Retriever)
    assert (default_model_path() / "model.safetensors").is_file()
    assert retriever.model_name == "all-MiniLM-L6-v2"


def test_search_sorted_k_docs(retriever):
    queries = [q.question for q in toy_qa()]
    results = retriever.search(queries, 3)
    assert len(results) == len(queries)
    for docs in results:
        assert len(docs) == 3
        scores = [d.score for d in docs]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)
    assert retriever.search(["Which river flows into the Grey Sea?"], 1)[0][0].id == "t0"
    assert [len(r) for r in retriever.search(["x"], 50)] == [len(toy_corpus())]
    assert retriever.search([], 3) == []


def test_scores_are_cosine(retriever):
    q = retriever.encode_queries(["Karsel founder"])
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    top = retriever.search(["Karsel founder"], 1)[0][0]
    p = retriever.encoder.encode([top.contents], normalize_embeddings=True)
    assert top.score == pytest.approx(float(q[0] @ p[0]), abs=1e-4)


@pytest.mark.parametrize("index_type", ["Flat", "HNSW8", "IVF2,Flat"])
def test_save_load_round_trip(tmp_path, encoder, index_type):
    built = DenseRetriever.build(toy_corpus(), tmp_path / "idx", model=encoder, index_type=index_type)
    assert (tmp_path / "idx" / "embeddings.npy").is_file()
    emb = np.load(tmp_path / "idx" / "embeddings.npy", mmap_mode="r")
    assert emb.shape == (len(toy_corpus()), 384)
    loaded = DenseRetriever.load(tmp_path / "idx", model=encoder)
    queries = [q.question for q in toy_qa()]
    a, b = built.search(queries, 4), loaded.search(queries, 4)
    assert [[d.id for d in r] for r in a] == [[d.id for d in r] for r in b]
    np.testing.assert_allclose([[d.score for d in r] for r in a], [[d.score for d in r] for r in b], atol=1e-5)
    assert isinstance(load_index(tmp_path / "idx", model=encoder), DenseRetriever)


def test_prefixes_and_bf16(tmp_path, encoder):
    r = DenseRetriever.build(
        toy_corpus(),
        tmp_path / "e5",
        model=default_model_path(),
        query_prefix="query: ",
        passage_prefix="passage: ",
        dtype="bfloat16",
    )
    assert r.search(["How long is the Velmora?"], 1)[0][0].id == "t0"
    loaded = DenseRetriever.load(tmp_path / "e5", model=encoder)
    assert (loaded.query_prefix, loaded.passage_prefix) == ("query: ", "passage: ")


def test_get_retriever_dense_from_corpus(tmp_path, monkeypatch, encoder):
    from igpo_env.data import save_corpus

    monkeypatch.setenv("IGPO_ENV_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "c.jsonl"
    save_corpus(toy_corpus(), path)
    r = get_retriever(path, kind="dense", use_gpu=False)
    assert isinstance(r, DenseRetriever)
    assert r.search(["The Amber Gate film"], 1)[0][0].id == "t6"


def test_validation(tmp_path, encoder):
    with pytest.raises(ValueError, match="not a valid faiss.index_factory"):
        DenseRetriever.from_docs(toy_corpus(), model=encoder, index_type="Bogus")
    with pytest.raises(ValueError, match="needs >= 64 passages"):
        DenseRetriever.from_docs(toy_corpus(), model=encoder, index_type="IVF64,Flat")
    with pytest.raises(ValueError, match="float16"):
        load_encoder(dtype="float16")
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        load_encoder(tmp_path / "no-model")
    with pytest.raises(ValueError, match="empty"):
        DenseRetriever.from_docs([], model=encoder)
    with pytest.raises(ValueError, match="`batch_size`"):
        DenseRetriever.from_docs(toy_corpus(), model=encoder, batch_size=0)


def test_load_errors(tmp_path, encoder):
    d = DenseRetriever.build(toy_corpus(), tmp_path / "idx", model=encoder).save(tmp_path / "idx")
    (d / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="corrupt FAISS index"):
        DenseRetriever.load(d, model=encoder)
    (d / "index.faiss").unlink()
    with pytest.raises(IndexNotFoundError, match="index.faiss"):
        DenseRetriever.load(d, model=encoder)


# ---------------------------------------------------------------- memory-mapped loading and compressed indexes
_RSS_SCRIPT = """
import sys
import faiss  # imported before the first measurement, as the store below
import numpy as np
from igpo_env.retrieval.base import DocStore
from igpo_env.retrieval.dense import DenseRetriever

class StubEncoder:  # only the dimension is checked on load; no torch needed
    def get_embedding_dimension(self):
        return int(sys.argv[2])

def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

DocStore.load(sys.argv[1] + "/docs.jsonl")  # warm the allocator: measure the index, not the passages
before = anon_mb()
r = DenseRetriever.load(sys.argv[1], model=StubEncoder(), use_gpu=False, mmap=sys.argv[3] == "1")
r.search_vectors(np.ones((4, int(sys.argv[2])), dtype=np.float32), 5)
print(anon_mb() - before)
"""


def _random_index(tmp_path, encoder, n, index_type, seed=0):
    dim = encoder.get_embedding_dimension()
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [Doc(f"d{i}", f"T{i}", "x") for i in range(n)]
    r = DenseRetriever.from_embeddings(vectors, docs, model=encoder, index_type=index_type, use_gpu=False)
    return r.save(tmp_path / index_type.replace(",", "_")), vectors


@pytest.mark.parametrize("index_type", ["Flat", "HNSW8", "IVF16,PQ8x4", "OPQ8_64,IVF16,PQ8x4", "IVF16_HNSW8,PQ8x4"])
def test_mmap_load_gives_the_same_results(tmp_path, encoder, index_type):
    directory, vectors = _random_index(tmp_path, encoder, 1000, index_type)
    read = DenseRetriever.load(directory, model=encoder, use_gpu=False, nprobe=4)
    mapped = get_retriever(directory, model=encoder, use_gpu=False, nprobe=4, mmap=True)
    for a, b in zip(read.search_vectors(vectors[:20], 5), mapped.search_vectors(vectors[:20], 5), strict=True):
        np.testing.assert_array_equal(a, b)
    assert mapped.search(["Karsel"], 2)[0][0].id.startswith("d")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RssAnon from /proc (Linux)")
def test_mmap_keeps_a_flat_index_out_of_process_memory(tmp_path, encoder):
    directory, _ = _random_index(tmp_path, encoder, 40_000, "Flat")  # 59 MiB of vectors
    size_mb = (directory / "index.faiss").stat().st_size / 2**20
    dim = str(encoder.get_embedding_dimension())

    def grown(mmap):
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(directory), dim, mmap], capture_output=True)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        return float(out.stdout)

    assert grown("0") > 0.8 * size_mb  # read: the whole index in anonymous memory
    assert grown("1") < 0.2 * size_mb  # mapped: page cache only (faiss' IO_FLAG_MMAP alone would read a Flat index)
