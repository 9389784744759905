"""BM25 retrieval on `bm25s <https://github.com/xhluca/bm25s>`_ with a vectorized batched search.

bm25s precomputes every (term, passage) BM25 score into a sparse term x passage matrix at build time. A batch of
queries is then one sparse matrix product (query term counts x that matrix) followed by a top-k selection over each
row's non-zero entries, so search time grows with the postings touched, not with a Python loop over passages.

Saved layout (a directory): ``meta.json``, ``docs.jsonl`` and ``bm25s/`` (bm25s' own numpy + json files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igpo_env._validation import check_choice, check_fraction, check_number
from igpo_env.error import DataFormatError, DependencyNotInstalled, IndexNotFoundError
from igpo_env.retrieval.base import DOCS_FILE, DocStore, check_search_args, iter_docs, read_meta, write_meta
from igpo_env.types import Doc

__all__ = ["BM25Retriever", "DEFAULT_STEMMER", "DEFAULT_STOPWORDS", "BM25_METHODS"]

logger = logging.getLogger(__name__)

DEFAULT_STEMMER = "english"
"""Snowball (PyStemmer) language used to stem terms; ``None`` disables stemming."""

DEFAULT_STOPWORDS = "en"
"""bm25s stopword list (``"en"``), a list of words, or ``None`` for none."""

DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
KIND = "bm25"
_BM25S_DIR = "bm25s"


def _import_bm25s():
    try:
        import bm25s
    except ImportError as e:  # pragma: no cover - bm25s is a core dependency
        raise DependencyNotInstalled("BM25Retriever needs bm25s: `pip install bm25s PyStemmer`") from e
    return bm25s


def _make_stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as e:  # pragma: no cover - PyStemmer is a core dependency
        raise DependencyNotInstalled("stemming needs PyStemmer: `pip install PyStemmer` (or pass stemmer=None)") from e
    try:
        return Stemmer.Stemmer(language)
    except KeyError as e:
        raise ValueError(
            f"`stemmer` must be a PyStemmer language such as 'english', got {language!r}; "
            f"available: {sorted(Stemmer.algorithms())}"
        ) from e


def _sorted_vocab(tokens: Any) -> Any:
    """Renumber a ``bm25s.tokenize`` result so term ids follow the sorted vocabulary.

    With a stemmer, bm25s numbers terms in ``set`` order, which changes with ``PYTHONHASHSEED``; the term order fixes
    the float32 summation order of a query's score, so equal-scoring passages could swap places between processes
    (and the scripted trajectories built on them changed with it). Sorted ids make an index the same in every process.
    """
    from bm25s.tokenization import Tokenized

    terms = sorted(tokens.vocab)
    new_id = {term: i for i, term in enumerate(terms)}
    remap = np.empty(len(terms), dtype=np.int64)
    for term, old in tokens.vocab.items():
        remap[old] = new_id[term]
    ids = [remap[np.asarray(doc, dtype=np.int64)].tolist() for doc in tokens.ids]
    return Tokenized(ids=ids, vocab=new_id)


class BM25Retriever:
    """In-process BM25 retriever (bm25s), the default backend of SearchQA-v0.

    Build one with :meth:`from_docs` (any corpus: a FlashRAG jsonl path or records) or :meth:`load` (a directory
    written by :meth:`save`). :meth:`search` is batched and thread-safe (read only).

    Args:
        model: A built ``bm25s.BM25`` index.
        store: The passages, in index order.
        stemmer: PyStemmer language the index was built with, or ``None``.
        stopwords: bm25s stopwords the index was built with (``"en"``, a list, or ``None``).

    Example:
        >>> from igpo_env.data.toy import toy_corpus
        >>> r = BM25Retriever.from_docs(toy_corpus())
        >>> hits = r.search(["Who founded Karsel?", "Velmora river length"], k=2)
        >>> [d.title for d in hits[0]], hits[1][0].title
        (['Karsel', 'Ilka Maren'], 'Velmora')
        >>> hits[0][0].score >= hits[0][1].score > 0
        True

    Change logs:
        v0.1.0: initial version.
    """

    def __init__(self, model: Any, store: DocStore, stemmer: str | None = DEFAULT_STEMMER, stopwords: Any = "en"):
        num_docs = int(model.scores["num_docs"])
        if num_docs != len(store):
            raise ValueError(f"index has {num_docs} passages but the doc store has {len(store)}")
        self.model = model
        self.store = store
        self.stemmer_language = stemmer
        self.stopwords = stopwords
        self._stemmer = _make_stemmer(stemmer)
        self._vocab: dict[str, int] = model.vocab_dict
        self._matrix = self._term_matrix(model)
        nonocc = getattr(model, "nonoccurrence_array", None)
        self._nonoccurrence = None if nonocc is None else np.asarray(nonocc, dtype=np.float32)

    @staticmethod
    def _term_matrix(model: Any):
        """bm25s' CSC arrays are exactly a CSR matrix of shape (vocabulary, passages)."""
        from scipy import sparse

        s = model.scores
        shape = (len(s["indptr"]) - 1, int(s["num_docs"]))
        arrays = (np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"]))
        return sparse.csr_matrix(arrays, shape=shape)

    # ------------------------------------------------------------------ build / save / load
    @classmethod
    def from_docs(
        cls,
        docs: str | os.PathLike[str] | Iterable[Any],
        *,
        stemmer: str | None = DEFAULT_STEMMER,
        stopwords: str | Sequence[str] | None = DEFAULT_STOPWORDS,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        method: str = "lucene",
        verbose: bool = False,
    ) -> BM25Retriever:
        """Index a corpus in memory.

        Args:
            docs: A FlashRAG corpus jsonl path, or an iterable of :class:`Doc` / ``{"id", "contents"}`` records.
            stemmer: PyStemmer language (``"english"``), or ``None`` for no stemming.
            stopwords: ``"en"``, a list of words, or ``None``.
            k1: BM25 term-frequency saturation (> 0).
            b: BM25 length normalization in [0, 1].
            method: bm25s scoring variant, one of :data:`BM25_METHODS`.
            verbose: Show tqdm progress bars.

        Raises:
            ValueError: on a bad parameter or an empty corpus.
            DataFormatError: on a malformed corpus record.

        Example:
            >>> from igpo_env.data.toy import toy_corpus
            >>> len(BM25Retriever.from_docs(toy_corpus(), stemmer=None, stopwords=None))
            8
        """
        check_choice("method", method, BM25_METHODS)
        check_number("k1", k1, minimum=0, strict=True)
        check_fraction("b", b)
        if stopwords is not None and not isinstance(stopwords, str):
            stopwords = [str(w) for w in stopwords]
        bm25s = _import_bm25s()
        store = DocStore.from_docs(iter_docs(docs))
        if len(store) == 0:
            raise ValueError("the corpus is empty; BM25Retriever needs at least one passage")
        texts = [f"{t} {x}" for t, x in zip(store.titles, store.texts, strict=True)]
        tokens = bm25s.tokenize(
            texts, stopwords=stopwords, stemmer=_make_stemmer(stemmer), show_progress=verbose, allow_empty=True
        )
        del texts
        tokens = _sorted_vocab(tokens)
        model = bm25s.BM25(k1=k1, b=b, method=method)
        model.index(tokens, show_progress=verbose)
        logger.info("indexed %d passages, %d terms", len(store), len(model.vocab_dict))
        return cls(model, store, stemmer=stemmer, stopwords=stopwords)

    def __deepcopy__(self, memo: dict[int, Any]) -> BM25Retriever:
        """Share, don't copy: the index is read-only (``env.spec.make()`` deep-copies ``make`` kwargs)."""
        return self

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index to ``directory`` (created if needed): ``meta.json``, ``docs.jsonl``, ``bm25s/``.

        Example:
            >>> import tempfile
            >>> from igpo_env.data.toy import toy_corpus
            >>> r = BM25Retriever.from_docs(toy_corpus())
            >>> r2 = BM25Retriever.load(r.save(tempfile.mkdtemp()))
            >>> r2.search(["Karsel founder"], 3) == r.search(["Karsel founder"], 3)
            True
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / _BM25S_DIR), show_progress=False)
        self.store.save(directory / DOCS_FILE)
        write_meta(
            directory,
            KIND,
            num_docs=len(self.store),
            stemmer=self.stemmer_language,
            stopwords=self.stopwords,
            k1=self.model.k1,
            b=self.model.b,
            method=self.model.method,
        )
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, mmap: bool = False) -> BM25Retriever:
        """Load an index written by :meth:`save`.

        Args:
            directory: The index directory.
            mmap: Memory-map the score arrays instead of reading them into RAM.

        Raises:
            IndexNotFoundError: if the directory or one of its files is missing.
            DataFormatError: if a file is corrupt or the directory holds another kind of index.
        """
        meta = read_meta(directory, KIND)
        bm25s = _import_bm25s()
        sub = Path(directory, _BM25S_DIR)
        if not sub.is_dir():
            raise IndexNotFoundError(f"{sub}: missing; the BM25 index directory is incomplete, rebuild it")
        try:
            model = bm25s.BM25.load(str(sub), mmap=mmap, load_corpus=False)
        except FileNotFoundError as e:
            raise IndexNotFoundError(f"{sub}: incomplete BM25 index ({e}); rebuild it") from e
        except ValueError as e:  # json.JSONDecodeError and numpy format errors are ValueErrors
            raise DataFormatError(f"{sub}: corrupt BM25 index ({e}); rebuild it") from e
        store = DocStore.load(Path(directory, DOCS_FILE))
        try:
            return cls(model, store, stemmer=meta.get("stemmer"), stopwords=meta.get("stopwords"))
        except ValueError as e:
            raise DataFormatError(f"{directory}: inconsistent BM25 index ({e}); rebuild it") from e

    # ------------------------------------------------------------------ search
    def __len__(self) -> int:
        return len(self.store)

    def _query_matrix(self, queries: list[str]):
        from scipy import sparse

        bm25s = _import_bm25s()
        tokens = bm25s.tokenize(
            queries, stopwords=self.stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        vocab = self._vocab
        rows: list[int] = []
        cols: list[int] = []
        for r, toks in enumerate(tokens):
            for t in toks:
                j = vocab.get(t)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        q = sparse.csr_matrix((data, (rows, cols)), shape=(len(queries), self._matrix.shape[0]))
        return q

    def search_indices(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passage indices and scores, as two ``(len(queries), min(k, len(self)))`` arrays.

        Rows are sorted by score (highest first, ties by index). Passages with no query term score 0 and fill
        the rows of queries that match fewer than ``k`` passages.

        Example:
            >>> from igpo_env.data.toy import toy_corpus
            >>> idx, scores = BM25Retriever.from_docs(toy_corpus()).search_indices(["Tessa Brun"], 2)
            >>> idx.shape, bool(scores[0, 0] >= scores[0, 1])
            ((1, 2), True)
        """
        queries = check_search_args(queries, k)
        n = len(self.store)
        kk = min(k, n)
        out_idx = np.zeros((len(queries), kk), dtype=np.int64)
        out_scores = np.zeros((len(queries), kk), dtype=np.float32)
        if not queries:
            return out_idx, out_scores
        q = self._query_matrix(queries)
        scores = (q @ self._matrix).tocsr()
        indptr, indices, data = scores.indptr, scores.indices, scores.data
        for r in range(len(queries)):
            cand = indices[indptr[r] : indptr[r + 1]]
            vals = data[indptr[r] : indptr[r + 1]]
            if len(cand) > kk:
                part = np.argpartition(-vals, kk - 1)[:kk]
                cand, vals = cand[part], vals[part]
            order = np.lexsort((cand, -vals))
            m = len(order)
            out_idx[r, :m] = cand[order]
            out_scores[r, :m] = vals[order]
            if m < kk:  # pad with zero-score passages, lowest index first
                taken = set(cand.tolist())
                fill = [i for i in range(min(n, kk + m)) if i not in taken][: kk - m]
                out_idx[r, m:] = fill
        if self._nonoccurrence is not None:  # BM25L / BM25+ add a per-query constant to every passage
            out_scores += np.asarray(q @ self._nonoccurrence, dtype=np.float32)[:, None]
        return out_idx, out_scores

    def search(self, queries: list[str], k: int) -> list[list[Doc]]:
        """Return the top-``k`` passages of each query, best first (see :class:`Retriever`)."""
        idx, scores = self.search_indices(queries, k)
        doc = self.store.doc
        return [
            [doc(i, s) for i, s in zip(row_i.tolist(), row_s.tolist(), strict=True)]
            for row_i, row_s in zip(idx, scores, strict=True)
        ]

    def __repr__(self) -> str:
        return f"BM25Retriever(num_docs={len(self.store)}, stemmer={self.stemmer_language!r})"
