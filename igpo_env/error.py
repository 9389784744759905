"""Error classes raised by igpo-env.

Every error names the bad value and, where there is one, the fix.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "DependencyNotInstalled",
    "DataFormatError",
    "IndexNotFoundError",
    "RemoteError",
    "InvalidAction",
    "ModelFetchError",
    "ModelFileError",
]


class Error(Exception):
    """Base class of every igpo-env error."""


class DependencyNotInstalled(Error, ImportError):
    """An optional dependency is missing; the message carries the ``pip install`` hint."""


class DataFormatError(Error, ValueError):
    """A data file or dataset is malformed; the message names the file, the line or row and the problem."""


class IndexNotFoundError(Error, FileNotFoundError):
    """A retrieval index directory is missing or incomplete."""


class RemoteError(Error, RuntimeError):
    """A remote server (retriever or scorer) failed, was unreachable or answered something malformed."""

    status: int | None = None
    """The HTTP status of an error answer; None when the server never answered or answered malformed data."""


class InvalidAction(Error, ValueError):
    """An action could not be interpreted (used by strict parsers; the env itself never raises on bad text)."""


class ModelFetchError(Error, RuntimeError):
    """A packaged model could not be downloaded (offline, or PyPI unreachable); the message has the manual command."""


class ModelFileError(Error, ValueError):
    """A model file is missing, corrupt (wrong size or sha256) or unreadable; the message names it and the fix."""
