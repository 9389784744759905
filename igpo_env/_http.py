"""HTTP plumbing shared by the retrieval and scorer servers and their clients.

Server side: :class:`ServerThread` (uvicorn in a background thread on a free loopback port, for tests, benchmarks and
notebooks), :func:`max_body_bytes` and :func:`limit_body_size` (a 413 for request bodies over a size derived from
the server's limits, enforced while the body is read: a chunked upload is cut off at the limit),
:func:`warn_if_exposed`.

Client side: :func:`http_request`, the one retry policy of every client (``RemoteRetriever``, ``RemoteScorer``,
``OpenAICompatScorer``): connection errors, timeouts and :data:`RETRY_STATUS` answers are retried
:data:`DEFAULT_RETRIES` times, after :data:`RETRY_BACKOFF_S` seconds doubling after each try; any other HTTP error
raises :class:`~igpo_env.error.RemoteError` at once with the server's explanation. :func:`check_url` and
:func:`check_client_args` validate the client arguments.

Example:
    >>> import httpx
    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> @app.get("/ping")
    ... def ping():
    ...     return {"pong": True}
    >>> with ServerThread(app) as server, httpx.Client() as client:
    ...     http_request(client, "GET", server.url + "/ping")
    {'pong': True}
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from igpo_env._validation import check_int, check_number
from igpo_env.error import RemoteError

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

__all__ = [
    "ServerThread",
    "http_request",
    "check_url",
    "check_client_args",
    "max_body_bytes",
    "limit_body_size",
    "BodyLimitMiddleware",
    "warn_if_exposed",
    "DEFAULT_HOST",
    "MAX_PORT",
    "DEFAULT_RETRIES",
    "RETRY_BACKOFF_S",
    "RETRY_STATUS",
    "MAX_ERROR_CHARS",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Servers bind loopback unless told otherwise."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.01
MAX_PORT = 2**16 - 1

JSON_BYTES_PER_CHAR = 12
"""Worst-case JSON bytes per Python character (a ``\\ud83d\\ude00`` escape), for the request body limit."""
BODY_OVERHEAD_BYTES = 65_536
"""Allowance for the JSON structure (keys, brackets, numbers) on top of the text of a request."""

DEFAULT_RETRIES = 2
"""Extra tries after a connection error, a timeout or a :data:`RETRY_STATUS` answer."""
RETRY_BACKOFF_S = 0.2
"""First pause between tries; doubled after each failed try."""
RETRY_STATUS = frozenset({502, 503, 504})
"""Statuses worth retrying (gateway / overload); other errors (a 4xx, a 500 from a failing backend) raise at once."""
MAX_ERROR_CHARS = 500
"""Most characters of a server's answer quoted in an error message."""


# ---------------------------------------------------------------------------------------------------- client side


def check_url(name: str, url: Any, example: str = "http://127.0.0.1:8000") -> str:
    """Return ``url`` if it is an ``http(s)://`` URL; raise ``ValueError`` naming ``name`` and an example otherwise.

    Example:
        >>> check_url("url", "localhost:8001", example="http://127.0.0.1:8001")
        Traceback (most recent call last):
        ...
        ValueError: `url` must be an http(s) URL such as 'http://127.0.0.1:8001', got 'localhost:8001'
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"`{name}` must be an http(s) URL such as {example!r}, got {url!r}")
    return url


def check_client_args(timeout: Any, retries: Any) -> tuple[float, int]:
    """Return ``(timeout, retries)`` as ``(float, int)``: seconds per request > 0, extra tries >= 0.

    Example:
        >>> check_client_args(30, 2)
        (30.0, 2)
        >>> check_client_args(0, 2)
        Traceback (most recent call last):
        ...
        ValueError: `timeout` must be a finite number > 0, got 0
    """
    return check_number("timeout", timeout, minimum=0, strict=True), check_int("retries", retries, minimum=0)


def _detail(response: httpx.Response) -> str:
    """Return the server's explanation of an error: FastAPI ``detail``, OpenAI ``error.message`` or the raw text."""
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


def _remote_error(message: str, status: int | None) -> RemoteError:
    error = RemoteError(message)
    error.status = status
    return error


def http_request(
    client: httpx.Client,
    method: str,
    url: str,
    retries: int = DEFAULT_RETRIES,
    json: Any = None,
    *,
    backoff: float = RETRY_BACKOFF_S,
    hint: str = "is the server running?",
) -> Any:
    """Send one HTTP request under the retry policy of this module and return the decoded JSON body.

    Connection errors, timeouts and :data:`RETRY_STATUS` answers are retried ``retries`` times, pausing ``backoff``
    seconds before the first retry and doubling after each; other HTTP errors raise at once.

    Args:
        client: An ``httpx.Client`` (its timeout applies to each try).
        method: ``"GET"`` or ``"POST"``.
        url: Full URL.
        retries: Extra tries after the first.
        json: JSON body (POST).
        backoff: Seconds before the first retry.
        hint: Appended to the message when the server cannot be reached (e.g. how to start it).

    Returns:
        The JSON-decoded body.

    Raises:
        RemoteError: The server is unreachable, answered an HTTP error (the message carries the status and the
            server's explanation) or did not answer JSON. ``RemoteError.status`` holds the HTTP status (or None).

    Example:
        >>> import httpx
        >>> answers = iter([httpx.Response(503, json={"detail": "busy"}), httpx.Response(200, json={"ok": 1})])
        >>> client = httpx.Client(transport=httpx.MockTransport(lambda request: next(answers)))
        >>> http_request(client, "GET", "http://127.0.0.1:1/x", retries=1, backoff=0.0)
        {'ok': 1}
    """
    import httpx

    last = ""
    delay = backoff
    for attempt in range(retries + 1):
        if attempt:
            logger.warning("%s %s %s; retry %d of %d in %.2fs", method, url, last, attempt, retries, delay)
            time.sleep(delay)
            delay *= 2
        try:
            response = client.request(method, url, json=json)
        except httpx.TimeoutException as e:
            last = f"timed out ({type(e).__name__}); raise `timeout` if the server is busy"
            continue
        except httpx.TransportError as e:
            last = f"unreachable ({type(e).__name__}: {e}); {hint}"
            continue
        if response.status_code in RETRY_STATUS:
            last = f"answered HTTP {response.status_code}: {_detail(response)}"
            continue
        if response.status_code >= httpx.codes.BAD_REQUEST:
            message = f"{method} {url} answered HTTP {response.status_code}: {_detail(response)}"
            raise _remote_error(message, response.status_code)
        try:
            return response.json()
        except ValueError as e:
            raise RemoteError(f"{method} {url} answered non-JSON: {response.text[:MAX_ERROR_CHARS]!r}") from e
    raise _remote_error(f"{method} {url} failed after {retries + 1} tries: {last}", None)


# ---------------------------------------------------------------------------------------------------- server side


def max_body_bytes(max_chars: int) -> int:
    """Largest request body (bytes) a server accepts when a valid request holds at most ``max_chars`` characters.

    Example:
        >>> max_body_bytes(1000)
        77536
    """
    return max_chars * JSON_BYTES_PER_CHAR + BODY_OVERHEAD_BYTES


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 to a request body over ``max_bytes``, counted while the body arrives.

    A declared ``Content-Length`` over the limit is refused before anything is read. Otherwise (a chunked upload, or
    a ``Content-Length`` that understates the body) the body is read, at most ``max_bytes`` of it, before the app
    runs; the app then gets it in one piece. The server discards the rest of a refused body without keeping it.

    Args:
        app: The ASGI app to protect.
        max_bytes: Largest body accepted.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = check_int("max_bytes", max_bytes, minimum=0)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Check the declared length, read the body up to the limit, then call the app with it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, f"request body of {int(declared)} bytes > {self.max_bytes}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                pending = [message]
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, f"request body of {size}+ bytes > {self.max_bytes} (stopped reading)")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break
        del chunks

        async def replay() -> dict:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Any, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_body_size(app: FastAPI, max_bytes: int) -> None:
    """Answer 413 to request bodies over ``max_bytes``, whether declared (``Content-Length``) or streamed (chunked).

    Adds :class:`BodyLimitMiddleware` and sets ``app.state.max_body_bytes``. A declared length over the limit is
    refused before the body is read; an undeclared (chunked) body is counted as it arrives and refused as soon as it
    passes the limit, so the server never holds more than ``max_bytes`` of it.

    Example:
        >>> from fastapi import FastAPI
        >>> from fastapi.testclient import TestClient
        >>> app = FastAPI()
        >>> limit_body_size(app, 10)
        >>> client = TestClient(app)
        >>> client.post("/anything", content=b"x" * 11).json()
        {'detail': 'request body of 11 bytes > 10'}
        >>> client.post("/anything", content=iter([b"x" * 6, b"x" * 6])).json()  # chunked: no Content-Length
        {'detail': 'request body of 12+ bytes > 10 (stopped reading)'}
    """
    app.state.max_body_bytes = max_bytes
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)


def warn_if_exposed(host: str, what: str) -> None:
    """Log a warning when a server binds beyond loopback (our servers have no authentication)."""
    if host not in LOOPBACK_HOSTS:
        logger.warning(
            "serving the %s on %s: it is reachable from other machines and has no authentication", what, host
        )


class ServerThread:
    """Run an ASGI app with uvicorn in a daemon thread on a free port; a context manager.

    The socket is bound before the thread starts (``port=0`` picks a free one), so :attr:`url` is valid at once,
    and :meth:`start` returns only when the server accepts requests.

    Args:
        app: The ASGI app (e.g. from :func:`igpo_env.scoring.server.create_app` or
            :func:`igpo_env.retrieval.server.create_app`).
        host: Interface to bind (loopback by default).
        port: Port; 0 picks a free one.
        log_level: uvicorn log level.

    Raises:
        ValueError: ``port`` is not an int in [0, 65535].

    Example:
        >>> from fastapi import FastAPI
        >>> with ServerThread(FastAPI()) as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self.port = check_int("port", port, minimum=0, maximum=MAX_PORT)
        self.log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ServerThread:
        """Bind, start the thread and wait until the server is up.

        Raises:
            RuntimeError: The server was already started.
            RemoteError: The server did not come up within ``SERVER_START_TIMEOUT_S`` seconds.
        """
        import uvicorn

        if self._thread is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (else Nagle adds ~45 ms per response)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RemoteError(f"server on {self.url} failed to start")
            time.sleep(_POLL_S)
        return self

    def stop(self) -> None:
        """Ask the server to exit and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SERVER_STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("server thread on %s did not stop within %s s", self.url, SERVER_STOP_TIMEOUT_S)
        self._thread = None
        self._server = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
