"""Where igpo-env keeps generated worlds, indexes and models: ``$IGPO_ENV_CACHE`` or ``~/.cache/igpo-env``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_dir", "atomic_dir"]

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


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory atomically: yield a fresh temporary sibling of ``target``, then rename it into place.

    On success the temporary directory (mode 0o755) replaces ``target`` (an old ``target`` is removed first); on any
    error, interruption included, it is removed and ``target`` is left as it was.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with atomic_dir(root / "model") as tmp:
        ...     _ = (tmp / "config.json").write_text("{}")
        >>> sorted(p.name for p in (root / "model").iterdir())
        ['config.json']
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
