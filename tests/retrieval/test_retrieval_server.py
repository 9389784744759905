import httpx
import pytest

from igpo_env._http import ServerThread
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.error import RemoteError
from igpo_env.retrieval import BM25Retriever, RemoteRetriever, get_retriever
from igpo_env.retrieval.server import create_app


@pytest.fixture(scope="module")
def local():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def server(local):
    app = create_app(local, max_topk=5, max_batch=4, max_query_chars=50)
    with ServerThread(app) as s:
        yield s


def test_binds_loopback_random_port(server):
    assert server.host == "127.0.0.1" and server.port > 0
    health = httpx.get(server.url + "/health").json()
    assert health == {"status": "ok", "num_docs": 8, "retriever": "BM25Retriever"}


def test_search_r1_shapes(server):
    url = server.url + "/retrieve"
    body = httpx.post(url, json={"queries": ["Karsel", "Velmora"], "topk": 2, "return_scores": True}).json()
    assert list(body) == ["result"] and len(body["result"]) == 2
    hit = body["result"][0][0]
    assert set(hit) == {"document", "score"} and set(hit["document"]) == {"id", "contents"}
    assert hit["document"]["contents"].startswith("Karsel\n")
    plain = httpx.post(url, json={"queries": ["Karsel"], "topk": 2}).json()
    assert set(plain["result"][0][0]) == {"id", "contents"}
    default_k = httpx.post(url, json={"queries": ["Karsel"]}).json()
    assert len(default_k["result"][0]) == 3


def test_remote_round_trip_matches_local(server, local):
    queries = [q.question for q in toy_qa()]
    with RemoteRetriever(server.url + "/retrieve", max_batch=4) as remote:
        assert remote.search(queries, 3) == local.search(queries, 3)
        assert remote.search(queries * 3, 2) == local.search(queries * 3, 2)  # split into max_batch chunks
        assert remote.health()["num_docs"] == 8
    assert isinstance(get_retriever(server.url + "/retrieve", timeout=5.0), RemoteRetriever)


@pytest.mark.parametrize(
    ("kwargs", "status", "match"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"queries": "Karsel", "topk": 3}}, 422, "queries"),
        ({"json": {"queries": [1, 2], "topk": 3}}, 422, "queries.0"),
        ({"json": {"queries": ["a"], "topk": "3"}}, 422, "topk"),
        ({"json": {"queries": ["a"], "topk": 3, "return_scores": "yes"}}, 422, "return_scores"),
        ({"json": {"topk": 3}}, 422, "queries: Field required"),
        ({"json": [1, 2]}, 422, "expected"),
        ({"json": {"queries": [], "topk": 3}}, 422, "at least one query"),
        ({"json": {"queries": ["a"], "topk": 0}}, 422, r"topk: must be in \[1, 5\], got 0"),
        ({"json": {"queries": ["a"], "topk": -1}}, 422, "got -1"),
        ({"json": {"queries": ["a"], "topk": 6}}, 422, "got 6"),
        ({"json": {"queries": ["a"] * 5, "topk": 1}}, 413, "5 queries in one request, the limit is 4"),
        ({"json": {"queries": ["ok", "x" * 51], "topk": 1}}, 413, r"queries\[1\]: 51 characters"),
    ],
)
def test_bad_requests_then_good(server, kwargs, status, match):
    import re

    url = server.url + "/retrieve"
    r = httpx.post(url, **kwargs)
    assert r.status_code == status, r.text
    assert re.search(match, r.json()["detail"]), r.json()
    good = httpx.post(url, json={"queries": ["Karsel"], "topk": 1, "return_scores": True})
    assert good.status_code == 200 and good.json()["result"][0][0]["document"]["id"] == "t2"


def test_body_larger_than_any_valid_request_is_413(server, local):
    limit = create_app(local, max_topk=5, max_batch=4, max_query_chars=50).state.max_body_bytes
    assert limit >= 4 * 50 * 12  # room for every valid request, even one of escaped characters
    r = httpx.post(server.url + "/retrieve", content=b" " * (limit + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"> {limit}" in r.json()["detail"]


def test_remote_errors(server):
    with RemoteRetriever(server.url + "/retrieve") as remote:
        with pytest.raises(RemoteError, match="HTTP 422"):
            remote.search(["a"], 99)
    with ServerThread(create_app(BM25Retriever.from_docs(toy_corpus()))) as s:
        dead_url = s.url + "/retrieve"
    with pytest.raises(RemoteError, match=r"failed after 2 tries: unreachable .*igpo-env serve retriever"):
        RemoteRetriever(dead_url, retries=1, backoff=0.0, timeout=2.0).search(["a"], 1)
    with pytest.raises(ValueError, match="`url`"):
        RemoteRetriever("localhost:8000/retrieve")
    with pytest.raises(ValueError, match="`retries`"):
        RemoteRetriever("http://127.0.0.1:1/retrieve", retries=-1)


def test_malformed_responses():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    answers = {
        "noresult": {"answer": []},
        "count": {"result": []},
        "nodoc": {"result": [[{"document": {"id": 1}, "score": 1.0}]]},
        "score": {"result": [[{"document": {"id": 1, "contents": "T\nx"}, "score": "high"}]]},
        "ok_title_text": {"result": [[{"id": 7, "title": "T", "text": "x"}]]},
    }

    @app.post("/{name}")
    def answer(name: str):
        return answers[name]

    @app.post("/boom/retrieve")
    def boom():
        return JSONResponse(status_code=503, content={"detail": "overloaded"})

    with ServerThread(app) as s:
        for name, match in [
            ("noresult", "expected {'result'"),
            ("count", "0 result lists for 1"),
            ("nodoc", "neither 'contents' nor 'text'"),
            ("score", "expected a number"),
        ]:
            with pytest.raises(RemoteError, match=match):
                RemoteRetriever(f"{s.url}/{name}").search(["q"], 1)
        doc = RemoteRetriever(f"{s.url}/ok_title_text").search(["q"], 1)[0][0]
        assert (doc.id, doc.title, doc.text, doc.score) == ("7", "T", "x", 0.0)
        with pytest.raises(RemoteError, match="HTTP 503: .*overloaded"):
            RemoteRetriever(f"{s.url}/boom/retrieve", retries=1, backoff=0.0).search(["q"], 1)


def test_create_app_validation(local):
    with pytest.raises(TypeError, match="`retriever`"):
        create_app(object())
    with pytest.raises(ValueError, match="`max_topk`"):
        create_app(local, max_topk=0)
    with pytest.raises(ValueError, match="`default_topk`"):
        create_app(local, default_topk=10, max_topk=5)


class _Failing:
    def __init__(self):
        self.calls = 0

    def search(self, queries, k):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("index exploded")
        return BM25Retriever.from_docs(toy_corpus()).search(queries, k)


def test_search_failure_is_500_and_server_keeps_serving():
    with ServerThread(create_app(_Failing())) as s:
        r = httpx.post(s.url + "/retrieve", json={"queries": ["Karsel"], "topk": 1})
        assert r.status_code == 500 and "index exploded" in r.json()["detail"]
        r = httpx.post(s.url + "/retrieve", json={"queries": ["Karsel"], "topk": 1})
        assert r.status_code == 200
