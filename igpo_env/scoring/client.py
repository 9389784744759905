"""Client of the igpo-env scorer server (``igpo-env serve scorer``): :class:`RemoteScorer`.

It implements the :class:`~igpo_env.scoring.base.CachingScorer` protocol over HTTP, so an
``InformationGainWrapper`` in any env worker can share one scorer model hosted elsewhere (typically on a GPU).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

from igpo_env.error import RemoteError
from igpo_env.types import Message, TargetScore

__all__ = ["RemoteScorer", "http_request"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 2
RETRY_BACKOFF_S = 0.2
"""First pause between retries; doubled after each failed try."""
RETRY_STATUS = frozenset({502, 503, 504})
"""HTTP statuses worth retrying (gateway / overload); other errors are reported at once."""
MAX_ERROR_CHARS = 500
CLIENT_ID_CHARS = 12
"""Length of the random per-client prefix of cache keys."""


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"`url` must be an http(s):// URL, got {url!r}")
    return url.rstrip("/")


def _check_client_args(timeout: Any, retries: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"`retries` must be an int >= 0, got {retries!r}")


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:MAX_ERROR_CHARS]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # OpenAI style {"error": {"message": ...}}
        detail = body["error"].get("message", body["error"])
    elif isinstance(body, dict):  # FastAPI style {"detail": ...}
        detail = body.get("detail", body)
    else:
        detail = body
    return str(detail)[:MAX_ERROR_CHARS]


def http_request(
    client: Any, method: str, url: str, retries: int, json: Any = None, retry_status: frozenset[int] = RETRY_STATUS
) -> Any:
    """Send one HTTP request with retries and return the decoded JSON body.

    Connection errors, timeouts and ``retry_status`` answers are retried ``retries`` times with exponential backoff;
    other HTTP errors raise at once. Shared by :class:`RemoteScorer` and the OpenAI-compatible scorer.

    Args:
        client: An ``httpx.Client``.
        method: ``"GET"`` or ``"POST"``.
        url: Full URL.
        retries: Extra tries after the first.
        json: JSON body (POST).
        retry_status: HTTP statuses to retry.

    Returns:
        The JSON-decoded body.

    Raises:
        RemoteError: The server is unreachable, answered an HTTP error (the message carries the status and the
            server's explanation) or did not answer JSON. ``RemoteError.status`` holds the HTTP status (or None).
    """
    import httpx

    last: str = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
        try:
            response = client.request(method, url, json=json)
        except httpx.TimeoutException as e:
            last = f"timed out ({type(e).__name__}); raise `timeout` if the server is busy"
            continue
        except httpx.TransportError as e:
            last = f"unreachable ({type(e).__name__}: {e}); is the server running?"
            continue
        if response.status_code in retry_status:
            last = f"answered HTTP {response.status_code}: {_detail(response)}"
            continue
        if response.status_code >= 400:
            error = RemoteError(f"{method} {url} answered HTTP {response.status_code}: {_detail(response)}")
            error.status = response.status_code
            raise error
        try:
            return response.json()
        except ValueError as e:
            raise RemoteError(f"{method} {url} answered non-JSON: {response.text[:MAX_ERROR_CHARS]!r}") from e
    error = RemoteError(f"{method} {url} failed after {retries + 1} tries: {last}")
    error.status = None
    raise error


def parse_scores(body: Any, n: int, where: str) -> list[TargetScore]:
    """Parse ``{"scores": [{"token_logprobs": [...], "mean_logprob": x}]}`` with ``n`` entries; RemoteError if not."""
    scores = body.get("scores") if isinstance(body, dict) else None
    if not isinstance(scores, list) or len(scores) != n:
        got = len(scores) if isinstance(scores, list) else type(scores).__name__
        raise RemoteError(f"{where} answered a malformed body: expected `scores` with {n} entries, got {got}")
    out = []
    for i, s in enumerate(scores):
        lps = s.get("token_logprobs") if isinstance(s, dict) else None
        if not isinstance(lps, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lps):
            raise RemoteError(f"{where} answered a malformed score at index {i}: {str(s)[:MAX_ERROR_CHARS]}")
        out.append(TargetScore.from_logprobs(lps))
    return out


class RemoteScorer:
    """A :class:`~igpo_env.scoring.base.Scorer` that asks an ``igpo-env serve scorer`` server over HTTP.

    Large calls are split into requests of at most the server's ``max_items`` pairs (read once from ``/health``).

    Args:
        url: Base URL of the server, e.g. ``"http://127.0.0.1:8001"``.
        timeout: Seconds to wait for one request.
        retries: Extra tries after a connection error, timeout or 502/503/504.
        max_items: Pairs per request; None reads the server's limit from ``GET /health`` on first use.

    Raises:
        ValueError: An argument is invalid.

    Example:
        >>> from igpo_env.scoring.server import ServerThread, create_app
        >>> from igpo_env.types import TargetScore
        >>> class HalfScorer:  # a stub: log-prob -0.5 per character of the target
        ...     def score(self, contexts, targets):
        ...         return [TargetScore.from_logprobs([-0.5] * len(t)) for t in targets]
        >>> with ServerThread(create_app(HalfScorer(), max_wait_ms=1)) as server, RemoteScorer(server.url) as scorer:
        ...     [s.mean_logprob for s in scorer.score([[{"role": "user", "content": "Who?"}]], ["Ann"])]
        [-0.5]
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_items: int | None = None,
    ) -> None:
        self.url = _check_url(url)
        _check_client_args(timeout, retries)
        if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
            raise ValueError(f"`max_items` must be a positive int or None, got {max_items!r}")
        import httpx

        self.timeout = float(timeout)
        self.retries = retries
        self.max_items = max_items
        self._client = httpx.Client(timeout=self.timeout)
        self._namespace = uuid.uuid4().hex[:CLIENT_ID_CHARS]

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, limits and batch stats of the server."""
        body = http_request(self._client, "GET", f"{self.url}/health", self.retries)
        if not isinstance(body, dict):
            raise RemoteError(f"{self.url}/health answered a malformed body: {str(body)[:MAX_ERROR_CHARS]}")
        return body

    def score(
        self,
        contexts: Sequence[str] | Sequence[Sequence[Message]],
        targets: Sequence[str],
        cache_keys: Sequence[Hashable | None] | None = None,
    ) -> list[TargetScore]:
        """Score each target given its context on the server; see :class:`~igpo_env.scoring.base.CachingScorer`.

        Args:
            contexts: Message lists or rendered prefix strings.
            targets: Gold answer strings.
            cache_keys: Optional stream key per pair (e.g. an episode id): a caching scorer on the server reuses
                that stream's encoded transcript across calls. Keys are namespaced per client, so workers cannot
                collide; results equal a call without keys.

        Raises:
            ValueError: ``contexts`` and ``targets`` differ in length.
            RemoteError: The server is unreachable, rejected the input (the message carries its reason) or answered
                something malformed.
        """
        if len(contexts) != len(targets):
            raise ValueError(
                f"`contexts` and `targets` must have the same length, got {len(contexts)} and {len(targets)}"
            )
        if cache_keys is not None and len(cache_keys) != len(targets):
            raise ValueError(f"`cache_keys` must have one key per pair ({len(targets)}), got {len(cache_keys)}")
        if not targets:
            return []
        keys = None if cache_keys is None else [None if k is None else self._wire_key(k) for k in cache_keys]
        if self.max_items is None:
            limit = self.health().get("max_items")
            self.max_items = limit if isinstance(limit, int) and limit > 0 else len(targets)
        out: list[TargetScore] = []
        for start in range(0, len(targets), self.max_items):
            ctx = [c if isinstance(c, str) else [dict(m) for m in c] for c in contexts[start : start + self.max_items]]
            tgt = list(targets[start : start + self.max_items])
            payload: dict[str, Any] = {"contexts": ctx, "targets": tgt}
            if keys is not None:
                payload["cache_keys"] = keys[start : start + self.max_items]
            body = http_request(self._client, "POST", f"{self.url}/score", self.retries, json=payload)
            out.extend(parse_scores(body, len(tgt), f"{self.url}/score"))
        return out

    def release(self, cache_keys: Sequence[Hashable]) -> None:
        """Let the server drop the prefix caches of these keys (finished episodes); unknown keys are ignored."""
        keys = [self._wire_key(k) for k in cache_keys]
        for start in range(0, len(keys), self.max_items or len(keys) or 1):
            chunk = keys[start : start + (self.max_items or len(keys))]
            http_request(self._client, "POST", f"{self.url}/release", self.retries, json={"cache_keys": chunk})

    def _wire_key(self, key: Hashable) -> str:
        return f"{self._namespace}:{key!r}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings only (env workers in subprocesses get their own connection pool and key namespace)."""
        return {"url": self.url, "timeout": self.timeout, "retries": self.retries, "max_items": self.max_items}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteScorer({self.url!r}, timeout={self.timeout}, retries={self.retries})"
