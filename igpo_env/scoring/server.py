"""HTTP scorer server with dynamic batching, so many env workers share one (GPU-hosted) scorer model.

Protocol:

- ``POST /score`` with ``{"contexts": [str | [{"role", "content"}, ...]], "targets": [str]}`` answers
  ``{"scores": [{"token_logprobs": [float, ...], "mean_logprob": float}, ...]}`` (one per pair, in order).
- ``POST /release`` with ``{"cache_keys": [str]}`` lets a :class:`~igpo_env.scoring.base.CachingScorer` (e.g.
  ``HFScorer``) drop the prefix KV caches of finished episodes. ``/score`` takes optional ``"cache_keys"``
  (one per pair, or null) that such a scorer uses to reuse an episode's encoded transcript across calls; other
  scorers ignore them.
- ``GET /health`` answers ``{"status": "ok", ...limits..., "stats": {...}}``; ``GET /stats`` the batch counters,
  plus ``"cache"`` (the prefix caches' ``streams``, ``bytes``, ``max_streams``, ``max_bytes``, ``evicted``) when the
  scorer reports them (``HFScorer.cache_info``; its caches are bounded in bytes: ``serve scorer --max-cache-mb``).

Request bodies are capped at the size the limits allow, counted while the body is read (so a chunked upload without
``Content-Length`` is cut off too; :func:`~igpo_env._http.limit_body_size`).

Concurrent requests are queued; one worker collects them for up to ``max_wait_ms`` (or until ``max_batch`` pairs are
waiting), runs the scorer on the whole lot in chunks of at most ``max_batch`` pairs, and resolves every request. The
scorer runs in one worker thread at a time, so it need not be thread-safe. Bad input (wrong types, empty or mismatched
lists, too many items, too long texts, bad JSON) is answered with a 4xx naming the problem, and the server keeps
serving. If a batch fails, its pairs are retried one by one so that one bad pair fails only its own request.

Contents: :func:`create_app`, :func:`serve`, :class:`BatchStats`; :class:`~igpo_env._http.ServerThread` (uvicorn in a
background thread, for tests, benchmarks and notebooks) is re-exported from :mod:`igpo_env._http`, the HTTP plumbing
shared with the retrieval server. The client is :class:`igpo_env.scoring.client.RemoteScorer`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict

from igpo_env._http import DEFAULT_HOST, ServerThread, limit_body_size, max_body_bytes, warn_if_exposed
from igpo_env._validation import check_int, check_number
from igpo_env.error import DependencyNotInstalled, Error, RemoteError
from igpo_env.scoring.base import CachingScorer, Scorer, is_caching_scorer
from igpo_env.types import TargetScore

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "create_app",
    "serve",
    "validate_limits",
    "ServerThread",
    "BatchStats",
    "ScoreRequest",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8001
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_ITEMS = 256
"""Most (context, target) pairs in one request."""
DEFAULT_MAX_CHARS = 200_000
"""Most characters in one context (all message contents together) or one target."""
MAX_KEY_CHARS = 256
"""Longest cache key (an episode id) accepted."""
MAX_REPORTED_PROBLEMS = 5
"""Validation problems listed in a 422 answer."""


class ChatMessage(BaseModel):
    """One chat message of a context."""

    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ScoreRequest(BaseModel):
    """Body of ``POST /score``: parallel lists of contexts (text or chat messages) and target strings."""

    model_config = ConfigDict(extra="forbid", strict=True)
    contexts: list[str | list[ChatMessage]]
    targets: list[str]
    cache_keys: list[str | None] | None = None


class ReleaseRequest(BaseModel):
    """Body of ``POST /release``: cache keys whose prefix state the scorer may drop (finished episodes)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    cache_keys: list[str]


@dataclass
class BatchStats:
    """Counters of the dynamic batcher (``GET /stats``).

    Attributes:
        requests: Requests answered (successfully or not) after validation.
        items: (context, target) pairs scored.
        batches: Scorer calls made.
        max_batch_items: Largest number of pairs in one scorer call.
        max_batch_requests: Largest number of requests merged into one collection round.
        failed_items: Pairs whose scoring raised.
        released: Cache keys released through ``POST /release``.
    """

    requests: int = 0
    items: int = 0
    batches: int = 0
    max_batch_items: int = 0
    max_batch_requests: int = 0
    failed_items: int = 0
    released: int = 0

    @property
    def mean_batch_items(self) -> float:
        """Mean pairs per scorer call (0.0 before the first call)."""
        return self.items / self.batches if self.batches else 0.0

    def as_dict(self) -> dict[str, float]:
        """Counters plus ``mean_batch_items`` as a JSON-able dict."""
        return {**asdict(self), "mean_batch_items": self.mean_batch_items}


class _Pending:
    """One validated request waiting for the batcher."""

    __slots__ = ("contexts", "targets", "keys", "future", "results", "error")

    def __init__(self, contexts: list, targets: list[str], keys: list | None, future: asyncio.Future) -> None:
        self.contexts = contexts
        self.targets = targets
        self.keys = keys
        self.future = future
        self.results: list[TargetScore | None] = [None] * len(targets)
        self.error: BaseException | None = None


class _DynamicBatcher:
    """Collects queued requests for ``max_wait_s`` (or until ``max_batch`` pairs) and scores them together."""

    def __init__(self, scorer: Scorer, max_batch: int, max_wait_s: float, stats: BatchStats) -> None:
        self._scorer = scorer
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._stats = stats
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # one scorer call (score or release) at a time
        self._caching_scorer = cast("CachingScorer", scorer) if is_caching_scorer(scorer) else None
        self.caching = self._caching_scorer is not None

    def release(self, keys: list[str]) -> None:
        """Forget the scorer's prefix caches of ``keys`` (runs in a worker thread)."""
        if self._caching_scorer is not None:
            with self._lock:
                self._caching_scorer.release(keys)
        self._stats.released += len(keys)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="scorer-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RemoteError("scorer server is shutting down"))

    async def submit(self, contexts: list, targets: list[str], keys: list | None = None) -> list[TargetScore]:
        if self._queue is None:
            raise RemoteError("scorer server is not running (the batcher was not started)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(contexts, targets, keys, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None  # set in start(); internal invariant, not user input
        batch = [await self._queue.get()]
        n_items = len(batch[0].targets)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while n_items < self._max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                pending = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            batch.append(pending)
            n_items += len(pending.targets)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            self._stats.max_batch_requests = max(self._stats.max_batch_requests, len(batch))
            try:
                await asyncio.to_thread(self._score_batch, batch)
            except Exception as e:  # a bug in the batcher itself: fail this batch's requests, keep the worker alive
                logger.exception("the scorer batcher failed")
                for pending in batch:
                    pending.error = pending.error or e
            for pending in batch:
                self._stats.requests += 1
                if pending.future.done():  # the client went away
                    continue
                if pending.error is not None:
                    pending.future.set_exception(pending.error)
                else:
                    pending.future.set_result(pending.results)

    def _score_batch(self, batch: list[_Pending]) -> None:
        """Score every pair of ``batch`` in chunks of ``max_batch``; runs in a worker thread."""
        # Group by context kind: a scorer call takes either all strings or all message lists.
        groups: dict[bool, list[tuple[_Pending, int]]] = {False: [], True: []}
        for pending in batch:
            for i, context in enumerate(pending.contexts):
                groups[isinstance(context, str)].append((pending, i))
        for refs in groups.values():
            for start in range(0, len(refs), self._max_batch):
                chunk = refs[start : start + self._max_batch]
                try:
                    scores = self._call(chunk)
                except Exception as e:  # forwarded to the requests, never swallowed
                    if len(chunk) == 1:
                        self._fail(chunk[0][0], e)
                        continue
                    logger.warning("a batch of %d pairs failed (%s); retrying them one by one", len(chunk), e)
                    for ref in chunk:
                        try:
                            self._assign([ref], self._call([ref]))
                        except Exception as e1:  # forwarded to the request
                            self._fail(ref[0], e1)
                    continue
                self._assign(chunk, scores)

    def _call(self, chunk: list[tuple[_Pending, int]]) -> list[TargetScore]:
        contexts = [p.contexts[i] for p, i in chunk]
        targets = [p.targets[i] for p, i in chunk]
        keys = [p.keys[i] if p.keys is not None else None for p, i in chunk]
        with self._lock:
            if self._caching_scorer is not None and any(k is not None for k in keys):
                scores = list(self._caching_scorer.score(contexts, targets, cache_keys=keys))
            else:
                scores = list(self._scorer.score(contexts, targets))
        if len(scores) != len(chunk):
            raise RemoteError(f"the scorer returned {len(scores)} scores for {len(chunk)} pairs")
        self._stats.batches += 1
        self._stats.items += len(chunk)
        self._stats.max_batch_items = max(self._stats.max_batch_items, len(chunk))
        return scores

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        self._stats.failed_items += 1
        if pending.error is None:
            pending.error = error

    @staticmethod
    def _assign(chunk: list[tuple[_Pending, int]], scores: list[TargetScore]) -> None:
        for (pending, i), score in zip(chunk, scores, strict=True):
            pending.results[i] = score


def validate_limits(max_batch: int, max_wait_ms: float, max_items: int, max_chars: int) -> None:
    """Check the server limits of :func:`create_app`; raise ValueError naming the bad one.

    Example:
        >>> validate_limits(max_batch=0, max_wait_ms=5, max_items=8, max_chars=100)
        Traceback (most recent call last):
        ...
        ValueError: `max_batch` must be an int >= 1, got 0
    """
    check_int("max_batch", max_batch, minimum=1)
    check_int("max_items", max_items, minimum=1)
    check_int("max_chars", max_chars, minimum=1)
    check_number("max_wait_ms", max_wait_ms, minimum=0)


def _validate_pairs(req: ScoreRequest, max_items: int, max_chars: int) -> tuple[int, str] | None:
    """Return ``(status, message)`` for a bad request, else None."""
    n = len(req.contexts)
    if n == 0:
        return 422, "`contexts` must not be empty"
    if len(req.targets) != n:
        return 422, f"`contexts` and `targets` must have the same length, got {n} and {len(req.targets)}"
    if req.cache_keys is not None and len(req.cache_keys) != n:
        return 422, f"`cache_keys` must have one key (or null) per pair ({n}), got {len(req.cache_keys)}"
    if n > max_items:
        return 413, f"too many pairs: {n} > max_items={max_items}; split the request"
    for i, (context, target) in enumerate(zip(req.contexts, req.targets, strict=True)):
        if isinstance(context, list):
            if not context:
                return 422, f"contexts[{i}] is an empty message list"
            n_chars = sum(len(m.content) for m in context)
        else:
            n_chars = len(context)
        if n_chars > max_chars:
            return 413, f"contexts[{i}] has {n_chars} characters > max_chars={max_chars}"
        if not target:
            return 422, f"targets[{i}] is empty; a target needs at least one character"
        if req.cache_keys is not None and len(req.cache_keys[i] or "") > MAX_KEY_CHARS:
            return 413, f"cache_keys[{i}] has more than {MAX_KEY_CHARS} characters"
        if len(target) > max_chars:
            return 413, f"targets[{i}] has {len(target)} characters > max_chars={max_chars}"
    return None


def create_app(
    scorer: Scorer,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> FastAPI:
    """Build the FastAPI app serving ``scorer`` (anything with the :class:`~igpo_env.scoring.base.Scorer` API).

    Args:
        scorer: The scorer to host, e.g. an ``HFScorer``; only its ``score(contexts, targets)`` method is used.
        max_batch: Most (context, target) pairs per scorer call.
        max_wait_ms: How long the batcher waits for more requests after the first one arrives.
        max_items: Most pairs per request (413 above).
        max_chars: Most characters per context (message contents summed) or target (413 above).

    Returns:
        The app; its state holds ``scorer``, ``stats`` (:class:`BatchStats`) and the limits.

    Raises:
        ValueError: A limit is not positive, or ``scorer`` has no ``score`` method.
        DependencyNotInstalled: fastapi is missing.

    Example:
        >>> from igpo_env._http import ServerThread
        >>> from igpo_env.scoring.client import RemoteScorer
        >>> from igpo_env.types import TargetScore
        >>> class LengthScorer:  # a stub: one token per character, log-prob -1 each
        ...     def score(self, contexts, targets):
        ...         return [TargetScore.from_logprobs([-1.0] * len(t)) for t in targets]
        >>> with ServerThread(create_app(LengthScorer(), max_wait_ms=1)) as server:
        ...     scores = RemoteScorer(server.url).score(["Q: capital?", "Q: river?"], ["Paris", "Nile"])
        >>> [s.token_logprobs for s in scores]
        [(-1.0, -1.0, -1.0, -1.0, -1.0), (-1.0, -1.0, -1.0, -1.0)]
    """
    if not callable(getattr(scorer, "score", None)):
        raise ValueError(f"`scorer` must have a score(contexts, targets) method, got {type(scorer).__name__}")
    validate_limits(max_batch, max_wait_ms, max_items, max_chars)
    try:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
    except ImportError as e:
        raise DependencyNotInstalled(f"the scorer server needs fastapi: pip install igpo-env ({e})") from e

    stats = BatchStats()
    batcher = _DynamicBatcher(scorer, max_batch, max_wait_ms / 1000.0, stats)
    limits = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_items": max_items, "max_chars": max_chars}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="igpo-env scorer", lifespan=lifespan)
    app.state.scorer = scorer
    app.state.stats = stats
    app.state.limits = limits
    limit_body_size(app, max_body_bytes(max_items * (2 * max_chars + MAX_KEY_CHARS)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # A short message without echoing the (possibly huge) input back.
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        detail = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
        if len(problems) > MAX_REPORTED_PROBLEMS:
            detail += f"; ... ({len(problems)} problems)"
        if "json" not in request.headers.get("content-type", ""):
            detail += "; send a JSON body with `Content-Type: application/json`"
        return JSONResponse({"detail": detail}, status_code=422)

    cache_info = getattr(scorer, "cache_info", None)

    def all_stats() -> dict:
        out: dict[str, Any] = stats.as_dict()
        if callable(cache_info):
            out["cache"] = cache_info()
        return out

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "scorer": type(scorer).__name__,
            "caching": batcher.caching,
            **limits,
            "stats": all_stats(),
        }

    @app.get("/stats")
    async def get_stats() -> dict:
        return all_stats()

    @app.post("/release")
    async def release(req: ReleaseRequest):
        if len(req.cache_keys) > max_items:
            return JSONResponse({"detail": f"too many keys: {len(req.cache_keys)} > max_items={max_items}"}, 413)
        await asyncio.to_thread(batcher.release, list(req.cache_keys))
        return {"released": len(req.cache_keys), "caching": batcher.caching}

    @app.post("/score")
    async def score(req: ScoreRequest):
        problem = _validate_pairs(req, max_items, max_chars)
        if problem is not None:
            return JSONResponse({"detail": problem[1]}, status_code=problem[0])
        contexts = [c if isinstance(c, str) else [m.model_dump() for m in c] for c in req.contexts]
        try:
            results = await batcher.submit(contexts, list(req.targets), req.cache_keys)
        except (ValueError, TypeError, Error) as e:
            status = 500 if isinstance(e, RemoteError) else 422
            return JSONResponse({"detail": f"{type(e).__name__}: {e}"}, status_code=status)
        except Exception as e:  # reported to the client; the server keeps serving
            logger.exception("scorer failed")
            return JSONResponse({"detail": f"scorer failed: {type(e).__name__}: {e}"}, status_code=500)
        return {
            "scores": [{"token_logprobs": list(r.token_logprobs), "mean_logprob": r.mean_logprob} for r in results]
        }

    return app


def serve(
    scorer: Scorer,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    **limits: Any,
) -> None:
    """Serve ``scorer`` with uvicorn until interrupted (blocking); ``limits`` go to :func:`create_app`."""
    import uvicorn

    warn_if_exposed(host, "scorer")
    uvicorn.run(create_app(scorer, **limits), host=host, port=port, log_level=log_level)
