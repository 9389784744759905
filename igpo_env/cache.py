"""Where igpo-env keeps generated worlds, indexes and models: ``$IGPO_ENV_CACHE`` or ``~/.cache/igpo-env``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_dir"]

CACHE_ENV_VAR = "IGPO_ENV_CACHE"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a directory under the igpo-env cache.

    Example:
        >>> import os, tempfile
        >>> os.environ["IGPO_ENV_CACHE"] = tempfile.mkdtemp()
        >>> cache_dir("worlds").name
        'worlds'
    """
    root = os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "igpo-env")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
