"""Retrieval on a 100k-passage SynthWiki world: BM25 vs dense (FAISS Flat, HNSW), in-process vs HTTP.

Compared side by side in one run:

- ``bm25`` (our vectorized batched search over bm25s' score matrix) and ``bm25s_native`` (bm25s' own
  ``BM25.retrieve``, numpy backend) on the full world;
- ``dense_flat`` and ``dense_hnsw`` (all-MiniLM-L6-v2, FAISS inner product);
- ``bm25_http``: the same BM25 index behind ``igpo-env serve retriever`` (a separate process, loopback) through
  :class:`RemoteRetriever`.

Reported: queries/s at batch 1 and batch 64 (wall clock, query encoding included for dense), index build time and
peak RSS of the build, recall@1/@3/@5 of the first-hop supporting passage of 1-hop and 2-hop test questions.

Dense encoding runs at ~40 passages/s on 2 CPU cores, so encoding the full 100k passages would take ~45 min. The dense
part therefore encodes a subset (``--dense-passages``, default 10k: every evaluated question's first-hop passage plus
evenly spaced others). Dense recall is measured on that subset and BM25 recall is measured on the same subset too
(``*_subset`` keys) for a like-for-like comparison. Dense *speed* is measured on a 100k-vector index made of the
subset's real vectors plus perturbed copies (search cost depends on the number and size of vectors, not their
content), so ``dense_*_qps_*`` are 100k-scale numbers.

Run: ``python -m benchmarks.retrieval [--quick] [--out DIR]``. Writes ``retrieval.json`` (keys ``bm25_qps_batch64``,
``dense_flat_qps_batch64``, ``bm25_recall_at5_1hop`` + details) and ``retrieval.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "retrieval"
SEED = 0
BATCH = 64
KS = (1, 3, 5)
HOPS = ("synthwiki-1hop", "synthwiki-2hop")
FULL = {"passages": 100_000, "dense_passages": 10_000, "eval_questions": 300, "batch1_queries": 200, "batches": 10}
QUICK = {"passages": 20_000, "dense_passages": 600, "eval_questions": 100, "batch1_queries": 50, "batches": 4}
ENCODE_DTYPE = "float32"
"""bfloat16 measured 4x slower than float32 on this AVX2-only CPU (no native bf16); float16 is never used on CPU."""
DENSE_SCALE_NOISE = 0.05
"""Std of the gaussian noise added to copies of real vectors when filling the speed-test index to full size."""
HNSW_M = 32
REPEATS = 3
DEFAULT_THREADS = 1
"""torch and FAISS threads. On this shared 2-core machine one thread was 2-3x faster than two for MiniLM query
encoding and for FAISS Flat search (OpenMP threads spin against other processes); pass --threads 2 on a quiet box."""
SERVER_START_TIMEOUT_S = 300.0
"""A server on a busy shared machine (importing torch, loading a model) can take minutes to answer /health."""
RSS_POLL_S = 0.02
TARGETS = {"bm25_qps_batch64": 2000, "dense_flat_qps_batch64": 500, "bm25_recall_at5_1hop": 0.9}

logger = logging.getLogger(__name__)


class PeakRSS:
    """Context manager sampling this process' RSS in a thread; ``peak_mb`` and ``delta_mb`` (over the start)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.start_mb = self.peak_mb = 0.0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
            time.sleep(RSS_POLL_S)

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.peak_mb = self._proc.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    @property
    def delta_mb(self) -> float:
        """Peak RSS above the RSS at entry."""
        return self.peak_mb - self.start_mb


def world_dir(passages: int) -> Path:
    """Build (once, cached) the SynthWiki world of ``passages`` passages."""
    from igpo_env.cache import cache_dir
    from igpo_env.data.synthwiki import build_world

    out = cache_dir("benchmarks", NAME) / f"synthwiki-{passages}-seed{SEED}"
    if not (out / "world.json").is_file():
        logger.info("building a %d-passage SynthWiki world in %s", passages, out)
        build_world(out, passages=passages, seed=SEED, verbose=False)
    return out


def qps(search: Callable[[list[str], int], Any], queries: list[str], batch: int, n_batches: int, k: int = 5) -> float:
    """Queries/s of ``search`` over ``n_batches`` batches of ``batch`` queries.

    Best of :data:`REPEATS` timed runs after one warm-up batch (the run least disturbed by other processes).
    """
    search(queries[:batch], k)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for b in range(n_batches):
            lo = (b * batch) % max(1, len(queries) - batch)
            search(queries[lo : lo + batch], k)
        best = min(best, time.perf_counter() - start)
    return batch * n_batches / best


def recall(search_ids: Callable[[list[str], int], list[list[str]]], questions: dict[str, list[Any]]) -> dict:
    """Recall@k of the first-hop supporting passage, per question kind."""
    out = {}
    for kind, exs in questions.items():
        ids = search_ids([e.question for e in exs], max(KS))
        for k in KS:
            hits = [e.supporting_doc_ids[0] in row[:k] for e, row in zip(exs, ids, strict=True)]
            out[f"at{k}_{kind.removeprefix('synthwiki-')}"] = round(float(np.mean(hits)), 4)
    return out


def ids_of(retriever: Any) -> Callable[[list[str], int], list[list[str]]]:
    """Adapter: ``search`` returning doc ids, in batches of :data:`BATCH`."""

    def search_ids(queries: list[str], k: int) -> list[list[str]]:
        out = []
        for i in range(0, len(queries), BATCH):
            out.extend([d.id for d in docs] for docs in retriever.search(queries[i : i + BATCH], k))
        return out

    return search_ids


def eval_questions(world: Path, n: int) -> dict[str, list[Any]]:
    """Up to ``n`` test (then dev) questions of each kind in :data:`HOPS`."""
    from igpo_env.data import load_qa

    pool = load_qa(world, split="test") + load_qa(world, split="dev")
    return {kind: [e for e in pool if e.data_source == kind][:n] for kind in HOPS}


def free_port() -> int:
    """Return a free loopback TCP port (bound and released: another process may take it, rarely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``igpo-env serve ARGS --port PORT`` in a separate process (as deployed); yield its base URL once healthy.

    Args:
        args: The ``igpo-env`` arguments, e.g. ``["serve", "retriever", "--index", DIR]``.
        port: The loopback port it binds (see :func:`free_port`).
        env: Environment of the server process (default: this one's).
    """
    import httpx

    cmd = [sys.executable, "-m", "igpo_env.cli", *args, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                if httpx.get(base + "/health").status_code == httpx.codes.OK:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"`igpo-env {' '.join(args[:2])}` did not start: {proc.stderr.read().decode()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def served(index_dir: Path) -> Iterator[str]:
    """Run ``igpo-env serve retriever`` on ``index_dir`` in a separate process (as deployed); yield its endpoint."""
    args = ["serve", "retriever", "--index", str(index_dir), "--max-batch", str(BATCH)]
    with serve_process(args, free_port()) as base:
        yield base + "/retrieve"


def bench_bm25(world: Path, cfg: dict, queries: list[str], questions: dict, results: dict) -> Any:
    """BM25: build, speed (ours vs bm25s native), recall, HTTP vs in-process."""
    import bm25s

    from igpo_env.retrieval import BM25Retriever, RemoteRetriever

    with PeakRSS() as rss:
        start = time.perf_counter()
        bm25 = BM25Retriever.from_docs(world / "corpus.jsonl")
        results["bm25_build_s"] = round(time.perf_counter() - start, 2)
    results["bm25_build_peak_rss_mb"] = round(rss.peak_mb, 1)
    results["bm25_build_rss_delta_mb"] = round(rss.delta_mb, 1)
    logger.info("bm25 built in %.1fs; timing", results["bm25_build_s"])
    results["bm25_qps_batch1"] = round(qps(bm25.search, queries, 1, cfg["batch1_queries"]), 1)
    results["bm25_qps_batch64"] = round(qps(bm25.search, queries, BATCH, cfg["batches"]), 1)

    def native(qs: list[str], k: int) -> Any:
        tokens = bm25s.tokenize(qs, stopwords="en", stemmer=bm25._stemmer, return_ids=False, show_progress=False)
        return bm25.model.retrieve(tokens, k=k, show_progress=False)

    results["bm25s_native_qps_batch1"] = round(qps(native, queries, 1, cfg["batch1_queries"] // 3), 1)
    results["bm25s_native_qps_batch64"] = round(qps(native, queries, BATCH, max(2, cfg["batches"] // 4)), 1)
    logger.info("bm25 recall")
    for key, value in recall(ids_of(bm25), questions).items():
        results[f"bm25_recall_{key}"] = value
    logger.info("bm25 over HTTP")
    with tempfile.TemporaryDirectory() as tmp, served(bm25.save(Path(tmp) / "bm25")) as url:
        with RemoteRetriever(url, max_batch=BATCH) as remote:
            results["bm25_http_qps_batch1"] = round(qps(remote.search, queries, 1, cfg["batch1_queries"]), 1)
            results["bm25_http_qps_batch64"] = round(qps(remote.search, queries, BATCH, cfg["batches"]), 1)
    return bm25


def subset_positions(ids: list[str], n: int, questions: dict) -> list[int]:
    """Corpus positions of ``n`` passages: every evaluated question's first-hop passage, then evenly spaced others."""
    needed = {e.supporting_doc_ids[0] for exs in questions.values() for e in exs}
    keep = {i for i, d in enumerate(ids) if d in needed}
    for i in range(0, len(ids), max(1, len(ids) // n)):
        if len(keep) >= n:
            break
        keep.add(i)
    return sorted(keep)


def dense_subset(world: Path, n: int, questions: dict) -> list[Any]:
    """``n`` passages: every evaluated question's first-hop passage, then evenly spaced others, in corpus order."""
    from igpo_env.data import load_corpus

    docs = list(load_corpus(world / "corpus.jsonl"))
    return [docs[i] for i in subset_positions([d.id for d in docs], n, questions)]


def bench_dense(world: Path, cfg: dict, queries: list[str], questions: dict, results: dict) -> None:
    """Dense: subset encoding + recall (Flat, HNSW, and BM25 on the same subset), then 100k-scale speed."""
    import faiss

    from igpo_env.retrieval import BM25Retriever, DenseRetriever
    from igpo_env.retrieval.encoder import load_encoder

    subset = dense_subset(world, cfg["dense_passages"], questions)
    encoder = load_encoder(dtype=ENCODE_DTYPE)
    results["dense_passages_encoded"] = len(subset)
    results["dense_encode_dtype"] = ENCODE_DTYPE
    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as rss:
        start = time.perf_counter()
        flat = DenseRetriever.build(subset, Path(tmp) / "flat", model=encoder, index_type="Flat", use_gpu=False)
        results["dense_flat_build_s_subset"] = round(time.perf_counter() - start, 2)
        results["dense_encode_passages_per_s"] = round(len(subset) / results["dense_flat_build_s_subset"], 1)
        vectors = np.load(Path(tmp) / "flat" / "embeddings.npy")
    results["dense_flat_build_peak_rss_mb_subset"] = round(rss.peak_mb, 1)
    logger.info("encoded %d passages in %.1fs", len(subset), results["dense_flat_build_s_subset"])
    start = time.perf_counter()
    hnsw = DenseRetriever.from_embeddings(vectors, subset, model=encoder, index_type=f"HNSW{HNSW_M}", use_gpu=False)
    results["dense_hnsw_index_s_subset"] = round(time.perf_counter() - start, 2)
    for name, retriever in (("dense_flat", flat), ("dense_hnsw", hnsw), ("bm25", BM25Retriever.from_docs(subset))):
        for key, value in recall(ids_of(retriever), questions).items():
            results[f"{name}_recall_{key}_subset"] = value

    logger.info("dense recall done; speed at full scale")
    # speed at full scale: real vectors + perturbed copies up to `passages` vectors
    n_full = cfg["passages"]
    rng = np.random.default_rng(SEED)
    reps = -(-n_full // len(vectors))
    full = np.concatenate([vectors] * reps)[:n_full]
    full[len(vectors) :] += rng.normal(0.0, DENSE_SCALE_NOISE, size=full[len(vectors) :].shape).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    fake_docs = [subset[i % len(subset)] for i in range(n_full)]
    results["dense_speed_index_vectors"] = n_full
    for name, index_type in (("dense_flat", "Flat"), ("dense_hnsw", f"HNSW{HNSW_M}")):
        with PeakRSS() as rss:
            start = time.perf_counter()
            r = DenseRetriever.from_embeddings(full, fake_docs, model=encoder, index_type=index_type, use_gpu=False)
            results[f"{name}_index_build_s"] = round(time.perf_counter() - start, 2)
        results[f"{name}_index_build_peak_rss_mb"] = round(rss.peak_mb, 1)
        logger.info("%s index of %d vectors built in %.1fs", name, n_full, results[f"{name}_index_build_s"])
        results[f"{name}_qps_batch1"] = round(qps(r.search, queries, 1, cfg["batch1_queries"]), 1)
        results[f"{name}_qps_batch64"] = round(qps(r.search, queries, BATCH, cfg["batches"]), 1)
        encoded = r.encode_queries(queries[: BATCH * 4])
        results[f"{name}_search_only_qps_batch64"] = round(
            qps(lambda qs, k, enc=encoded, r=r: r.search_vectors(enc[: len(qs)], k), queries, BATCH, cfg["batches"]),
            1,
        )
    start = time.perf_counter()
    for i in range(cfg["batches"]):
        encoder.encode(queries[i * BATCH : (i + 1) * BATCH], batch_size=BATCH, normalize_embeddings=True)
    results["dense_query_encode_qps_batch64"] = round(cfg["batches"] * BATCH / (time.perf_counter() - start), 1)
    results["faiss_distance_compute_blas_threshold"] = int(faiss.cvar.distance_compute_blas_threshold)


def write_markdown(results: dict, path: Path) -> None:
    """Write the side-by-side table."""
    r = results
    q = "queries/s"
    rows = [
        ("bm25 (ours, vectorized)", r.get("bm25_qps_batch1"), r.get("bm25_qps_batch64"), r.get("bm25_build_s")),
        ("bm25s native retrieve", r.get("bm25s_native_qps_batch1"), r.get("bm25s_native_qps_batch64"), "same index"),
        ("bm25 via HTTP server", r.get("bm25_http_qps_batch1"), r.get("bm25_http_qps_batch64"), "same index"),
        (
            "dense Flat (MiniLM)",
            r.get("dense_flat_qps_batch1"),
            r.get("dense_flat_qps_batch64"),
            f"{r.get('dense_flat_index_build_s')} (+ encoding)",
        ),
        (
            "dense HNSW32 (MiniLM)",
            r.get("dense_hnsw_qps_batch1"),
            r.get("dense_hnsw_qps_batch64"),
            f"{r.get('dense_hnsw_index_build_s')} (+ encoding)",
        ),
    ]
    lines = [
        f"# Retrieval benchmark ({r['passages']:,} SynthWiki passages, {r['machine']})",
        "",
        f"Run: `{r['command']}`; {r['timestamp']}; {r.get('threads')} torch/FAISS thread(s); best of {REPEATS} "
        f"timed runs. Load average at start: {r['load_average']} (the machine is shared with other jobs; numbers "
        "are lower bounds).",
        "",
        f"| backend | {q} batch 1 | {q} batch 64 | index build s |",
        "| --- | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"Dense {q} include query encoding (MiniLM, batch 64 encodes at {r.get('dense_query_encode_qps_batch64')} "
        f"{q}); FAISS search alone: Flat {r.get('dense_flat_search_only_qps_batch64')}, "
        f"HNSW {r.get('dense_hnsw_search_only_qps_batch64')} {q} at batch 64. The dense speed index holds "
        f"{r.get('dense_speed_index_vectors'):,} vectors: {r.get('dense_passages_encoded'):,} real passage vectors "
        f"plus perturbed copies: encoding ran at {r.get('dense_encode_passages_per_s')} passages/s "
        f"({r.get('dense_encode_dtype')}), so all {r['passages']:,} passages would take "
        f"~{r['passages'] / max(r.get('dense_encode_passages_per_s') or 1, 1e-9) / 60:.0f} min here.",
        "",
        f"Peak RSS: BM25 build {r.get('bm25_build_peak_rss_mb')} MB (+{r.get('bm25_build_rss_delta_mb')} MB); "
        f"Flat {r.get('dense_flat_index_build_peak_rss_mb')} MB, "
        f"HNSW {r.get('dense_hnsw_index_build_peak_rss_mb')} MB "
        "(process totals, encoder loaded).",
        "",
        "## Recall of the first-hop supporting passage",
        "",
        "| retriever | corpus | 1-hop @1 | @3 | @5 | 2-hop @1 | @3 | @5 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, suffix, corpus in (
        ("bm25", "", f"full ({r['passages']:,})"),
        ("bm25", "_subset", f"subset ({r.get('dense_passages_encoded'):,})"),
        ("dense_flat", "_subset", "subset"),
        ("dense_hnsw", "_subset", "subset"),
    ):
        cells = [r.get(f"{name}_recall_at{k}_{h}{suffix}") for h in ("1hop", "2hop") for k in KS]
        lines.append(f"| {name} | {corpus} | " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        f"Evaluated: {r['eval_questions_1hop']} 1-hop and {r['eval_questions_2hop']} 2-hop test/dev questions; "
        "the query is the full question. Targets: " + ", ".join(f"`{k}` >= {v}" for k, v in TARGETS.items()) + ".",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller world and subsets (~3 min).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Output directory.")
    parser.add_argument("--passages", type=int, default=None, help="World size (default 100k; quick 20k).")
    parser.add_argument("--dense-passages", type=int, default=None, help="Passages encoded for dense (default 10k).")
    parser.add_argument("--skip-dense", action="store_true", help="BM25 and HTTP only.")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch / FAISS threads (default 1).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("httpx", "bm25s", "faiss.loader", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = dict(QUICK if args.quick else FULL)
    if args.passages:
        cfg["passages"] = args.passages
    if args.dense_passages:
        cfg["dense_passages"] = args.dense_passages
    results: dict[str, Any] = {
        "passages": cfg["passages"],
        "quick": args.quick,
        "command": " ".join(["python -m benchmarks.retrieval", *(sys.argv[1:] if argv is None else argv)]),
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    results["threads"] = args.threads
    t0 = time.perf_counter()
    world = world_dir(cfg["passages"])
    questions = eval_questions(world, cfg["eval_questions"])
    for kind, exs in questions.items():
        results[f"eval_questions_{kind.removeprefix('synthwiki-')}"] = len(exs)
    from igpo_env.data import load_qa

    queries = [e.question for e in load_qa(world, split="test")]
    logger.info("BM25 on %d passages", cfg["passages"])
    bench_bm25(world, cfg, queries, questions, results)
    if not args.skip_dense:
        logger.info("dense: encoding %d passages", cfg["dense_passages"])
        bench_dense(world, cfg, queries, questions, results)
    results["targets"] = TARGETS
    results["targets_met"] = {k: results.get(k, 0) >= v for k, v in TARGETS.items()}
    results["total_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.skip_dense:
        write_markdown(results, args.out / f"{NAME}.md")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
