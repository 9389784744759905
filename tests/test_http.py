"""The HTTP plumbing shared by the retrieval and scorer servers and clients (igpo_env._http).

Client tests run against httpx.MockTransport (no sockets) with the retry sleep recorded instead of slept, so they are
bounded and timing-independent; ServerThread tests bind 127.0.0.1.
"""

import asyncio
import tracemalloc

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from igpo_env import _http
from igpo_env._http import (
    DEFAULT_RETRIES,
    RETRY_BACKOFF_S,
    RETRY_STATUS,
    BodyLimitMiddleware,
    ServerThread,
    check_client_args,
    check_url,
    http_request,
    limit_body_size,
    max_body_bytes,
    warn_if_exposed,
)
from igpo_env.error import RemoteError

URL = "http://127.0.0.1:1/x"


@pytest.fixture
def sleeps(monkeypatch):
    """Record the retry pauses instead of sleeping."""
    recorded = []
    monkeypatch.setattr(_http.time, "sleep", recorded.append)
    return recorded


def scripted(*answers):
    """A client whose transport plays ``answers`` in order: an httpx.Response, or an exception to raise."""
    calls = []
    queue = list(answers)

    def handler(request):
        calls.append((request.method, request.url, request.content))
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler)), calls


def test_retry_policy_backoff_doubles_then_succeeds(sleeps):
    client, calls = scripted(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503, json={"detail": "busy"}),
        httpx.Response(200, json={"ok": True}),
    )
    assert http_request(client, "POST", URL, retries=3, json={"q": 1}) == {"ok": True}
    assert len(calls) == 4 and calls[0][2] == b'{"q":1}'
    assert sleeps == [RETRY_BACKOFF_S, 2 * RETRY_BACKOFF_S, 4 * RETRY_BACKOFF_S]


def test_defaults_are_the_one_policy():
    assert DEFAULT_RETRIES == 2 and RETRY_STATUS == frozenset({502, 503, 504})
    from igpo_env.retrieval import client as retrieval_client
    from igpo_env.scoring import client as scoring_client

    assert retrieval_client.DEFAULT_RETRIES is DEFAULT_RETRIES and scoring_client.DEFAULT_RETRIES is DEFAULT_RETRIES


@pytest.mark.parametrize("status", [400, 404, 422, 500])
def test_other_errors_raise_at_once_with_status_and_detail(sleeps, status):
    client, calls = scripted(httpx.Response(status, json={"detail": "bad topk"}))
    with pytest.raises(RemoteError, match=f"POST {URL} answered HTTP {status}: bad topk") as info:
        http_request(client, "POST", URL, retries=2)
    assert info.value.status == status and len(calls) == 1 and sleeps == []


def test_openai_style_error_detail(sleeps):
    client, _ = scripted(httpx.Response(404, json={"error": {"message": "model 'm' not found"}}))
    with pytest.raises(RemoteError, match="HTTP 404: model 'm' not found"):
        http_request(client, "GET", URL, retries=0)


def test_gives_up_after_retries_with_the_last_reason_and_hint(sleeps):
    client, calls = scripted(httpx.Response(502, text="gateway"), httpx.ConnectError("refused"))
    with pytest.raises(
        RemoteError, match=r"failed after 2 tries: unreachable \(ConnectError: refused\); start it"
    ) as e:
        http_request(client, "GET", URL, retries=1, backoff=0.5, hint="start it")
    assert e.value.status is None and len(calls) == 2 and sleeps == [0.5]
    client, _ = scripted(httpx.ReadTimeout("slow"))
    with pytest.raises(RemoteError, match="failed after 1 tries: timed out"):
        http_request(client, "GET", URL, retries=0)


def test_non_json_answer(sleeps):
    client, _ = scripted(httpx.Response(200, text="<html>"))
    with pytest.raises(RemoteError, match="answered non-JSON: '<html>'"):
        http_request(client, "GET", URL, retries=2)
    assert sleeps == []


def test_client_argument_checks():
    assert check_url("url", "https://h/retrieve") == "https://h/retrieve"
    with pytest.raises(ValueError, match=r"`base_url` must be an http\(s\) URL such as 'http://e', got 'h:1'"):
        check_url("base_url", "h:1", example="http://e")
    assert check_client_args(1, 0) == (1.0, 0)
    with pytest.raises(ValueError, match="`timeout` must be a finite number > 0, got -1"):
        check_client_args(-1, 0)
    with pytest.raises(ValueError, match="`retries` must be an int >= 0, got 1.5"):
        check_client_args(1, 1.5)


def test_body_limit():
    assert max_body_bytes(0) == _http.BODY_OVERHEAD_BYTES
    app = FastAPI()

    @app.post("/echo")
    def echo(body: dict):
        return body

    limit_body_size(app, 20)
    client = TestClient(app)
    assert app.state.max_body_bytes == 20
    assert client.post("/echo", json={"a": 1}).json() == {"a": 1}
    big = client.post("/echo", json={"a": "x" * 30})
    assert big.status_code == 413 and "> 20" in big.json()["detail"]


def test_body_limit_counts_a_streamed_body_and_stops_reading():
    pulled, sent, seen = [], [], []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    async def endless(scope=None):  # a chunked upload that never ends
        pulled.append(1000)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def record(message):
        sent.append(message)

    asyncio.run(BodyLimitMiddleware(app, max_bytes=2500)({"type": "http", "headers": []}, endless, record))
    assert sum(pulled) == 3000 and not seen  # stopped at the first chunk past the limit; the app never ran
    assert sent[0]["status"] == 413 and b"3000+ bytes > 2500" in sent[1]["body"]

    parts = iter([b"ab", b"cd", b"", None])

    async def chunked():
        part = next(parts)
        if part is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": part, "more_body": part != b""}

    asyncio.run(BodyLimitMiddleware(app, max_bytes=4)({"type": "http", "headers": []}, chunked, record))
    assert seen == [{"type": "http.request", "body": b"abcd", "more_body": False}, {"type": "http.disconnect"}]
    declared = {"type": "http", "headers": [(b"content-length", b"5")]}
    sent.clear()
    asyncio.run(BodyLimitMiddleware(app, max_bytes=4)(declared, endless, record))
    assert sent[0]["status"] == 413 and len(pulled) == 3  # refused on the header, nothing read
    with pytest.raises(ValueError, match="`max_bytes` must be an int >= 0"):
        BodyLimitMiddleware(app, max_bytes=-1)


def test_chunked_oversized_body_over_loopback_is_refused_without_holding_it():
    app = FastAPI()
    calls = []

    @app.post("/echo")
    def echo(body: dict):
        calls.append(body)
        return body

    limit = 1 << 20
    limit_body_size(app, limit)
    chunk = b"x" * (1 << 16)

    def upload():  # 32 MiB without a Content-Length (Transfer-Encoding: chunked)
        for _ in range(512):
            yield chunk

    with ServerThread(app) as server:
        tracemalloc.start()
        try:
            r = httpx.post(server.url + "/echo", content=upload(), headers={"content-type": "application/json"})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert r.status_code == 413 and f"> {limit} (stopped reading)" in r.json()["detail"]
        assert peak < 8 * limit  # the old Content-Length-only check let the app read all 32 MiB
        assert httpx.post(server.url + "/echo", json={"a": 1}).json() == {"a": 1}  # still serving
    assert calls == [{"a": 1}]


def test_warn_if_exposed(caplog):
    with caplog.at_level("WARNING", logger="igpo_env._http"):
        warn_if_exposed("127.0.0.1", "scorer")
        assert not caplog.records
        warn_if_exposed("0.0.0.0", "scorer")
    assert "reachable from other machines" in caplog.text


def test_server_thread_round_trip_and_stop():
    app = FastAPI()

    @app.get("/ping")
    def ping():
        return {"pong": 1}

    server = ServerThread(app).start()
    url = server.url
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        with httpx.Client(timeout=5) as client:
            assert http_request(client, "GET", url + "/ping", retries=0) == {"pong": 1}
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    finally:
        server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/ping", timeout=1)


def test_server_thread_arguments():
    assert ServerThread(FastAPI(), host="::1", port=8123).url == "http://[::1]:8123"
    for port in (-1, 65536, 1.5, True):
        with pytest.raises(ValueError, match=r"`port` must be an int in \[0, 65535\]"):
            ServerThread(FastAPI(), port=port)


def test_servers_share_the_one_server_thread():
    from igpo_env.retrieval import server as retrieval_server
    from igpo_env.scoring import server as scoring_server

    assert retrieval_server.ServerThread is ServerThread is scoring_server.ServerThread
