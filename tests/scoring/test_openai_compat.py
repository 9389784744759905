"""OpenAICompatScorer against a fake vLLM-style completions server computing real log-probs with a tiny HF model."""

import threading

import pytest
import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from testing_utils import free_port, tiny_causal_lm, tiny_tokenizer

from igpo_env._http import ServerThread
from igpo_env.error import RemoteError
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.openai_compat import OpenAICompatScorer
from igpo_env.scoring.spans import encode_pair, gather_logprobs, target_span_from_offsets
from igpo_env.scoring.templates import render_scoring_prefix

TOL = 1e-5
MODEL_NAME = "tiny-qwen2"

MESSAGES = [
    [{"role": "user", "content": "What is the capital of Ostrand?"}],
    [
        {"role": "user", "content": "Who founded Karsel?"},
        {"role": "assistant", "content": "<search>Karsel founder</search>"},
        {"role": "user", "content": "\n\n<information>Doc 1(Title: Karsel) Karsel is a city.</information>\n\n"},
    ],
]
TARGETS = ["Karsel", "Ilka Maren"]


def make_fake_server(model, tokenizer, reject_zero_max_tokens=False, bos=None, break_response=None):
    """A vLLM-like OpenAI completions endpoint: echo + prompt log-probs from `model` (greedy for max_tokens)."""
    app = FastAPI()
    app.state.requests = []
    lock = threading.Lock()

    @app.post("/v1/completions")
    def completions(body: dict):
        app.state.requests.append(body)
        if body.get("model") != MODEL_NAME:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404)
        max_tokens = body.get("max_tokens", 16)
        if max_tokens == 0 and reject_zero_max_tokens:
            return JSONResponse({"error": {"message": "max_tokens must be at least 1, got 0."}}, status_code=400)
        prompts = body["prompt"]
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        choices = []
        for index, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                ids = tokenizer.encode(prompt, add_special_tokens=False)
                if bos is not None:
                    ids = [tokenizer.convert_tokens_to_ids(bos)] + ids
            else:
                ids = list(prompt)
            with lock, torch.inference_mode():
                for _ in range(max_tokens):  # greedy generation
                    logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                    ids.append(int(logits.argmax()))
                logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            token_logprobs = [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
            tokens = [tokenizer.decode([t]) for t in ids]
            offsets, pos = [], 0
            for t in tokens:
                offsets.append(pos)
                pos += len(t)
            top = [None] + [{tokens[i]: token_logprobs[i]} for i in range(1, len(ids))]
            logprobs = {
                "text_offset": offsets,
                "token_logprobs": token_logprobs,
                "tokens": tokens,
                "top_logprobs": top,
            }
            choices.append({"index": index, "text": "".join(tokens), "logprobs": logprobs, "finish_reason": "length"})
        choices.reverse()  # servers may answer out of order; the client sorts by index
        if break_response == "drop_choice":
            choices = choices[1:]
        elif break_response == "no_logprobs":
            for c in choices:
                c["logprobs"] = None
        elif break_response == "server_error":
            return JSONResponse({"error": {"message": "CUDA out of memory"}}, status_code=500)
        return {"id": "cmpl-1", "object": "text_completion", "model": MODEL_NAME, "choices": choices}

    return app


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(), tiny_tokenizer()


@pytest.fixture(scope="module")
def hf_scorer(lm):
    return HFScorer(lm[0], lm[1])


@pytest.fixture(scope="module")
def server(lm):
    app = make_fake_server(*lm)
    with ServerThread(app) as srv:
        srv.requests = app.state.requests
        yield srv


def max_diff(a, b):
    assert [len(x.token_logprobs) for x in a] == [len(x.token_logprobs) for x in b]
    return max(
        abs(x - y) for s, t in zip(a, b, strict=True) for x, y in zip(s.token_logprobs, t.token_logprobs, strict=True)
    )


def test_token_id_path_equals_hf_scorer(lm, hf_scorer, server):
    contexts = MESSAGES + [render_scoring_prefix(MESSAGES[0], lm[1]), "plain text context\n"]
    targets = TARGETS + ["Karsel", "Ostrand"]
    with OpenAICompatScorer(f"{server.url}/v1", MODEL_NAME, tokenizer=lm[1], batch_size=3) as scorer:
        got = scorer.score(contexts, targets)
    assert max_diff(got, hf_scorer.score(contexts, targets)) <= TOL
    last = server.requests[-1]
    assert last["echo"] is True and last["max_tokens"] == 0 and isinstance(last["prompt"][0], list)


def test_text_path_equals_hf_scorer(lm, hf_scorer, server):
    contexts = [render_scoring_prefix(m, lm[1]) for m in MESSAGES]  # IGPO prefixes end on a token boundary
    with OpenAICompatScorer(f"{server.url}/v1", MODEL_NAME) as scorer:
        got = scorer.score(contexts, TARGETS)
        assert isinstance(server.requests[-1]["prompt"][0], str)
        with pytest.raises(ValueError, match="need `tokenizer=`"):
            scorer.score(MESSAGES, TARGETS)
    assert max_diff(got, hf_scorer.score(contexts, TARGETS)) <= TOL


def test_max_tokens_fallback_and_bos_shift(lm, hf_scorer):
    app = make_fake_server(*lm, reject_zero_max_tokens=True, bos="<|endoftext|>")
    contexts = [render_scoring_prefix(m, lm[1]) for m in MESSAGES]
    with ServerThread(app) as srv, OpenAICompatScorer(f"{srv.url}/v1", MODEL_NAME, retries=0) as scorer:
        got = scorer.score(contexts, TARGETS)
        assert scorer.max_tokens == 1
        scorer.score(contexts, TARGETS)
    assert [r["max_tokens"] for r in app.state.requests] == [0, 1, 1]  # the fallback is remembered
    # the server prepended a BOS token: log-probs differ from HFScorer's, so compare with a BOS-prefixed reference
    bos_id = lm[1].convert_tokens_to_ids("<|endoftext|>")
    for score, context, target in zip(got, contexts, TARGETS, strict=True):
        prefix = [bos_id] + lm[1].encode(context, add_special_tokens=False)
        ids = prefix + lm[1].encode(target, add_special_tokens=False)
        with torch.inference_mode():
            logp = lm[0](input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        ref = [float(logp[i - 1, ids[i]]) for i in range(len(prefix), len(ids))]
        assert score.token_logprobs == pytest.approx(ref, abs=TOL)


def test_token_merge_across_context_end_is_a_clear_error(lm, server):
    # "...is Kar" + "sel" tokenizes as one text to [..., " is", " Karsel"]: no token starts where the target does
    with OpenAICompatScorer(f"{server.url}/v1", MODEL_NAME) as scorer:
        with pytest.raises(ValueError, match="merged the context's end with the target"):
            scorer.score(["The capital is Kar"], ["sel"])


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("drop_choice", "answered 1 choices for 2 prompts"),
        ("no_logprobs", "without `logprobs`"),
        ("server_error", "HTTP 500: CUDA out of memory"),
    ],
)
def test_malformed_and_error_answers_raise_remote_error(lm, mode, match):
    app = make_fake_server(*lm, break_response=mode)
    with ServerThread(app) as srv, OpenAICompatScorer(f"{srv.url}/v1", MODEL_NAME, retries=0) as scorer:
        with pytest.raises(RemoteError, match=match):
            scorer.score(["a\n", "b\n"], ["Karsel", "Karsel"])


def test_unknown_model_and_unreachable_server(lm, server):
    with OpenAICompatScorer(f"{server.url}/v1", "other-model", retries=0) as scorer:
        with pytest.raises(RemoteError, match="HTTP 404: model 'other-model' not found"):
            scorer.score(["a\n"], ["Karsel"])
    port = free_port()
    with OpenAICompatScorer(f"http://127.0.0.1:{port}/v1", MODEL_NAME, retries=0, timeout=2) as scorer:
        with pytest.raises(RemoteError, match="unreachable"):
            scorer.score(["a\n"], ["Karsel"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "127.0.0.1:8000"}, "base_url|url"),
        ({"model": ""}, "model"),
        ({"timeout": -1}, "timeout"),
        ({"retries": 1.5}, "retries"),
        ({"batch_size": 0}, "batch_size"),
        ({"logprobs": 99}, "logprobs"),
        ({"tokenizer": 3}, "tokenizer"),
    ],
)
def test_constructor_validates(kwargs, match):
    args = {"base_url": "http://127.0.0.1:8000/v1", "model": MODEL_NAME, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        OpenAICompatScorer(**args)


# ---------------------------------------------------------------- the pure span helpers


def test_encode_pair_matches_hf_scorer_convention(lm, hf_scorer):
    ids, start = encode_pair(lm[1], MESSAGES[1], "Ilka Maren")
    assert ids[:start] == hf_scorer.prefix_ids(MESSAGES[1])
    assert ids[start:] == hf_scorer.target_ids("Ilka Maren")
    with pytest.raises(ValueError, match="no tokens"):
        encode_pair(lm[1], "", "x")


def test_target_span_from_offsets_real_tokenizer(lm):
    tok = lm[1]
    context, target = render_scoring_prefix(MESSAGES[0], tok), "Ilka Maren"
    ids = tok.encode(context + target, add_special_tokens=False)
    tokens = [tok.decode([t]) for t in ids]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    start, end = target_span_from_offsets(offsets, tokens, len(ids), len(context + target), len(context))
    assert "".join(tokens[start:end]) == target and end == len(ids)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], ["a"], 1, 2, 1), "2 text offsets for 1 tokens"),
        (([0, 1], ["a", "b"], 3, 2, 1), "n_prompt_tokens"),
        (([0, 1], ["a", "b"], 2, 2, 2), "context_chars"),
        (([0], ["ab"], 1, 2, 1), "no prompt token starts at character 1"),
        (([0, 1], ["a", "b"], 2, 2, 0), "first prompt token"),
    ],
)
def test_target_span_from_offsets_errors(args, match):
    with pytest.raises(ValueError, match=match):
        target_span_from_offsets(*args)


def test_gather_logprobs_checks_span():
    assert gather_logprobs([None, -1, -2.5], 1, 3) == [-1.0, -2.5]
    with pytest.raises(ValueError, match="not inside"):
        gather_logprobs([None, -1.0], 1, 3)
    with pytest.raises(ValueError, match="not inside"):
        gather_logprobs([None, -1.0], 0, 2)
    with pytest.raises(ValueError, match="no log-prob for prompt token 1"):
        gather_logprobs([-1.0, None, -1.0], 1, 3)


def test_pickles_with_settings(lm, server):
    import pickle

    scorer = OpenAICompatScorer(f"{server.url}/v1", MODEL_NAME, tokenizer=lm[1], api_key="k", batch_size=2)
    clone = pickle.loads(pickle.dumps(scorer))
    assert (clone.base_url, clone.batch_size, clone._api_key) == (scorer.base_url, 2, "k")
    assert clone.score(["a\n"], ["Karsel"]) == scorer.score(["a\n"], ["Karsel"])
