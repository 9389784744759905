"""Client of the igpo-env scorer server (``igpo-env serve scorer``): :class:`RemoteScorer`.

It implements the :class:`~igpo_env.scoring.base.CachingScorer` protocol over HTTP, so an
``InformationGainWrapper`` in any env worker can share one scorer model hosted elsewhere (typically on a GPU).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

from igpo_env._http import DEFAULT_RETRIES, MAX_ERROR_CHARS, check_client_args, check_url, http_request
from igpo_env._validation import check_int
from igpo_env.error import RemoteError
from igpo_env.types import Message, TargetScore

__all__ = ["RemoteScorer"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
"""Seconds per scorer request (scoring a large batch on a busy model takes a while)."""
CLIENT_ID_CHARS = 12
"""Length of the random per-client prefix of cache keys."""
EXAMPLE_URL = "http://127.0.0.1:8001"


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
        retries: Extra tries after a connection error, timeout or 502/503/504 (the policy of
            :func:`igpo_env._http.http_request`).
        max_items: Pairs per request; None reads the server's limit from ``GET /health`` on first use.

    Raises:
        ValueError: An argument is invalid.

    Example:
        >>> from igpo_env._http import ServerThread
        >>> from igpo_env.scoring.server import create_app
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
        self.url = check_url("url", url, example=EXAMPLE_URL).rstrip("/")
        self.timeout, self.retries = check_client_args(timeout, retries)
        self.max_items = check_int("max_items", max_items, minimum=1, optional=True)
        import httpx

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
