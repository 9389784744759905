"""Build, load and cache retrieval indexes; :func:`get_retriever` turns any retriever spec into a :class:`Retriever`.

Index directories are written atomically: the index is built in a temporary sibling directory that is renamed into
place when complete, so a crash never leaves a half-written index and concurrent processes building the same cached
index both end up with one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from igpo_env._validation import check_choice
from igpo_env.cache import cache_dir
from igpo_env.error import IndexNotFoundError
from igpo_env.retrieval.base import META_FILE, Retriever, RetrieverSpec, read_meta

__all__ = ["INDEX_KINDS", "build_index", "load_index", "get_retriever", "cached_index_dir"]

logger = logging.getLogger(__name__)

INDEX_KINDS = ("bm25", "dense")
DEFAULT_KIND = "bm25"
_URL_PREFIXES = ("http://", "https://")
_CACHE_KEY_CHARS = 16
_CACHE_BUILD_VERSION = 2
"""Part of the cache key: bumped when an index of the same corpus would now be built differently (2: BM25 term ids
in sorted order, the same in every process)."""


def _build_into(corpus: Any, directory: Path, kind: str, verbose: bool, options: dict[str, Any]) -> None:
    if kind == "bm25":
        from igpo_env.retrieval.bm25 import BM25Retriever

        BM25Retriever.from_docs(corpus, verbose=verbose, **options).save(directory)
    else:
        from igpo_env.retrieval.dense import DenseRetriever

        DenseRetriever.build(corpus, directory, verbose=verbose, **options)


def _install(tmp: Path, out: Path) -> bool:
    """Rename the finished ``tmp`` to ``out``; False (and ``tmp`` removed) if another process got there first."""
    try:
        os.rename(tmp, out)
        return True
    except OSError:
        if (out / META_FILE).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise


def build_index(
    corpus: str | os.PathLike[str] | Iterable[Any],
    out_dir: str | os.PathLike[str],
    kind: str = DEFAULT_KIND,
    *,
    overwrite: bool = False,
    verbose: bool = False,
    **options: Any,
) -> Path:
    """Build an index of ``kind`` over ``corpus`` and write it to ``out_dir`` atomically.

    Args:
        corpus: A FlashRAG corpus jsonl path or an iterable of :class:`~igpo_env.types.Doc` / corpus records.
        out_dir: Target directory; must not exist yet (or be empty) unless ``overwrite``.
        kind: ``"bm25"`` or ``"dense"``.
        overwrite: Replace an existing index at ``out_dir``.
        verbose: Show tqdm progress.
        **options: Passed to :meth:`BM25Retriever.from_docs` or :meth:`DenseRetriever.build` (e.g. ``stemmer``,
            ``model``, ``index_type``).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: if ``out_dir`` holds something and ``overwrite`` is False.
        FileNotFoundError / DataFormatError: for a missing or malformed corpus.

    Example:
        >>> import tempfile
        >>> from igpo_env.data.toy import toy_corpus
        >>> d = build_index(toy_corpus(), tempfile.mkdtemp() + "/idx")
        >>> load_index(d).search(["Tessa Brun"], 1)[0][0].title
        'Tessa Brun'
    """
    check_choice("kind", kind, INDEX_KINDS)
    out = Path(out_dir)
    if isinstance(corpus, (str, os.PathLike)) and not Path(corpus).is_file():
        raise FileNotFoundError(f"corpus file {str(corpus)!r} does not exist (expected a FlashRAG .jsonl corpus)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{str(out)!r} already exists and is not empty; pass overwrite=True (--overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build_into(corpus, tmp, kind, verbose, options)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s index to %s", kind, out)
    return out


def load_index(directory: str | os.PathLike[str], **options: Any) -> Retriever:
    """Load the index in ``directory``; its kind is read from ``meta.json``.

    Args:
        directory: An index directory written by :func:`build_index` (or ``igpo-env index build``).
        **options: Passed to the backend's ``load`` (e.g. ``mmap=True`` to map the index files instead of reading
            them into RAM, ``use_gpu=False`` for dense).

    Raises:
        IndexNotFoundError: if the directory or a file in it is missing.
        DataFormatError: if it is corrupt or not an igpo-env index.

    Example:
        >>> load_index("/nonexistent/index")
        Traceback (most recent call last):
        ...
        igpo_env.error.IndexNotFoundError: index directory '/nonexistent/index' does not exist; build one with \
`igpo-env index build`
    """
    meta = read_meta(directory)
    kind = meta.get("kind")
    if kind == "bm25":
        from igpo_env.retrieval.bm25 import BM25Retriever

        return BM25Retriever.load(directory, **options)
    if kind == "dense":
        from igpo_env.retrieval.dense import DenseRetriever

        return DenseRetriever.load(directory, **options)
    raise IndexNotFoundError(f"{directory}: unknown index kind {kind!r} (known: {INDEX_KINDS})")


def cached_index_dir(corpus_path: str | os.PathLike[str], kind: str = DEFAULT_KIND, **options: Any) -> Path:
    """Cache directory of the ``kind`` index of a corpus file, keyed by its path, size, mtime, kind and options.

    Example:
        >>> import os, tempfile
        >>> os.environ["IGPO_ENV_CACHE"] = tempfile.mkdtemp()
        >>> p = tempfile.mktemp(suffix=".jsonl"); _ = open(p, "w").write("{}")
        >>> cached_index_dir(p).parent.name, cached_index_dir(p) == cached_index_dir(p, "dense")
        ('indexes', False)
    """
    check_choice("kind", kind, INDEX_KINDS)
    path = Path(corpus_path).resolve()
    st = path.stat()
    key_src = json.dumps(
        {
            "path": str(path),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "kind": kind,
            "options": options,
            "build": _CACHE_BUILD_VERSION,
        },
        sort_keys=True,
        default=repr,
    )
    key = hashlib.sha256(key_src.encode("utf-8")).hexdigest()[:_CACHE_KEY_CHARS]
    return cache_dir("indexes") / f"{path.stem}-{kind}-{key}"


def get_retriever(spec: RetrieverSpec, kind: str | None = None, *, verbose: bool = False, **options: Any) -> Retriever:
    """Turn a retriever spec into a :class:`Retriever`.

    Args:
        spec: One of
            - a :class:`Retriever` object: returned as is;
            - an ``http(s)://`` URL of a ``/retrieve`` endpoint: a :class:`RemoteRetriever` (``options`` go to it);
            - an index directory: loaded, its kind read from ``meta.json``;
            - a corpus ``.jsonl`` path: indexed on first use and cached under ``cache_dir("indexes", ...)``, keyed by
              the file's path, size and mtime, ``kind`` and ``options`` (which go to the index builder).
        kind: ``"bm25"`` (default for corpora) or ``"dense"``; for a directory it must match the index if given.
        verbose: Show progress while building.
        **options: Backend options (see above).

    Raises:
        TypeError: for an unsupported spec type.
        FileNotFoundError / IndexNotFoundError / DataFormatError: for a missing or corrupt corpus or index.

    Example:
        >>> import os, tempfile
        >>> from igpo_env.data import save_corpus
        >>> from igpo_env.data.toy import toy_corpus
        >>> os.environ["IGPO_ENV_CACHE"] = tempfile.mkdtemp()
        >>> path = os.path.join(tempfile.mkdtemp(), "corpus.jsonl"); _ = save_corpus(toy_corpus(), path)
        >>> r = get_retriever(path)
        >>> r.search(["capital of Ostrand"], 1)[0][0].title
        'Ostrand'
        >>> get_retriever(r) is r
        True
    """
    if kind is not None:
        check_choice("kind", kind, INDEX_KINDS)
    if isinstance(spec, Retriever) and not isinstance(spec, (str, os.PathLike)):
        return spec
    if isinstance(spec, str) and spec.startswith(_URL_PREFIXES):
        from igpo_env.retrieval.client import RemoteRetriever

        return RemoteRetriever(spec, **options)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(
            f"`spec` must be a Retriever, an http(s) URL, an index directory or a corpus .jsonl path, "
            f"got {type(spec).__name__}"
        )
    path = Path(spec)
    if path.is_dir():
        meta = read_meta(path, kind)
        logger.info("loading %s index from %s", meta["kind"], path)
        return load_index(path, **options)
    if path.is_file():
        kind = kind or DEFAULT_KIND
        runtime = _RUNTIME_OPTIONS[kind]
        key_options = {k: v for k, v in options.items() if k not in runtime}
        build_options = {k: v for k, v in options.items() if k not in runtime or k in _BUILD_TOO}
        out = cached_index_dir(path, kind, **key_options)
        if not (out / META_FILE).is_file():
            logger.info("building %s index of %s into %s", kind, path, out)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
            try:
                _build_into(path, tmp, kind, verbose, build_options)
                _install(tmp, out)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return load_index(out, **{k: v for k, v in options.items() if k in runtime})
    raise FileNotFoundError(
        f"retriever spec {str(spec)!r} is neither an existing index directory nor a corpus file nor an http(s) URL"
    )


_RUNTIME_OPTIONS: dict[str, tuple[str, ...]] = {
    "bm25": ("mmap",),
    "dense": ("use_gpu", "device", "nprobe", "ef_search", "batch_size", "mmap"),
}
"""Options of :func:`get_retriever` that only affect how an index is loaded and searched (not the cache key)."""

_BUILD_TOO = ("device", "batch_size")
"""Runtime options the dense builder also takes (encoding device and batch size)."""
