"""Tests of the index-memory benchmark's arithmetic (checked against real FAISS files) and vector filler."""

import faiss
import numpy as np
import pytest

from benchmarks.index_memory import expected_bytes, fill_vectors, wiki_specs


@pytest.mark.parametrize(
    "index_type",
    ["Flat", "HNSW8", "IVF32,PQ8", "IVF32,PQ8x4", "OPQ8,IVF32,PQ8", "OPQ8_32,IVF32,PQ8", "IVF32_HNSW8,PQ8"],
)
def test_expected_bytes_match_faiss_files(tmp_path, index_type):
    n, dim = 4000, 64
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    size = (tmp_path / "i.faiss").stat().st_size
    assert expected_bytes(index_type, n, dim) == pytest.approx(size, rel=0.1)


def test_wiki_scale_arithmetic():
    measured = ["Flat", "IVF4096,PQ64", "OPQ64,IVF4096,PQ64", "IVF4096_HNSW32,PQ64"]
    specs = wiki_specs(measured)
    assert specs == ["Flat", "IVF65536,PQ64", "OPQ64,IVF65536,PQ64", "IVF65536_HNSW32,PQ64", "HNSW32"]
    assert expected_bytes("Flat", 21_000_000, 768) == 21_000_000 * 768 * 4  # 64.5 GB
    ivfpq = expected_bytes("IVF65536,PQ64", 21_000_000, 768)
    assert ivfpq == 21_000_000 * (64 + 8) + 65536 * 768 * 4 + 256 * 768 * 4
    assert expected_bytes("OPQ64,IVF65536,PQ64", 21_000_000, 768) == ivfpq + 768 * 768 * 4
    assert expected_bytes("HNSW32", 21_000_000, 768) > expected_bytes("Flat", 21_000_000, 768)


def test_fill_keeps_real_vectors_at_their_positions(tmp_path):
    rng = np.random.default_rng(1)
    real = rng.standard_normal((40, 8)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    positions = [3, 17, *range(100, 138)]
    fill_vectors(real, positions, 1000, tmp_path / "v.npy")
    v = np.load(tmp_path / "v.npy")
    assert v.shape == (1000, 8) and v.dtype == np.float32
    np.testing.assert_array_equal(v[positions], real)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the filler follows the real vectors' mean direction
    assert float(v.mean(axis=0) @ real.mean(axis=0)) > 0
