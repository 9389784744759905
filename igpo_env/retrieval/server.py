"""A Search-R1-compatible retrieval server (FastAPI + uvicorn) with input validation.

Protocol (Search-R1's ``retrieval_server.py``):

- ``POST /retrieve`` with ``{"queries": [str, ...], "topk": int, "return_scores": bool}``;
  answer ``{"result": [[{"document": {"id", "contents"}, "score": float}, ...], ...]}`` when ``return_scores``, else
  ``{"result": [[{"id", "contents"}, ...], ...]}``; ``contents`` is ``"Title\\ntext"``.
- ``GET /health`` -> ``{"status": "ok", "num_docs": N, "retriever": "BM25Retriever"}``.

Unlike Search-R1, every request is checked before it reaches the index: bad JSON (400), wrong types, an empty
query list, ``topk`` outside ``[1, max_topk]`` (422), more than ``max_batch`` queries or a query longer than
``max_query_chars`` characters (413), a body larger than such a request could be (413, before it is read); a
failing search answers 500. Each error answers ``{"detail": "<message>"}`` and the server keeps serving.
The app is built by :func:`create_app` around an injected retriever (no module globals);
:class:`~igpo_env._http.ServerThread` (the HTTP plumbing shared with the scorer server, re-exported here) runs it in a
background thread on a free loopback port for tests and benchmarks.

Example:
    >>> import httpx
    >>> from igpo_env.data.toy import toy_corpus
    >>> from igpo_env.retrieval import BM25Retriever
    >>> with ServerThread(create_app(BM25Retriever.from_docs(toy_corpus()))) as server:
    ...     httpx.get(server.url + "/health").json()["num_docs"]
    8
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from igpo_env._http import DEFAULT_HOST, ServerThread, limit_body_size, max_body_bytes, warn_if_exposed
from igpo_env._validation import check_int
from igpo_env.error import DependencyNotInstalled, Error
from igpo_env.retrieval.base import Retriever

try:
    import fastapi
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, StrictBool, StrictInt, StrictStr
except ImportError as e:  # pragma: no cover - fastapi and pydantic are core dependencies
    raise DependencyNotInstalled("the retrieval server needs `pip install fastapi uvicorn pydantic`") from e

__all__ = [
    "create_app",
    "serve",
    "RetrieveRequest",
    "ServerThread",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TOPK",
    "DEFAULT_MAX_TOPK",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_QUERY_CHARS",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8000
DEFAULT_TOPK = 3
"""``topk`` used when a request omits it (Search-R1's ``retrieval_topk`` default)."""
DEFAULT_MAX_TOPK = 100
DEFAULT_MAX_BATCH = 512
DEFAULT_MAX_QUERY_CHARS = 4096


class RetrieveRequest(BaseModel):
    """Search-R1 ``/retrieve`` request body (strict types: ``"3"`` is not a valid ``topk``)."""

    queries: list[StrictStr]
    topk: StrictInt | None = None
    return_scores: StrictBool = False


def create_app(
    retriever: Retriever,
    *,
    default_topk: int = DEFAULT_TOPK,
    max_topk: int = DEFAULT_MAX_TOPK,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
) -> fastapi.FastAPI:
    """Build the FastAPI app serving ``retriever``.

    Args:
        retriever: Any :class:`Retriever`.
        default_topk: ``topk`` when a request omits it.
        max_topk: Largest accepted ``topk``.
        max_batch: Most queries accepted in one request.
        max_query_chars: Longest accepted query, in characters.

    Returns:
        A ``fastapi.FastAPI`` app; searches run one at a time (a lock guards the retriever). Its
        ``state.max_body_bytes`` is the largest request body accepted.

    Raises:
        TypeError: if ``retriever`` has no ``search``. ValueError: on a non-positive limit.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> from igpo_env.data.toy import toy_corpus
        >>> from igpo_env.retrieval import BM25Retriever
        >>> client = TestClient(create_app(BM25Retriever.from_docs(toy_corpus())))
        >>> out = client.post("/retrieve", json={"queries": ["Karsel"], "topk": 1, "return_scores": True}).json()
        >>> out["result"][0][0]["document"]["contents"].split("\\n")[0]
        'Karsel'
        >>> client.post("/retrieve", json={"queries": [], "topk": 1}).status_code
        422
    """
    if not isinstance(retriever, Retriever):
        raise TypeError(f"`retriever` must have a search(queries, k) method, got {type(retriever).__name__}")
    default_topk = check_int("default_topk", default_topk, minimum=1)
    max_topk = check_int("max_topk", max_topk, minimum=1)
    max_batch = check_int("max_batch", max_batch, minimum=1)
    max_query_chars = check_int("max_query_chars", max_query_chars, minimum=1)
    if default_topk > max_topk:
        raise ValueError(f"`default_topk` ({default_topk}) must be <= `max_topk` ({max_topk})")
    app = fastapi.FastAPI(title="igpo-env retriever", description="Search-R1-compatible retrieval server.")
    limit_body_size(app, max_body_bytes(max_batch * max_query_chars))
    lock = threading.Lock()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": message})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(400, "request body is not valid JSON")
        parts = []
        for e in errors:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg')}")
        return error(422, "; ".join(parts) + ' (expected {"queries": [str, ...], "topk": int, "return_scores": bool})')

    @app.get("/health")
    def health() -> dict[str, Any]:
        num_docs = len(retriever) if hasattr(retriever, "__len__") else None
        return {"status": "ok", "num_docs": num_docs, "retriever": type(retriever).__name__}

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest):
        queries = request.queries
        topk = default_topk if request.topk is None else request.topk
        if not queries:
            return error(422, "queries: must hold at least one query")
        if len(queries) > max_batch:
            return error(413, f"queries: {len(queries)} queries in one request, the limit is {max_batch}")
        too_long = next((i for i, q in enumerate(queries) if len(q) > max_query_chars), None)
        if too_long is not None:
            n = len(queries[too_long])
            return error(413, f"queries[{too_long}]: {n} characters, the limit is {max_query_chars}")
        if not 1 <= topk <= max_topk:
            return error(422, f"topk: must be in [1, {max_topk}], got {topk}")
        try:
            with lock:
                results = retriever.search(queries, topk)
        except (Error, RuntimeError, ValueError, TypeError, OSError) as e:  # keep serving; report the failure
            logger.exception("search failed")
            return error(500, f"search failed: {type(e).__name__}: {e}")
        if request.return_scores:
            out = [
                [{"document": {"id": d.id, "contents": d.contents}, "score": float(d.score)} for d in docs]
                for docs in results
            ]
        else:
            out = [[{"id": d.id, "contents": d.contents} for d in docs] for docs in results]
        return JSONResponse(content={"result": out})

    return app


def _uvicorn():
    try:
        import uvicorn
    except ImportError as e:
        raise DependencyNotInstalled("the retrieval server needs `pip install uvicorn`") from e
    return uvicorn


def serve(retriever: Retriever, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **limits: Any) -> None:
    """Serve ``retriever`` until interrupted (blocking). ``limits`` go to :func:`create_app`."""
    uvicorn = _uvicorn()
    warn_if_exposed(host, "retriever")
    uvicorn.run(create_app(retriever, **limits), host=host, port=port, log_level="warning")
