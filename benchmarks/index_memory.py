"""Dense-index memory at wiki scale: FAISS Flat vs IVF-PQ (plain, OPQ, HNSW quantizer) over 1M SynthWiki passages.

What an ``igpo-env index build --kind dense --faiss-index SPEC`` index costs to build, load and search, side by side
in one run, and what the same choices cost at Wikipedia scale (21M passages, 768-d vectors):

- **vectors**: MiniLM encodes ~30 passages/s on 2 CPU cores (1M passages would take ~9 h), so a subset of real
  passages is encoded (``--real-passages``: every evaluated question's first-hop passage, then evenly spaced others,
  at their true corpus positions) and the other positions are filled with synthetic vectors drawn from a Gaussian
  with the real vectors' mean and covariance (normalized). Index sizes, memory and build / search cost depend on the
  number and dimension of the vectors, not on their content; recall does depend on content: the Gaussian filler has
  the real vectors' anisotropy but no topical clusters, so recall is measured on a proxy (see the results note).
- **indexes**: built with :meth:`DenseRetriever.from_embeddings`, the code path ``index build`` takes after encoding
  (training on at most ``MAX_TRAIN_VECTORS`` evenly spaced vectors), and saved with ``faiss.write_index``.
- **memory**: each index is loaded in a fresh subprocess twice, read into RAM and memory-mapped (``mmap_flag``, what
  ``DenseRetriever.load(mmap=True)`` / ``serve retriever --mmap`` use), and ``RssAnon`` (the process' own memory)
  and ``RssFile`` (mapped file pages: page cache, shared and evictable) are read from ``/proc/self/status`` after the
  load and after searching every query. One more subprocess loads a whole mapped IVF-PQ retriever directory, to show
  the in-RAM passage store next to the index.
- **recall@5 vs Flat**: the fraction of exact (Flat) top-5 neighbours each index returns in its top 5, and the
  task recall@5 of the first-hop supporting passage of 1-hop and 2-hop questions.
- **arithmetic**: bytes per index from the FAISS layouts, checked against the measured files, then evaluated at
  21M x 768.

Run: ``python -m benchmarks.index_memory [--quick] [--out DIR]``; writes ``index_memory.json`` and
``index_memory.md``. The 1M run (default) takes ~20 min on 2 busy cores; ``--quick`` (50k passages) under 3 min.
Linux only (reads ``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import run_info, write_results
from benchmarks.retrieval import KS, PeakRSS, eval_questions, subset_positions, world_dir

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "index_memory"
SEED = 0
BATCH = 64
TOP_K = 5
FULL = {
    "passages": 1_000_000,
    "real_passages": 2048,
    "eval_questions": 250,
    "indexes": ("Flat", "IVF4096,PQ64", "OPQ64,IVF4096,PQ64", "IVF4096_HNSW32,PQ64"),
}
QUICK = {
    "passages": 50_000,
    "real_passages": 512,
    "eval_questions": 60,
    "indexes": ("Flat", "IVF256,PQ16", "OPQ16_64,IVF256,PQ16", "IVF256_HNSW32,PQ16"),
}
NPROBE = 16
"""IVF lists visited per query (``DenseRetriever``'s default)."""
FILL_CHUNK = 65_536
COV_RIDGE = 1e-6
"""Added to the covariance diagonal before its Cholesky factorization."""
DEFAULT_THREADS = 1
"""FAISS / torch threads (the machine is shared; one thread is the fair comparison)."""
WIKI = {"passages": 21_000_000, "dim": 768, "nlist": 65_536, "m": 64, "hnsw_m": 32}
"""The Wikipedia-scale setting of the arithmetic (DPR's 21M 100-word passages, a 768-d encoder such as e5-base)."""
ID_BYTES = 8
"""An IVF list stores a 64-bit id next to each code."""
FLOAT_BYTES = 4
PQ_BITS = 8
"""Bits per PQ code (faiss' default: 256 centroids per sub-quantizer)."""

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- arithmetic


_SPEC_PATTERNS = {
    "opq": re.compile(r"OPQ(\d+)(?:_(\d+))?"),
    "nlist": re.compile(r"IVF(\d+)"),
    "pq": re.compile(r"(?<!O)PQ(\d+)(?:x(\d+))?"),
    "hnsw": re.compile(r"HNSW(\d+)"),
}


def _spec(index_type: str, dim: int) -> dict[str, int]:
    """Parse a factory string: ``nlist``, PQ ``m`` and ``nbits``, ``hnsw_m``, ``opq`` and the dim after OPQ."""
    found = {key: pattern.search(index_type) for key, pattern in _SPEC_PATTERNS.items()}
    opq, pq = found["opq"], found["pq"]
    return {
        "nlist": int(found["nlist"].group(1)) if found["nlist"] else 0,
        "m": int(pq.group(1)) if pq else 0,
        "nbits": int(pq.group(2) or PQ_BITS) if pq else 0,
        "hnsw_m": int(found["hnsw"].group(1)) if found["hnsw"] else 0,
        "opq": 1 if opq else 0,
        "dim": int(opq.group(2)) if opq and opq.group(2) else dim,
    }


def expected_bytes(index_type: str, n: int, dim: int) -> int:
    """Bytes of a FAISS index file from its layout (the in-RAM size once loaded, to a few percent).

    ``Flat``: ``n x dim x 4``. ``HNSW{M}`` (flat storage): vectors plus ~``2M`` int32 links per vector on level 0
    (upper levels add ~1/M of that). ``[OPQ{m}[_{d}],]IVF{nlist}[_HNSW{M}],PQ{m}[x{bits}]``: ``m x bits / 8`` code
    bytes + an 8-byte id per vector, the ``nlist x d`` float centroids (plus their HNSW links), the PQ codebook
    ``2^bits x d`` floats, and for ``OPQ`` a ``dim x d`` rotation (``d`` = the dim after OPQ, ``dim`` by default).

    Example:
        >>> expected_bytes("Flat", 21_000_000, 768) / 1e9
        64.512
        >>> round(expected_bytes("IVF65536,PQ64", 21_000_000, 768) / 1e9, 2)
        1.71
    """
    s = _spec(index_type, dim)
    if s["nlist"] == 0:
        links = 2 * s["hnsw_m"] * 4 * (1 + 1 / s["hnsw_m"]) if s["hnsw_m"] else 0
        return int(n * (dim * FLOAT_BYTES + links))
    d = s["dim"]
    code_bytes = -(-s["m"] * s["nbits"] // 8)
    total = n * (code_bytes + ID_BYTES) + s["nlist"] * d * FLOAT_BYTES + 2 ** s["nbits"] * d * FLOAT_BYTES
    if s["hnsw_m"]:
        total += s["nlist"] * 2 * s["hnsw_m"] * 4
    if s["opq"]:
        total += dim * d * FLOAT_BYTES
    return int(total)


def wiki_specs(measured: list[str]) -> list[str]:
    """Rewrite the measured index types for 21M passages (:data:`WIKI`'s ``nlist`` and ``m``); add ``HNSW32``.

    Example:
        >>> wiki_specs(["Flat", "OPQ16_64,IVF256,PQ16"])
        ['Flat', 'OPQ64,IVF65536,PQ64', 'HNSW32']
    """
    out = []
    for index_type in [*measured, f"HNSW{WIKI['hnsw_m']}"]:
        spec = _SPEC_PATTERNS["nlist"].sub(f"IVF{WIKI['nlist']}", index_type)
        spec = _SPEC_PATTERNS["opq"].sub(f"OPQ{WIKI['m']}", spec)
        spec = _SPEC_PATTERNS["pq"].sub(f"PQ{WIKI['m']}", spec)
        if spec not in out:
            out.append(spec)
    return out


# ---------------------------------------------------------------------------------------------------- measuring


def proc_memory_mb() -> dict[str, float]:
    """``VmRSS``, ``RssAnon``, ``RssFile`` and ``VmHWM`` of this process in MiB (Linux)."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


class _StubEncoder:
    """Stands in for the query encoder when only stored vectors are searched (``DenseRetriever.load`` checks dim)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def get_embedding_dimension(self) -> int:
        return self.dim


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: load one index (read or mapped), search all queries, report memory and results."""
    import faiss

    from igpo_env.retrieval.dense import DenseRetriever, mmap_flag, set_search_params

    faiss.omp_set_num_threads(task["threads"])
    queries = np.load(task["queries"])
    base = proc_memory_mb()
    out: dict[str, Any] = {"base": base}
    start = time.perf_counter()
    if task.get("retriever_dir"):  # a whole retriever directory: passage store + mapped index
        retriever = DenseRetriever.load(
            task["retriever_dir"], model=_StubEncoder(queries.shape[1]), use_gpu=False, mmap=True, nprobe=NPROBE
        )
        out["load_s"] = round(time.perf_counter() - start, 2)
        out["loaded"] = proc_memory_mb()
        retriever.search_vectors(queries, TOP_K)
        out["searched"] = proc_memory_mb()
        return out
    index = faiss.read_index(task["index"], mmap_flag(faiss) if task["mmap"] else 0)
    set_search_params(index, task["index_type"], nprobe=NPROBE)
    out["load_s"] = round(time.perf_counter() - start, 2)
    out["loaded"] = proc_memory_mb()
    ids = np.zeros((len(queries), TOP_K), dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, len(queries), BATCH):
        ids[lo : lo + BATCH] = index.search(queries[lo : lo + BATCH], TOP_K)[1]
    out["search_s"] = round(time.perf_counter() - start, 3)
    out["queries_per_s"] = round(len(queries) / out["search_s"], 1)
    out["searched"] = proc_memory_mb()
    np.save(task["ids_out"], ids)
    return out


def run_measure(task: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`measure` in a fresh Python process (clean memory counters); return its result."""
    cmd = [sys.executable, "-m", "benchmarks.index_memory", "--measure", json.dumps(task)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- vectors


def encode_real(store: Any, positions: list[int], work: Path, threads: int) -> tuple[np.ndarray, float]:
    """MiniLM vectors of the passages at ``positions`` and the seconds encoding took (both cached in ``work``)."""
    path = work / f"real-{len(store)}-{len(positions)}-seed{SEED}.npy"
    timing = path.with_suffix(".json")
    if path.is_file() and timing.is_file():
        return np.load(path), json.loads(timing.read_text())["encode_s"]
    import torch

    from igpo_env.retrieval.dense import load_encoder

    torch.set_num_threads(threads)
    encoder = load_encoder()
    texts = [store.contents(i) for i in positions]
    start = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    seconds = round(time.perf_counter() - start, 1)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(path, vectors)
    timing.write_text(json.dumps({"encode_s": seconds}))
    return vectors, seconds


def fill_vectors(real: np.ndarray, positions: list[int], n: int, path: Path) -> None:
    """Write ``n`` normalized vectors to ``path`` (.npy): ``real`` at ``positions``, Gaussian filler elsewhere."""
    rng = np.random.default_rng(SEED)
    dim = real.shape[1]
    mean = real.mean(axis=0)
    chol = np.linalg.cholesky(np.cov(real, rowvar=False) + COV_RIDGE * np.eye(dim))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for lo in range(0, n, FILL_CHUNK):
        hi = min(lo + FILL_CHUNK, n)
        chunk = rng.standard_normal((hi - lo, dim)) @ chol.T + mean
        out[lo:hi] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    out[positions] = real
    out.flush()
    del out


# ---------------------------------------------------------------------------------------------------- benchmark


def _recalls(ids: np.ndarray, flat_ids: np.ndarray, doc_ids: list[str], questions: dict, n_q: list[int]) -> dict:
    overlap = [len(set(a) & set(b)) / TOP_K for a, b in zip(ids, flat_ids, strict=True)]
    out = {"recall_at5_vs_flat": round(float(np.mean(overlap)), 4)}
    offset = 0
    for (kind, exs), n in zip(questions.items(), n_q, strict=True):
        rows = ids[offset : offset + n]
        offset += n
        for k in KS:
            found = [{doc_ids[i] for i in row[:k] if i >= 0} for row in rows]
            hits = [e.supporting_doc_ids[0] in f for e, f in zip(exs, found, strict=True)]
            out[f"task_recall_at{k}_{kind.removeprefix('synthwiki-')}"] = round(float(np.mean(hits)), 4)
    return out


def run_benchmark(
    cfg: dict[str, Any], work: Path, threads: int, keep: bool, checkpoint: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Encode, fill, build each index, measure each read and mapped; return the results dict.

    ``checkpoint(results)`` is called after each index with the results so far (``"complete": False``), so a long
    run that is stopped still leaves its finished rows.
    """
    import faiss

    from igpo_env.retrieval.base import DocStore, iter_docs
    from igpo_env.retrieval.dense import DenseRetriever, load_encoder

    faiss.omp_set_num_threads(threads)
    work.mkdir(parents=True, exist_ok=True)
    world = world_dir(cfg["passages"])
    questions = eval_questions(world, cfg["eval_questions"])
    t0 = time.perf_counter()
    store = DocStore.from_docs(iter_docs(world / "corpus.jsonl"))
    results: dict[str, Any] = {"docstore_load_s": round(time.perf_counter() - t0, 1)}
    positions = subset_positions(store.ids, cfg["real_passages"], questions)
    real, results["real_encode_s"] = encode_real(store, positions, work, threads)
    encoder = load_encoder()
    query_texts = [e.question for exs in questions.values() for e in exs]
    queries = encoder.encode(query_texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    np.save(work / "queries.npy", np.ascontiguousarray(queries, dtype=np.float32))
    vectors_path = work / f"vectors-{cfg['passages']}.npy"
    t0 = time.perf_counter()
    fill_vectors(real, positions, cfg["passages"], vectors_path)
    results["fill_s"] = round(time.perf_counter() - t0, 1)
    n, dim = cfg["passages"], real.shape[1]
    logger.info("%d vectors (%d real) in %s", n, len(positions), vectors_path)
    indexes: dict[str, dict[str, Any]] = {}
    results.update(
        {
            "passages": n,
            "dim": dim,
            "real_passages": len(positions),
            "eval_questions": {k.removeprefix("synthwiki-"): len(v) for k, v in questions.items()},
            "nprobe": NPROBE,
            "complete": False,
            "indexes": indexes,
            "wiki_scale": {
                **WIKI,
                "bytes": {
                    spec: expected_bytes(spec, WIKI["passages"], WIKI["dim"]) for spec in wiki_specs(cfg["indexes"])
                },
            },
        }
    )
    flat_ids = None
    served_dir = None
    for index_type in cfg["indexes"]:
        entry: dict[str, Any] = {}
        directory = work / index_type.replace(",", "_")
        with PeakRSS() as rss:
            start = time.perf_counter()
            retriever = DenseRetriever.from_embeddings(
                vectors_path, store, model=encoder, index_type=index_type, use_gpu=False
            )
            entry["build_s"] = round(time.perf_counter() - start, 1)
        entry["build_rss_delta_mb"] = round(rss.delta_mb, 1)
        if served_dir is None and "PQ" in index_type:
            served_dir = retriever.save(directory)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            faiss.write_index(retriever.index, str(directory / "index.faiss"))
        del retriever
        size = (directory / "index.faiss").stat().st_size
        entry["file_mb"] = round(size / 2**20, 1)
        entry["bytes_per_vector"] = round(size / n, 1)
        entry["expected_file_mb"] = round(expected_bytes(index_type, n, dim) / 2**20, 1)
        logger.info("%s built in %.1fs: %.1f MiB", index_type, entry["build_s"], entry["file_mb"])
        read_ids = None
        for mode in ("read", "mmap"):
            task = {
                "index": str(directory / "index.faiss"),
                "index_type": index_type,
                "mmap": mode == "mmap",
                "queries": str(work / "queries.npy"),
                "ids_out": str(work / "ids.npy"),
                "threads": threads,
            }
            m = run_measure(task)
            ids = np.load(work / "ids.npy")
            entry[mode] = {
                "load_s": m["load_s"],
                "queries_per_s_batch64": m["queries_per_s"],
                "loaded_anon_mb": round(m["loaded"]["RssAnon"] - m["base"]["RssAnon"], 1),
                "loaded_file_mb": round(m["loaded"]["RssFile"] - m["base"]["RssFile"], 1),
                "searched_anon_mb": round(m["searched"]["RssAnon"] - m["base"]["RssAnon"], 1),
                "searched_file_mb": round(m["searched"]["RssFile"] - m["base"]["RssFile"], 1),
            }
            if mode == "read":
                flat_ids = ids if flat_ids is None else flat_ids
                read_ids = ids
                entry.update(_recalls(ids, flat_ids, store.ids, questions, [len(v) for v in questions.values()]))
            else:
                entry["mmap_same_results"] = bool(np.array_equal(ids, read_ids))
        indexes[index_type] = entry
        if index_type == "Flat" and not keep:
            shutil.rmtree(directory)  # the largest; its neighbours are kept in flat_ids
        if checkpoint is not None:
            checkpoint(results)
    if served_dir is not None:
        m = run_measure({"retriever_dir": str(served_dir), "queries": str(work / "queries.npy"), "threads": threads})
        results["served_retriever"] = {
            "index_type": json.loads((served_dir / "meta.json").read_text())["index_type"],
            "load_s": m["load_s"],
            "anon_mb": round(m["searched"]["RssAnon"] - m["base"]["RssAnon"], 1),
            "file_mb": round(m["searched"]["RssFile"] - m["base"]["RssFile"], 1),
            "index_file_mb": indexes[json.loads((served_dir / "meta.json").read_text())["index_type"]]["file_mb"],
        }
    if not keep:
        for index_type in cfg["indexes"]:
            shutil.rmtree(work / index_type.replace(",", "_"), ignore_errors=True)
        vectors_path.unlink(missing_ok=True)
    results["complete"] = True
    return results


def write_markdown(r: dict[str, Any], path: Path) -> None:
    """Write the results tables."""
    encode_rate = r["real_passages"] / max(r["real_encode_s"], 1e-9)
    lines = [
        f"# Dense-index memory: {r['passages']:,} SynthWiki passages x {r['dim']}-d MiniLM vectors ({r['machine']})",
        "",
        f"Run: `{r['command']}`; {r['timestamp']}; {r['threads']} FAISS thread; nprobe {r['nprobe']}; load average "
        f"at start {r['load_average']} (shared machine: times are noisy, memory is not).",
        "",
        f"Vectors: {r['real_passages']:,} real MiniLM passage vectors at their corpus positions (encoding took "
        f"{r['real_encode_s']} s, ~{encode_rate:.0f} passages/s: all {r['passages']:,} would take "
        f"~{r['passages'] / encode_rate / 3600:.1f} h) "
        "plus Gaussian filler with their mean and covariance. Memory columns are deltas over the process before the "
        "load, in MiB: `anon` = the process' own memory (RssAnon), `file` = mapped index pages (RssFile, page cache: "
        "shared by every process mapping the file, evictable).",
        "",
        "| index | file MiB | bytes/vector | formula MiB | build s | read: anon MiB | mmap: anon after load / search "
        "| mmap: file after search | q/s batch 64 (read / mmap) | recall@5 vs Flat | 1-hop task @5 | 2-hop task @5 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, e in r["indexes"].items():
        rd, mm = e["read"], e["mmap"]
        lines.append(
            f"| {name} | {e['file_mb']} | {e['bytes_per_vector']} | {e['expected_file_mb']} | {e['build_s']} | "
            f"{rd['searched_anon_mb']} | {mm['loaded_anon_mb']} / {mm['searched_anon_mb']} | {mm['searched_file_mb']} "
            f"| {rd['queries_per_s_batch64']} / {mm['queries_per_s_batch64']} | {e['recall_at5_vs_flat']} | "
            f"{e.get('task_recall_at5_1hop')} | {e.get('task_recall_at5_2hop')} |"
        )
    same = all(e.get("mmap_same_results") for e in r["indexes"].values())
    lines += ["", f"Mapped and read indexes returned {'identical' if same else 'DIFFERENT'} neighbours."]
    if not r.get("complete", True):
        lines += ["", "**Partial run**: the rows above are the indexes finished so far."]
    if "served_retriever" in r:
        s = r["served_retriever"]
        lines += [
            "",
            f"A whole `DenseRetriever.load(dir, mmap=True)` of the {s['index_type']} directory (what `serve retriever "
            f"--mmap` holds): {s['anon_mb']} MiB anonymous (the passage store: titles and texts as Python strings) "
            f"+ {s['file_mb']} MiB of mapped index pages touched (index file {s['index_file_mb']} MiB); load "
            f"{s['load_s']} s.",
        ]
    w = r["wiki_scale"]
    lines += [
        "",
        f"## At Wikipedia scale: {w['passages']:,} passages x {w['dim']}-d",
        "",
        "Bytes from the FAISS layouts (`expected_bytes`; the `formula MiB` column above checks it against the "
        "measured files): Flat = n x d x 4; IVF-PQ = n x (m + 8) + nlist x d x 4 + 256 x d x 4 (+ d x d x 4 for "
        "OPQ, + nlist x 2M x 4 for an HNSW quantizer); HNSW{M} = n x (d x 4 + ~2M x 4).",
        "",
        "| index | GB | GiB | vs Flat |",
        "| --- | ---: | ---: | ---: |",
    ]
    flat = w["bytes"]["Flat"]
    for spec, b in w["bytes"].items():
        lines.append(f"| {spec} | {b / 1e9:.2f} | {b / 2**30:.2f} | {b / flat:.3f}x |")
    lines += [
        "",
        "Recall note: the filler has the real vectors' mean and covariance but no topical clusters, so recall on "
        "a corpus of real passages can differ either way. PQ codes (one byte per dim / m dimensions) and nprobe "
        f"{r['nprobe']} lose neighbours here: raise nprobe, spend more PQ bytes, or re-rank the PQ "
        "candidates with the exact vectors (memory-mapped) where recall matters more than RAM.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--measure``, one measurement in this process) and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k passages, small indexes (~3 min).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Output directory.")
    parser.add_argument("--passages", type=int, default=None, help="World size (default 1M; quick 50k).")
    parser.add_argument("--real-passages", type=int, default=None, help="Passages encoded (default 2048; quick 512).")
    parser.add_argument("--index", action="append", default=None, help="A faiss.index_factory string (repeatable).")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="FAISS / torch threads (default 1).")
    parser.add_argument("--work", type=Path, default=None, help="Scratch directory (default: the igpo-env cache).")
    parser.add_argument("--keep", action="store_true", help="Keep the built indexes and vectors in --work.")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("httpx", "faiss.loader", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("passages", "real_passages"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    if args.index:
        cfg["indexes"] = tuple(args.index)
    if "Flat" not in cfg["indexes"]:
        cfg["indexes"] = ("Flat", *cfg["indexes"])  # the exact reference comes first
    elif cfg["indexes"][0] != "Flat":
        cfg["indexes"] = ("Flat", *[t for t in cfg["indexes"] if t != "Flat"])
    from igpo_env.cache import cache_dir

    work = args.work or cache_dir("benchmarks", NAME)
    header = {
        **run_info(NAME, argv),
        "threads": args.threads,
        "quick": args.quick,
    }
    t0 = time.perf_counter()

    def checkpoint(partial: dict[str, Any]) -> None:
        write_results(
            args.out, NAME, {**header, **partial, "total_s": round(time.perf_counter() - t0, 1)}, write_markdown
        )

    results = {**header, **run_benchmark(cfg, work, args.threads, args.keep, checkpoint)}
    results["total_s"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, NAME, results, write_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
