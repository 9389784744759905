import threading
import time

import httpx
import pytest
from testing_utils import free_port

from igpo_env._http import ServerThread
from igpo_env.error import RemoteError
from igpo_env.scoring.base import OverlapScorer
from igpo_env.scoring.client import RemoteScorer
from igpo_env.scoring.server import create_app
from igpo_env.types import TargetScore

CONTEXTS = [
    "Karsel is the capital of Dovrania.",
    [{"role": "user", "content": "Who founded Ilka?"}, {"role": "assistant", "content": "<search>Ilka</search>"}],
    "Nothing relevant here.",
]
TARGETS = ["Karsel", "Ilka Maren", "Karsel"]


class SlowRecordingScorer:
    """Deterministic scorer that records every call's size and sleeps per call (so concurrent requests pile up)."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None):
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def score(self, contexts, targets):
        with self.lock:
            self.calls.append(len(targets))
        if self.fail_on is not None and self.fail_on in targets:
            raise ValueError(f"cannot score target {self.fail_on!r}")
        time.sleep(self.delay_s)
        return [
            TargetScore.from_logprobs([-0.01 * len(str(c)), -float(len(t))])
            for c, t in zip(contexts, targets, strict=True)
        ]


@pytest.fixture(scope="module")
def overlap_server():
    app = create_app(OverlapScorer(), max_wait_ms=1, max_items=8, max_chars=200)
    with ServerThread(app) as server:
        yield server


def test_end_to_end_equals_in_process(overlap_server):
    expected = OverlapScorer().score(CONTEXTS, TARGETS)
    with RemoteScorer(overlap_server.url, retries=0) as remote:
        got = remote.score(CONTEXTS, TARGETS)
        assert remote.score([], []) == []
    assert got == expected
    health = httpx.get(f"{overlap_server.url}/health").json()
    assert health["status"] == "ok" and health["max_items"] == 8 and health["stats"]["items"] >= 3


def test_client_splits_by_server_max_items(overlap_server):
    contexts, targets = CONTEXTS * 4, TARGETS * 4  # 12 pairs > max_items=8
    with RemoteScorer(overlap_server.url) as remote:
        assert remote.score(contexts, targets) == OverlapScorer().score(contexts, targets)
        assert remote.max_items == 8


GOOD = {"contexts": ["Karsel is here."], "targets": ["Karsel"]}
BAD_BODIES = {
    "contexts not a list": {"contexts": "abc", "targets": ["x"]},
    "context int": {"contexts": [1], "targets": ["x"]},
    "target int": {"contexts": ["a"], "targets": [3]},
    "targets missing": {"contexts": ["a"]},
    "extra field": {**GOOD, "topk": 3},
    "message without role": {"contexts": [[{"content": "a"}]], "targets": ["x"]},
    "message bad role": {"contexts": [[{"role": "robot", "content": "a"}]], "targets": ["x"]},
    "message content int": {"contexts": [[{"role": "user", "content": 5}]], "targets": ["x"]},
    "empty lists": {"contexts": [], "targets": []},
    "mismatched lengths": {"contexts": ["a", "b"], "targets": ["x"]},
    "too many items": {"contexts": ["a"] * 9, "targets": ["x"] * 9},
    "context too long": {"contexts": ["a" * 201], "targets": ["x"]},
    "messages too long": {"contexts": [[{"role": "user", "content": "a" * 150}] * 2], "targets": ["x"]},
    "target too long": {"contexts": ["a"], "targets": ["x" * 201]},
    "empty target": {"contexts": ["a"], "targets": [""]},
    "empty message list": {"contexts": [[]], "targets": ["x"]},
    "not an object": ["a", "b"],
    "cache_keys mismatched": {**GOOD, "cache_keys": ["a", "b"]},
    "cache_key int": {**GOOD, "cache_keys": [3]},
    "cache_key too long": {**GOOD, "cache_keys": ["k" * 257]},
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_input_is_4xx_and_server_keeps_serving(overlap_server, name):
    url = f"{overlap_server.url}/score"
    r = httpx.post(url, json=BAD_BODIES[name])
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
    assert r.json()["detail"]
    ok = httpx.post(url, json=GOOD)
    assert ok.status_code == 200 and len(ok.json()["scores"]) == 1


def test_bad_json_and_huge_body(overlap_server):
    url = f"{overlap_server.url}/score"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    huge = b"x" * (overlap_server.app.state.max_body_bytes + 1)
    r = httpx.post(url, content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]
    assert httpx.post(url, json=GOOD).status_code == 200


def test_chunked_oversized_body_is_413_and_server_keeps_serving(overlap_server):
    url = f"{overlap_server.url}/score"
    limit = overlap_server.app.state.max_body_bytes
    chunk = b" " * 65536

    def upload():  # no Content-Length: only counting while reading catches it
        for _ in range(limit // len(chunk) + 16):
            yield chunk

    r = httpx.post(url, content=upload(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"> {limit} (stopped reading)" in r.json()["detail"]
    assert httpx.post(url, json=GOOD).status_code == 200


def test_cache_bytes_stay_bounded_under_many_client_keys():
    from testing_utils import tiny_causal_lm, tiny_tokenizer

    from igpo_env.scoring.hf import HFScorer

    model, tok = tiny_causal_lm(seed=3), tiny_tokenizer()
    reference = HFScorer(model, tok)
    transcripts = [[{"role": "user", "content": f"Question {i}: who founded Karsel?" + " x" * i}] for i in range(12)]
    probe = HFScorer(model, tok)
    probe.score(transcripts[-1:], ["Ilka"], cache_keys=["probe"])
    bound = 3 * probe.cache_bytes  # room for about three of the twelve streams
    hosted = HFScorer(model, tok, max_cache_bytes=bound)
    app = create_app(hosted, max_wait_ms=1)
    with ServerThread(app) as server, RemoteScorer(server.url) as remote:
        assert app_stats(server)["cache"] == {
            "streams": 0,
            "bytes": 0,
            "max_streams": hosted.max_cached_streams,
            "max_bytes": bound,
            "evicted": 0,
        }
        for i, transcript in enumerate(transcripts):  # a client filling the cache with twelve keys
            got = remote.score([transcript], ["Ilka"], cache_keys=[f"episode-{i}"])[0]
            assert got.token_logprobs == pytest.approx(
                reference.score([transcript], ["Ilka"])[0].token_logprobs, abs=1e-5
            )
            cache = app_stats(server)["cache"]
            assert 0 < cache["bytes"] <= bound and cache["streams"] <= 3
        assert cache["evicted"] >= 9 and cache["streams"] + cache["evicted"] == len(transcripts)
        assert httpx.get(f"{server.url}/health").json()["stats"]["cache"]["bytes"] == cache["bytes"]
        assert remote.score(["Karsel is a city."], ["Karsel"])[0].mean_logprob < 0  # still serving


def test_client_reports_4xx_reason(overlap_server):
    with RemoteScorer(overlap_server.url, max_items=100) as remote:
        with pytest.raises(RemoteError, match=r"HTTP 413.*max_items=8"):
            remote.score(["a"] * 9, ["x"] * 9)
        with pytest.raises(ValueError, match="same length"):
            remote.score(["a"], [])


def test_scorer_failure_only_fails_its_own_request():
    scorer = SlowRecordingScorer(delay_s=0.05, fail_on="BAD")
    with ServerThread(create_app(scorer, max_wait_ms=100)) as server:
        results = {}

        def call(name, target):
            results[name] = httpx.post(
                f"{server.url}/score", json={"contexts": ["c"], "targets": [target]}, timeout=30
            )

        threads = [threading.Thread(target=call, args=(n, t)) for n, t in [("good", "ok"), ("bad", "BAD")]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results["good"].status_code == 200
        assert results["bad"].status_code == 422 and "cannot score target 'BAD'" in results["bad"].json()["detail"]
        assert httpx.post(f"{server.url}/score", json=GOOD).status_code == 200


def test_concurrent_clients_are_batched_and_correct():
    scorer = SlowRecordingScorer(delay_s=0.1)
    n_clients, n_requests = 8, 3
    app = create_app(scorer, max_batch=64, max_wait_ms=50)
    with ServerThread(app) as server:
        errors, results = [], {}

        def worker(k):
            with RemoteScorer(server.url, max_items=4) as remote:
                for j in range(n_requests):
                    context, target = f"client {k} request {j}", "t" * (k + 1)
                    try:
                        results[(k, j)] = remote.score([context], [target])[0]
                    except RemoteError as e:
                        errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = app.state.stats
    assert not errors
    for (k, j), score in results.items():
        assert score.token_logprobs == pytest.approx((-0.01 * len(f"client {k} request {j}"), -float(k + 1)))
    assert len(results) == n_clients * n_requests
    assert stats.items == n_clients * n_requests == sum(scorer.calls)
    assert stats.requests == n_clients * n_requests
    assert stats.max_batch_items > 1 and stats.batches < n_clients * n_requests
    assert stats.max_batch_items <= 64


def test_batches_never_exceed_max_batch():
    scorer = SlowRecordingScorer()
    app = create_app(scorer, max_batch=3, max_wait_ms=1, max_items=10)
    with ServerThread(app) as server, RemoteScorer(server.url) as remote:
        got = remote.score(["c"] * 10, ["tt"] * 10)
    assert [s.token_logprobs[1] for s in got] == [-2.0] * 10
    assert max(scorer.calls) <= 3 and sum(scorer.calls) == 10


def test_unreachable_server_raises_remote_error():
    port = free_port()
    remote = RemoteScorer(f"http://127.0.0.1:{port}", timeout=2, retries=1, max_items=4)
    with pytest.raises(RemoteError, match="failed after 2 tries.*unreachable"):
        remote.score(["a"], ["b"])


def test_malformed_server_answer_raises_remote_error():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/score")
    def score(body: dict):
        return {"scores": [{"token_logprobs": "oops"}]}

    with ServerThread(app) as server, RemoteScorer(server.url, max_items=4) as remote:
        with pytest.raises(RemoteError, match="malformed score at index 0"):
            remote.score(["a"], ["b"])
        with pytest.raises(RemoteError, match="expected `scores` with 2 entries, got 1"):
            remote.score(["a", "b"], ["b", "c"])


def test_server_thread_stops():
    server = ServerThread(create_app(OverlapScorer())).start()
    url = server.url
    assert httpx.get(f"{url}/health").status_code == 200
    server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_items": -1}, "max_items"),
        ({"max_chars": 1.5}, "max_chars"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
    ],
)
def test_create_app_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_app(OverlapScorer(), **kwargs)
    with pytest.raises(ValueError, match="score"):
        create_app(object())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "localhost:8001"}, "url"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "retries": -1}, "retries"),
        ({"url": "http://x", "max_items": 0}, "max_items"),
    ],
)
def test_remote_scorer_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RemoteScorer(**kwargs)


# ---------------------------------------------------------------- igpo-env serve scorer


def test_cli_serve_scorer_builds_hf_scorer_and_serves(tmp_path, monkeypatch):
    from testing_utils import tiny_causal_lm, tiny_tokenizer

    from igpo_env import cli
    from igpo_env.scoring import server as server_module
    from igpo_env.scoring.hf import HFScorer, default_cache_bytes

    tiny_causal_lm().save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    served = {}
    monkeypatch.setattr(server_module, "serve", lambda scorer, **kw: served.update(scorer=scorer, **kw))
    argv = ["serve", "scorer", "--model", str(tmp_path), "--port", "8123", "--device", "cpu", "--max-batch", "7"]
    assert cli.main(argv) == 0
    assert isinstance(served["scorer"], HFScorer) and served["scorer"].batch_size == 7
    assert served["scorer"].max_cache_bytes == default_cache_bytes("cpu")
    assert served["host"] == "127.0.0.1" and served["port"] == 8123 and served["max_batch"] == 7
    assert served["scorer"].score(["Karsel is a city.\n"], ["Karsel"])[0].mean_logprob < 0
    assert cli.main([*argv, "--max-cache-mb", "3"]) == 0
    assert served["scorer"].max_cache_bytes == 3 * 2**20


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--model", "/nonexistent/model"], "no such model directory"),
        (["--model", ".", "--max-batch", "0"], "max_batch"),
        (["--model", ".", "--port", "70000"], "--port"),
        (["--model", ".", "--max-wait-ms", "-1"], "max_wait_ms"),
        (["--model", ".", "--max-cache-mb", "-1"], "--max-cache-mb"),
        (["--model", ".", "--backend", "vllm", "--max-cache-mb", "8"], "hf backend"),
    ],
)
def test_cli_serve_scorer_user_errors(extra, match, capsys):
    from igpo_env import cli

    assert cli.main(["serve", "scorer", *extra]) == 2
    assert match in capsys.readouterr().err


def test_release_endpoint_validates(overlap_server):
    url = f"{overlap_server.url}/release"
    assert httpx.post(url, json={"cache_keys": ["a"]}).json() == {"released": 1, "caching": False}
    assert httpx.post(url, json={"cache_keys": "a"}).status_code == 422
    assert httpx.post(url, json={"cache_keys": ["a"] * 9}).status_code == 413


def test_cache_keys_reach_a_caching_scorer_and_results_match(monkeypatch):
    from testing_utils import tiny_causal_lm, tiny_tokenizer

    from igpo_env.scoring.hf import HFScorer

    model, tok = tiny_causal_lm(), tiny_tokenizer()
    hosted = HFScorer(model, tok)
    reference = HFScorer(model, tok)
    turns = [
        [{"role": "user", "content": "Who founded Karsel?"}],
        [{"role": "assistant", "content": "<search>Karsel</search>"}],
        [{"role": "user", "content": "<information>Doc 1(Title: Karsel) Karsel was founded by Ilka.</information>"}],
    ]
    app = create_app(hosted, max_wait_ms=1)
    with ServerThread(app) as server, RemoteScorer(server.url) as remote, RemoteScorer(server.url) as other:
        assert remote.health()["caching"] is True
        transcript = []
        for turn in turns:
            transcript = transcript + turn
            got = remote.score([transcript, transcript], ["Ilka", "Karsel"], cache_keys=["ep0", "ep0"])
            want = reference.score([transcript, transcript], ["Ilka", "Karsel"])
            for a, b in zip(got, want, strict=True):
                assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)
            other.score([turns[0]], ["Ilka"], cache_keys=["ep0"])  # same key, other client: no collision
        assert hosted.num_cached_streams == 2
        remote.release(["ep0"])
        assert hosted.num_cached_streams == 1 and app.state.stats.released == 1
        with pytest.raises(ValueError, match="one key per pair"):
            remote.score(["a"], ["b"], cache_keys=[])


def test_benchmark_helpers_smoke():
    from benchmarks.scorer_server import _markdown, measure_in_process, measure_server

    contexts, targets = CONTEXTS * 4, TARGETS * 4
    reference, stats = measure_in_process(OverlapScorer(), contexts, targets, batch=1)
    scores, server_stats = measure_server(OverlapScorer(), contexts, targets, clients=3, episode_ids=[0, 1, 2] * 4)
    assert scores == reference and server_stats["pairs"] == 12 and server_stats["forward_calls"] >= 1
    settings = {"in_process_single": {**stats, "speedup_vs_in_process_single": 1.0}}
    res = {
        "model": {"architecture": "stub", "size": "-", "parameters": 0, "dtype": "-", "device": "cpu"},
        "machine": {"cpus": 2, "torch_threads": 1, "load_avg_1min": 0.0},
        "episodes": 3,
        "workloads": {
            "w": {
                "pairs": 12,
                "min_tokens_per_pair": 1,
                "max_tokens_per_pair": 2,
                "mean_tokens_per_pair": 1.5,
                "settings": settings,
            }
        },
    }
    assert "| in_process_single |" in _markdown(res)


def test_information_gain_wrapper_over_remote_scorer_matches_in_process():
    import gymnasium as gym
    from testing_utils import tiny_causal_lm, tiny_tokenizer

    import igpo_env  # noqa: F401 - registers SearchQA-v0
    from igpo_env.data.toy import toy_corpus, toy_qa
    from igpo_env.retrieval import BM25Retriever
    from igpo_env.scoring.hf import HFScorer
    from igpo_env.wrappers.information_gain import InformationGainWrapper

    model, tok = tiny_causal_lm(), tiny_tokenizer()
    hosted = HFScorer(model, tok)
    actions = ["<search>capital of Ostrand</search>", "<search>Karsel</search>", "<answer>Karsel</answer>"]

    def play(scorer):
        env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        env = InformationGainWrapper(env, scorer)
        rewards = []
        for qid in ("tq0", "tq1"):
            env.reset(options={"question_id": qid})
            for action in actions:
                _, reward, terminated, truncated, info = env.step(action)
                rewards.append((reward, info["information_gain"]["p"]))
                if terminated or truncated:
                    break
        return rewards

    with ServerThread(create_app(hosted, max_wait_ms=1)) as server, RemoteScorer(server.url) as remote:
        remote_rewards = play(remote)
        assert app_stats(server)["released"] >= 2  # each finished episode released its prefix cache
    assert hosted.num_cached_streams == 0
    local = play(HFScorer(model, tok))
    assert len(remote_rewards) == len(local)
    for (r1, p1), (r2, p2) in zip(remote_rewards, local, strict=True):
        assert r1 == pytest.approx(r2, abs=1e-5)
        assert (p1 != p1 and p2 != p2) or p1 == pytest.approx(p2, abs=1e-5)  # NaN on the unscored answer turn


def app_stats(server):
    return httpx.get(f"{server.url}/stats").json()


def test_remote_scorer_pickles_for_subprocess_workers(overlap_server):
    import copy
    import pickle

    remote = RemoteScorer(overlap_server.url, timeout=5, retries=1)
    clone = pickle.loads(pickle.dumps(remote))
    assert (clone.url, clone.timeout, clone.retries) == (remote.url, 5.0, 1)
    assert clone._namespace != remote._namespace  # a worker's cache keys never collide with its parent's
    assert clone.score(CONTEXTS, TARGETS) == OverlapScorer().score(CONTEXTS, TARGETS)
    assert copy.deepcopy(clone).score(CONTEXTS[:1], TARGETS[:1]) == OverlapScorer().score(CONTEXTS[:1], TARGETS[:1])


def test_validation_errors_are_short_and_hint_at_content_type(overlap_server):
    url = f"{overlap_server.url}/score"
    r = httpx.post(url, content=b'{"contexts": ["a"], "targets": ["x"]}')  # no JSON content type
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"]
    r = httpx.post(url, json={"contexts": [1] * 8, "targets": ["x" * 150] * 8})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "contexts.0" in detail and "problems)" in detail and "x" * 150 not in detail
