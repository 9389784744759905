"""The :class:`Retriever` protocol and the pieces every backend shares.

- :class:`Retriever`: ``search(queries: list[str], k: int) -> list[list[Doc]]``, batched, best first.
- :class:`DocStore`: the passages of an index as three parallel string lists (ids, titles, texts), saved as
  ``docs.jsonl`` (one ``{"id", "title", "text"}`` object per line; never pickle).
- :func:`iter_docs`: turn a corpus (a FlashRAG jsonl path, :class:`~igpo_env.types.Doc` records or
  ``{"id", "contents"}`` / ``{"id", "title", "text"}`` mappings) into :class:`~igpo_env.types.Doc` records.
- Index directories carry a ``meta.json`` (``{"format": "igpo-env-index", "kind": "bm25"|"dense", ...}``), read and
  written by :func:`read_meta` / :func:`write_meta`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from igpo_env.error import DataFormatError, IndexNotFoundError
from igpo_env.types import Doc

__all__ = [
    "Retriever",
    "RetrieverSpec",
    "DocStore",
    "iter_docs",
    "check_search_args",
    "read_meta",
    "write_meta",
    "INDEX_FORMAT",
    "INDEX_FORMAT_VERSION",
    "META_FILE",
    "DOCS_FILE",
]

INDEX_FORMAT = "igpo-env-index"
"""Value of ``meta.json["format"]`` in every index directory written here."""

INDEX_FORMAT_VERSION = 1
"""Bumped when the on-disk layout changes incompatibly."""

META_FILE = "meta.json"
DOCS_FILE = "docs.jsonl"


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers batched text queries with ranked passages.

    ``search(queries, k)`` returns one list per query of at most ``k`` :class:`~igpo_env.types.Doc` records sorted
    by ``score`` (highest first). Fewer than ``k`` come back only when the corpus is smaller than ``k``.

    Example:
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.data.toy import toy_corpus
        >>> isinstance(BM25Retriever.from_docs(toy_corpus()), Retriever)
        True
    """

    def search(self, queries: list[str], k: int) -> list[list[Doc]]:
        """Return the top-``k`` passages of each query, best first."""
        ...


RetrieverSpec = Retriever | str | os.PathLike[str]
"""What :func:`~igpo_env.retrieval.index.get_retriever` accepts: a retriever object, an http(s) URL of a ``/retrieve``
endpoint, an index directory or a corpus ``.jsonl`` path."""


def check_search_args(queries: Any, k: Any) -> list[str]:
    """Validate the arguments of :meth:`Retriever.search`; return the queries as a list.

    Raises:
        TypeError: if ``queries`` is a bare string or holds a non-string, or ``k`` is not an int.
        ValueError: if ``k`` < 1.

    Example:
        >>> check_search_args(("a", "b"), 2)
        ['a', 'b']
        >>> check_search_args("a", 2)
        Traceback (most recent call last):
        ...
        TypeError: `queries` must be a list of strings, got a str; wrap a single query in a list: ['a']
    """
    if isinstance(queries, str):
        raise TypeError(
            f"`queries` must be a list of strings, got a str; wrap a single query in a list: [{queries!r}]"
        )
    if not isinstance(queries, Sequence):
        raise TypeError(f"`queries` must be a list of strings, got {type(queries).__name__}")
    queries = list(queries)
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"`queries[{i}]` must be a str, got {type(q).__name__}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"`k` must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    return queries


def _doc_from_item(item: Any, where: str) -> Doc:
    if isinstance(item, Doc):
        return item
    if isinstance(item, Mapping):
        if "id" not in item:
            raise DataFormatError(f"{where}: corpus record has no 'id' (keys {sorted(item)})")
        if isinstance(item.get("contents"), str):
            return Doc.from_contents(str(item["id"]), item["contents"])
        if isinstance(item.get("text"), str):
            return Doc(str(item["id"]), str(item.get("title", "")), item["text"])
        raise DataFormatError(f"{where}: corpus record needs 'contents' or 'text' (keys {sorted(item)})")
    raise DataFormatError(f"{where}: expected a Doc or a mapping, got {type(item).__name__}")


def iter_docs(corpus: str | os.PathLike[str] | Iterable[Any]) -> Iterator[Doc]:
    """Yield :class:`~igpo_env.types.Doc` records from a corpus path or an iterable of records.

    Args:
        corpus: A FlashRAG corpus jsonl path, or an iterable of :class:`Doc`, ``{"id", "contents"}`` or
            ``{"id", "title", "text"}`` records.

    Raises:
        FileNotFoundError: if a path does not exist.
        DataFormatError: on a malformed record (naming the file and line, or the position).

    Example:
        >>> [d.title for d in iter_docs([{"id": 1, "contents": "Oslo\\nA city."}])]
        ['Oslo']
    """
    if isinstance(corpus, (str, os.PathLike)):
        from igpo_env.data.formats import load_corpus

        yield from load_corpus(corpus)
        return
    if isinstance(corpus, Mapping):
        raise TypeError("`corpus` must be a path or an iterable of records, got a single mapping")
    for i, item in enumerate(corpus):
        yield _doc_from_item(item, f"corpus[{i}]")


class DocStore:
    """Passages held as parallel string lists; materializes :class:`Doc` records only for search results.

    Example:
        >>> store = DocStore.from_docs([Doc("a", "A", "x"), Doc("b", "B", "y")])
        >>> len(store), store.doc(1, 0.5)
        (2, Doc(id='b', title='B', text='y', score=0.5))
    """

    def __init__(self, ids: list[str], titles: list[str], texts: list[str]) -> None:
        if not (len(ids) == len(titles) == len(texts)):
            raise ValueError(f"ids/titles/texts lengths differ: {len(ids)}, {len(titles)}, {len(texts)}")
        self.ids, self.titles, self.texts = ids, titles, texts

    @classmethod
    def from_docs(cls, docs: Iterable[Doc]) -> DocStore:
        """Build from :class:`Doc` records."""
        ids: list[str] = []
        titles: list[str] = []
        texts: list[str] = []
        for d in docs:
            ids.append(d.id)
            titles.append(d.title)
            texts.append(d.text)
        return cls(ids, titles, texts)

    def __len__(self) -> int:
        return len(self.ids)

    def doc(self, i: int, score: float = 0.0) -> Doc:
        """Return passage ``i`` as a :class:`Doc` with ``score``."""
        return Doc(self.ids[i], self.titles[i], self.texts[i], score)

    def contents(self, i: int) -> str:
        """FlashRAG ``contents`` (``"Title\\ntext"``) of passage ``i``."""
        return f"{self.titles[i]}\n{self.texts[i]}"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``docs.jsonl`` (``{"id", "title", "text"}`` per line)."""
        with Path(path).open("w", encoding="utf-8") as f:
            for i, t, x in zip(self.ids, self.titles, self.texts, strict=True):
                f.write(json.dumps({"id": i, "title": t, "text": x}, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DocStore:
        """Read a ``docs.jsonl`` written by :meth:`save`.

        Raises:
            IndexNotFoundError: if the file is missing.
            DataFormatError: naming the line of a malformed record.
        """
        path = Path(path)
        if not path.is_file():
            raise IndexNotFoundError(f"{path}: missing; the index directory is incomplete, rebuild it")
        ids: list[str] = []
        titles: list[str] = []
        texts: list[str] = []
        with path.open("r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                try:
                    rec = json.loads(line)
                    ids.append(str(rec["id"]))
                    titles.append(rec["title"])
                    texts.append(rec["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise DataFormatError(f"{path}:{lineno}: corrupt passage record ({e!r}); rebuild the index") from e
        return cls(ids, titles, texts)


def write_meta(directory: str | os.PathLike[str], kind: str, **fields: Any) -> None:
    """Write ``meta.json`` for an index of ``kind`` into ``directory``."""
    meta = {"format": INDEX_FORMAT, "version": INDEX_FORMAT_VERSION, "kind": kind, **fields}
    Path(directory, META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_meta(directory: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read and check the ``meta.json`` of an index directory.

    Args:
        directory: The index directory.
        kind: If given, the kind the index must have.

    Raises:
        IndexNotFoundError: if the directory or its ``meta.json`` is missing.
        DataFormatError: if ``meta.json`` is corrupt, of another format or version, or of another kind.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise IndexNotFoundError(
            f"index directory {str(directory)!r} does not exist; build one with `igpo-env index build`"
        )
    path = directory / META_FILE
    if not path.is_file():
        raise IndexNotFoundError(f"{path}: missing; {str(directory)!r} is not an igpo-env index directory")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: corrupt ({e.msg}); rebuild the index") from e
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise DataFormatError(f"{path}: not an igpo-env index (format {found!r})")
    if meta.get("version") != INDEX_FORMAT_VERSION:
        raise DataFormatError(
            f"{path}: index format version {meta.get('version')!r}, "
            f"this igpo-env reads {INDEX_FORMAT_VERSION}; rebuild the index"
        )
    if kind is not None and meta.get("kind") != kind:
        raise DataFormatError(f"{path}: a {meta.get('kind')!r} index, expected {kind!r}")
    return meta
