"""HTTP client of a Search-R1-compatible ``/retrieve`` endpoint.

The server may be ours (``igpo-env serve retriever``) or Search-R1's own ``retrieval_server.py``;
:class:`RemoteRetriever` is usable wherever a :class:`~igpo_env.retrieval.base.Retriever` is.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from igpo_env.error import DependencyNotInstalled, RemoteError
from igpo_env.retrieval.base import check_search_args
from igpo_env.types import Doc

__all__ = ["RemoteRetriever", "DEFAULT_TIMEOUT_S", "DEFAULT_RETRIES", "DEFAULT_CLIENT_BATCH"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
"""Extra attempts after a connection error, a timeout or a 5xx answer (4xx answers are never retried)."""
DEFAULT_BACKOFF_S = 0.5
DEFAULT_CLIENT_BATCH = 512
"""Queries per request; larger batches are split (our server's default ``max_batch``)."""
_SERVER_ERROR = 500
_CLIENT_ERROR = 400


def _doc_from_item(item: Any, where: str) -> Doc:
    """Parse one result entry: ``{"document": {...}, "score": s}`` or a bare document ``{"id", "contents"}``."""
    if not isinstance(item, dict):
        raise RemoteError(f"{where}: expected an object, got {type(item).__name__}")
    score = 0.0
    doc = item
    if "document" in item:
        doc = item["document"]
        score = item.get("score", 0.0)
        if not isinstance(doc, dict):
            raise RemoteError(f"{where}.document: expected an object, got {type(doc).__name__}")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise RemoteError(f"{where}.score: expected a number, got {score!r:.60}")
    doc_id = str(doc.get("id", doc.get("doc_id", "")))
    if isinstance(doc.get("contents"), str):
        return Doc.from_contents(doc_id, doc["contents"], float(score))
    if isinstance(doc.get("text"), str):
        return Doc(doc_id, str(doc.get("title", "")), doc["text"], float(score))
    raise RemoteError(f"{where}: document has neither 'contents' nor 'text' (keys {sorted(doc)})")


class RemoteRetriever:
    """A :class:`~igpo_env.retrieval.base.Retriever` that queries a Search-R1-style ``POST /retrieve`` server.

    Args:
        url: The full endpoint as in Search-R1 configs, e.g. ``http://127.0.0.1:8000/retrieve``.
        timeout: Seconds per HTTP request.
        retries: Extra attempts after a connection error, a timeout or a 5xx answer.
        backoff: Seconds before the first retry (doubling after each).
        max_batch: Queries per request; larger ``search`` batches are split.

    Raises:
        ValueError: on a bad argument.

    Example:
        >>> from igpo_env.data.toy import toy_corpus
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.retrieval.server import ServerThread, create_app
        >>> with ServerThread(create_app(BM25Retriever.from_docs(toy_corpus()))) as server:
        ...     with RemoteRetriever(server.url + "/retrieve") as remote:
        ...         remote.search(["capital of Ostrand"], k=2)[0][0].title
        'Ostrand'

    Change logs:
        v0.1.0: initial version.
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        max_batch: int = DEFAULT_CLIENT_BATCH,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must be an http(s) URL such as 'http://127.0.0.1:8000/retrieve', got {url!r}")
        if not timeout > 0:
            raise ValueError(f"`timeout` must be > 0 seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` must be an int >= 0, got {retries!r}")
        if not backoff >= 0:
            raise ValueError(f"`backoff` must be >= 0 seconds, got {backoff!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"`max_batch` must be a positive int, got {max_batch!r}")
        try:
            import httpx
        except ImportError as e:
            raise DependencyNotInstalled("RemoteRetriever needs `pip install httpx`") from e
        self._httpx = httpx
        self.url, self.timeout, self.retries, self.backoff, self.max_batch = url, timeout, retries, backoff, max_batch
        self._client = httpx.Client(timeout=timeout)

    def _post(self, payload: dict[str, Any]) -> Any:
        httpx = self._httpx
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TransportError as e:
                if last:
                    raise RemoteError(
                        f"cannot reach retriever at {self.url} after {self.retries + 1} attempt(s): {e!r}; "
                        "is the server running (`igpo-env serve retriever --index DIR`)?"
                    ) from e
            else:
                if response.status_code < _CLIENT_ERROR:
                    try:
                        return response.json()
                    except ValueError as e:
                        raise RemoteError(f"{self.url}: response is not JSON: {response.text[:200]!r}") from e
                detail = response.text[:500]
                if response.status_code < _SERVER_ERROR or last:
                    raise RemoteError(f"{self.url} answered HTTP {response.status_code}: {detail}")
            logger.warning(
                "retriever request to %s failed (attempt %d), retrying in %.1fs", self.url, attempt + 1, delay
            )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, body: Any, n_queries: int) -> list[list[Doc]]:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list):
            raise RemoteError(
                f"{self.url}: malformed response, expected {{'result': [[...], ...]}}, got {body!r:.200}"
            )
        if len(result) != n_queries:
            raise RemoteError(f"{self.url}: malformed response, {len(result)} result lists for {n_queries} queries")
        out = []
        for qi, hits in enumerate(result):
            if not isinstance(hits, list):
                raise RemoteError(f"{self.url}: result[{qi}] is {type(hits).__name__}, expected a list")
            out.append([_doc_from_item(h, f"{self.url}: result[{qi}][{j}]") for j, h in enumerate(hits)])
        return out

    def search(self, queries: list[str], k: int) -> list[list[Doc]]:
        """Return the top-``k`` passages of each query from the server, best first.

        Raises:
            RemoteError: if the server is unreachable, answers an error, or answers something malformed.
        """
        queries = check_search_args(queries, k)
        out: list[list[Doc]] = []
        for start in range(0, len(queries), self.max_batch):
            chunk = queries[start : start + self.max_batch]
            body = self._post({"queries": chunk, "topk": k, "return_scores": True})
            out.extend(self._parse(body, len(chunk)))
        return out

    def health(self) -> dict[str, Any]:
        """``GET /health`` next to the endpoint (our server only).

        Raises:
            RemoteError: if the server is unreachable or has no ``/health``.
        """
        base = self.url.rsplit("/", 1)[0]
        try:
            response = self._client.get(base + "/health")
            response.raise_for_status()
            return response.json()
        except (self._httpx.HTTPError, ValueError) as e:
            raise RemoteError(f"health check of {base} failed: {e!r}") from e

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteRetriever({self.url!r})"
