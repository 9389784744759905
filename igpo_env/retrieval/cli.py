"""``igpo-env index build`` and ``igpo-env serve retriever``.

Examples::

    igpo-env index build --corpus corpus.jsonl --kind bm25 --out idx/bm25
    igpo-env index build --corpus corpus.jsonl --kind dense --faiss-index HNSW32 --out idx/dense
    igpo-env serve retriever --index idx/bm25 --port 8000   # POST http://127.0.0.1:8000/retrieve
    igpo-env index build --corpus wiki.jsonl --kind dense --faiss-index IVF4096,PQ64 --out idx/ivfpq
    igpo-env serve retriever --index idx/ivfpq --mmap --nprobe 32  # index file mapped, not read into RAM
"""

from __future__ import annotations

import argparse
import time

__all__ = ["index_build_add_arguments", "index_build_run", "serve_add_arguments", "serve_run"]

_NONE = "none"


def index_build_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``index build`` arguments."""
    parser.add_argument("--corpus", required=True, help="FlashRAG corpus jsonl ({id, contents='Title\\ntext'}).")
    parser.add_argument("--kind", choices=("bm25", "dense"), default="bm25", help="Index kind (default: bm25).")
    parser.add_argument("--out", required=True, help="Output index directory (must not exist unless --overwrite).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing index at --out.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    bm25 = parser.add_argument_group("bm25")
    bm25.add_argument("--stemmer", default="english", help="PyStemmer language, or 'none' (default: english).")
    bm25.add_argument("--stopwords", default="en", help="Stopword list 'en' or 'none' (default: en).")
    dense = parser.add_argument_group("dense")
    dense.add_argument(
        "--faiss-index",
        default="Flat",
        help="faiss.index_factory string: Flat, IVF{nlist},Flat, HNSW{M}, IVF{nlist},PQ{m}, OPQ{m},IVF{nlist},PQ{m}, "
        "IVF{nlist}_HNSW{M},PQ{m} (default: Flat). Memory per passage: Flat 4 x dim bytes, PQ{m} m + 8 bytes.",
    )
    dense.add_argument(
        "--model", default=None, help="Local sentence-transformers dir (default: packaged all-MiniLM-L6-v2)."
    )
    dense.add_argument("--query-prefix", default="", help="Prefix for queries (e5: 'query: ').")
    dense.add_argument("--passage-prefix", default="", help="Prefix for passages (e5: 'passage: ').")
    dense.add_argument("--device", default="cpu", help="Encoding device (default: cpu).")
    dense.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="Encoding dtype (fp16: GPU only).",
    )
    dense.add_argument("--batch-size", type=int, default=64, help="Encoding batch size (default: 64).")


def index_build_run(args: argparse.Namespace) -> int:
    """Build the index; print where it went and how long it took."""
    from igpo_env.retrieval.index import build_index

    if args.kind == "bm25":
        options = {
            "stemmer": None if args.stemmer.lower() == _NONE else args.stemmer,
            "stopwords": None if args.stopwords.lower() == _NONE else args.stopwords,
        }
    else:
        options = {
            "index_type": args.faiss_index,
            "model": args.model,
            "query_prefix": args.query_prefix,
            "passage_prefix": args.passage_prefix,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
        }
    start = time.perf_counter()
    out = build_index(args.corpus, args.out, args.kind, overwrite=args.overwrite, verbose=not args.quiet, **options)
    print(f"built {args.kind} index of {args.corpus} in {time.perf_counter() - start:.1f}s -> {out}")
    return 0


def serve_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve retriever`` arguments (defaults resolved in :func:`serve_run`, so --help stays light)."""
    parser.add_argument("--index", required=True, help="Index directory (or a corpus jsonl, indexed with BM25).")
    parser.add_argument("--host", default=None, help="Interface to bind (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="Port (default: 8000).")
    parser.add_argument("--default-topk", type=int, default=None, help="topk when a request omits it (default: 3).")
    parser.add_argument("--max-topk", type=int, default=None, help="Largest topk accepted (default: 100).")
    parser.add_argument("--max-batch", type=int, default=None, help="Most queries per request (default: 512).")
    parser.add_argument("--max-query-chars", type=int, default=None, help="Longest query accepted (default: 4096).")
    parser.add_argument("--no-gpu", action="store_true", help="Keep a dense FAISS index on CPU.")
    parser.add_argument(
        "--mmap",
        action="store_true",
        help="Memory-map the index files (dense: faiss IO_FLAG_MMAP_IFC; bm25: score arrays) instead of reading "
        "them into RAM: the page cache holds them, shared by processes serving the same index.",
    )
    parser.add_argument("--nprobe", type=int, default=None, help="Dense IVF: lists visited per query (default: 16).")
    parser.add_argument("--ef-search", type=int, default=None, help="Dense HNSW: search depth (default: 64).")


def serve_run(args: argparse.Namespace) -> int:
    """Load the index and serve it until interrupted."""
    from pathlib import Path

    from igpo_env.retrieval import server
    from igpo_env.retrieval.base import read_meta
    from igpo_env.retrieval.index import get_retriever

    def pick(value, default):
        return default if value is None else value

    limits = {
        "default_topk": pick(args.default_topk, server.DEFAULT_TOPK),
        "max_topk": pick(args.max_topk, server.DEFAULT_MAX_TOPK),
        "max_batch": pick(args.max_batch, server.DEFAULT_MAX_BATCH),
        "max_query_chars": pick(args.max_query_chars, server.DEFAULT_MAX_QUERY_CHARS),
    }
    host, port = pick(args.host, server.DEFAULT_HOST), pick(args.port, server.DEFAULT_PORT)
    path = Path(args.index)
    options: dict[str, object] = {"mmap": True} if args.mmap else {}
    dense = path.is_dir() and read_meta(path).get("kind") == "dense"
    if dense and args.no_gpu:
        options["use_gpu"] = False
    for name in ("nprobe", "ef_search"):
        value = getattr(args, name)
        if value is not None:
            if not dense:
                raise ValueError(f"--{name.replace('_', '-')} applies to a dense index; {path} is not one")
            options[name] = value
    retriever = get_retriever(path, **options)
    server.create_app(retriever, **limits)  # validate the limits before announcing the server
    print(f"serving {retriever!r} on http://{host}:{port}/retrieve (Ctrl-C to stop)")
    server.serve(retriever, host=host, port=port, **limits)
    return 0
