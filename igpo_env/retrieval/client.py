"""HTTP client of a Search-R1-compatible ``/retrieve`` endpoint.

The server may be ours (``igpo-env serve retriever``) or Search-R1's own ``retrieval_server.py``;
:class:`RemoteRetriever` is usable wherever a :class:`~igpo_env.retrieval.base.Retriever` is.
"""

from __future__ import annotations

import logging
from typing import Any

from igpo_env._http import (
    DEFAULT_RETRIES,
    MAX_ERROR_CHARS,
    RETRY_BACKOFF_S,
    check_client_args,
    check_url,
    http_request,
)
from igpo_env._validation import check_int, check_number
from igpo_env.error import DependencyNotInstalled, RemoteError
from igpo_env.retrieval.base import check_search_args
from igpo_env.types import Doc

__all__ = ["RemoteRetriever", "DEFAULT_TIMEOUT_S", "DEFAULT_RETRIES", "DEFAULT_CLIENT_BATCH"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
"""Seconds per retrieval request."""
DEFAULT_CLIENT_BATCH = 512
"""Queries per request; larger batches are split (our server's default ``max_batch``)."""
EXAMPLE_URL = "http://127.0.0.1:8000/retrieve"
UNREACHABLE_HINT = "is the server running (`igpo-env serve retriever --index DIR`)?"


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
        retries: Extra attempts after a connection error, a timeout or a 502/503/504 answer (the policy of
            :func:`igpo_env._http.http_request`; a 500 from a failing search is reported at once).
        backoff: Seconds before the first retry (doubling after each).
        max_batch: Queries per request; larger ``search`` batches are split.

    Raises:
        ValueError: on a bad argument.

    Example:
        >>> from igpo_env.data.toy import toy_corpus
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env._http import ServerThread
        >>> from igpo_env.retrieval.server import create_app
        >>> with ServerThread(create_app(BM25Retriever.from_docs(toy_corpus()))) as server:
        ...     with RemoteRetriever(server.url + "/retrieve") as remote:
        ...         remote.search(["capital of Ostrand"], k=2)[0][0].title
        'Ostrand'

    Change logs:
        v0.1.0: initial version.
        v0.2.0: the retry policy of the scorer clients (:mod:`igpo_env._http`): a 500 is no longer retried, the
        default ``backoff`` is 0.2 s; ``health()`` retries like ``search``.
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = RETRY_BACKOFF_S,
        max_batch: int = DEFAULT_CLIENT_BATCH,
    ) -> None:
        self.url = check_url("url", url, example=EXAMPLE_URL)
        self.timeout, self.retries = check_client_args(timeout, retries)
        self.backoff = check_number("backoff", backoff, minimum=0)
        self.max_batch = check_int("max_batch", max_batch, minimum=1)
        try:
            import httpx
        except ImportError as e:
            raise DependencyNotInstalled("RemoteRetriever needs `pip install httpx`") from e
        self._client = httpx.Client(timeout=self.timeout)

    def _request(self, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
        return http_request(
            self._client, method, url, self.retries, json=payload, backoff=self.backoff, hint=UNREACHABLE_HINT
        )

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
            body = self._request("POST", self.url, {"queries": chunk, "topk": k, "return_scores": True})
            out.extend(self._parse(body, len(chunk)))
        return out

    def health(self) -> dict[str, Any]:
        """``GET /health`` next to the endpoint (our server only).

        Raises:
            RemoteError: if the server is unreachable, has no ``/health`` or answers something other than an object.
        """
        url = self.url.rsplit("/", 1)[0] + "/health"
        body = self._request("GET", url)
        if not isinstance(body, dict):
            raise RemoteError(f"{url} answered a malformed body: {str(body)[:MAX_ERROR_CHARS]}")
        return body

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteRetriever({self.url!r})"
