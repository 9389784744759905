import math

import pytest
import torch
from testing_utils import one_torch_thread, tiny_causal_lm, tiny_tokenizer

from igpo_env.scoring.hf import HFScorer, naive_target_logprobs
from igpo_env.scoring.templates import render_scoring_prefix

TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def _naive(model, tok, context, target):
    """Independent reference: render, tokenize separately, one full unpadded forward, log_softmax."""
    prefix = tok(render_scoring_prefix(context, tok), add_special_tokens=False)["input_ids"]
    tgt = tok(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix + tgt])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].log_softmax(-1)
    return [logp[len(prefix) - 1 + j, t].item() for j, t in enumerate(tgt)]


ACTIONS = [
    "<search>capital of Ostrand</search>",
    "\n\n  <search>Karsel founded</search>",  # leading whitespace: token boundary differs from the cached prefix
    "I think <answer>Karsel</answer>",
    "   ",
    "<search>Velmora river length</search>\n",
]
OBS = [
    "\n\n<information>Doc 1(Title: Ostrand) Ostrand is a country. Its capital is Karsel.</information>\n\n",
    "\n\n<information>Doc 1(Title: Karsel) Karsel was founded in 1204 by Ilka Maren.</information>\n\n",
    "Please use <search> or <answer> tags.",
]


def _episodes(n, turns):
    eps = []
    for e in range(n):
        msgs = [{"role": "user", "content": f"Question {e}: who founded the capital of Ostrand?" + " x" * e}]
        history = [list(msgs)]
        for t in range(turns):
            msgs = msgs + [
                {"role": "assistant", "content": ACTIONS[(e + t) % len(ACTIONS)] * (1 + (e * t) % 3)},
                {"role": "user", "content": OBS[(e * 7 + t) % len(OBS)]},
            ]
            history.append(list(msgs))
        eps.append(history)
    return eps


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_prefix_reuse_equals_naive_recompute(arch, tok):
    model = tiny_causal_lm(arch, seed=1)
    scorer = HFScorer(model, tok, batch_size=3, pad_slack=100.0)  # force padded batches
    sizes, forward = [], scorer._forward
    scorer._forward = lambda pasts, news, score_lens: sizes.append(len(news)) or forward(pasts, news, score_lens)
    eps = _episodes(5, 4)
    targets = ["Ilka Maren", "Karsel", " 412 km", "Maren"]
    worst = 0.0
    for t in range(5):
        # each env scores the gold answer and one alias under the same key (shared extend work)
        contexts, tgts, keys = [], [], []
        for e, history in enumerate(eps):
            for a in range(2):
                contexts.append(history[t])
                tgts.append(targets[(e + a) % len(targets)])
                keys.append(f"ep{e}")
        got = scorer.score(contexts, tgts, cache_keys=keys)
        for c, g, s in zip(contexts, tgts, got, strict=True):
            ref = _naive(model, tok, c, g)
            assert len(ref) == len(s.token_logprobs)
            worst = max(worst, max(abs(a - b) for a, b in zip(ref, s.token_logprobs, strict=True)))
            assert s.mean_logprob == pytest.approx(sum(ref) / len(ref), abs=TOL)
    assert worst <= TOL
    assert scorer.num_cached_streams == 5
    assert max(sizes) == 3  # rows of different lengths really shared padded passes


def test_prefix_reuse_encodes_only_new_tokens(tok):
    model = tiny_causal_lm(seed=2)
    cached, plain = HFScorer(model, tok, pad_slack=2.0), HFScorer(model, tok)
    eps = _episodes(4, 3)
    for t in range(4):
        ctx = [h[t] for h in eps]
        a = cached.score(ctx, ["Karsel"] * 4, cache_keys=list(range(4)))
        b = plain.score(ctx, ["Karsel"] * 4)
        assert [x.mean_logprob for x in a] == pytest.approx([x.mean_logprob for x in b], abs=TOL)
    assert cached.encoded_tokens < 0.6 * plain.encoded_tokens


def test_batched_without_keys_matches_naive_and_batch_size_invariant(tok):
    model = tiny_causal_lm("llama", seed=3)
    ctx = [h[-1] for h in _episodes(6, 2)] + ["a raw prefix string <answer>\n"]
    tg = ["Karsel", "Ilka Maren", "x", "412 kilometres", "Maren", "Tessa Brun", "Karsel"]
    r1 = HFScorer(model, tok, batch_size=1).score(ctx, tg)
    r7 = HFScorer(model, tok, batch_size=7, pad_slack=100.0).score(ctx, tg)
    for c, g, a, b in zip(ctx, tg, r1, r7, strict=True):
        ref = _naive(model, tok, c, g)
        assert a.token_logprobs == pytest.approx(ref, abs=TOL)
        assert b.token_logprobs == pytest.approx(ref, abs=TOL)


def test_naive_helper_matches_independent_reference(tok):
    model = tiny_causal_lm(seed=4)
    msgs = [{"role": "user", "content": "What is the capital of Ostrand?"}]
    prefix = tok(render_scoring_prefix(msgs, tok), add_special_tokens=False)["input_ids"]
    tgt = tok("Karsel", add_special_tokens=False)["input_ids"]
    assert naive_target_logprobs(model, prefix, tgt) == pytest.approx(_naive(model, tok, msgs, "Karsel"), abs=1e-6)
    with pytest.raises(ValueError, match="prefix_ids"):
        naive_target_logprobs(model, [], tgt)


def test_cache_eviction_release_and_divergent_prefix(tok):
    model = tiny_causal_lm(seed=5)
    scorer = HFScorer(model, tok, max_cached_streams=2)
    eps = _episodes(3, 2)
    scorer.score([h[0] for h in eps], ["Karsel"] * 3, cache_keys=["a", "b", "c"])
    assert scorer.num_cached_streams == 2
    scorer.release(["b", "zzz"])
    assert scorer.num_cached_streams == 1
    # a key reused for an unrelated transcript (new episode without release) is still exact
    got = scorer.score([eps[1][2]], ["Ilka Maren"], cache_keys=["c"])[0]
    assert got.token_logprobs == pytest.approx(_naive(model, tok, eps[1][2], "Ilka Maren"), abs=TOL)
    # same key, different prefixes in one call: also exact
    got = scorer.score([eps[0][1], eps[2][2]], ["Karsel", "Karsel"], cache_keys=["k", "k"])
    assert got[1].token_logprobs == pytest.approx(_naive(model, tok, eps[2][2], "Karsel"), abs=TOL)
    scorer.clear_cache()
    assert scorer.num_cached_streams == 0


def test_cache_is_bounded_in_bytes_lru_and_exact(tok):
    from igpo_env.scoring.hf import _stream_nbytes, default_cache_bytes

    model = tiny_causal_lm(seed=5)
    eps = _episodes(8, 2)
    probe = HFScorer(model, tok)
    assert probe.max_cache_bytes == default_cache_bytes("cpu") > 0
    sizes = []
    for e, history in enumerate(eps):
        probe.score([history[1]], ["Karsel"], cache_keys=[e])
        sizes.append(probe.cache_bytes - sum(sizes))
    assert all(b > 0 for b in sizes) and probe.cache_info()["bytes"] == sum(sizes)
    bound = sizes[-1] + sizes[-2] + sizes[-3] // 2  # room for two streams, not three
    scorer = HFScorer(model, tok, max_cache_bytes=bound)
    for e, history in enumerate(eps):  # 8 keys through a 2-stream budget
        got = scorer.score([history[1]], ["Karsel"], cache_keys=[e])[0]
        assert got.token_logprobs == pytest.approx(_naive(model, tok, history[1], "Karsel"), abs=TOL)
        info = scorer.cache_info()
        assert 0 < info["bytes"] <= bound and info["bytes"] == sum(_stream_nbytes(s) for s in scorer._streams.values())
    assert list(scorer._streams) == [6, 7] and scorer.evicted_streams == 6
    # least recently used goes first: touching 6 makes 7 the oldest
    scorer.score([eps[6][2]], ["Karsel"], cache_keys=[6])
    assert 6 in scorer._streams and scorer.cache_bytes <= bound
    scorer.release([6, 7])
    assert scorer.cache_info()["bytes"] == 0 == scorer.num_cached_streams
    # a stream larger than the whole budget is scored exactly but not kept; 0 disables the caches
    for budget in (1, 0):
        tiny = HFScorer(model, tok, max_cache_bytes=budget)
        got = tiny.score([eps[0][2]], ["Karsel"], cache_keys=["a"])[0]
        assert got.token_logprobs == pytest.approx(_naive(model, tok, eps[0][2], "Karsel"), abs=TOL)
        assert tiny.cache_info()["streams"] == 0 == tiny.cache_bytes and tiny.evicted_streams == 1
    with pytest.raises(ValueError, match="`max_cache_bytes` must be an int >= 0 or None, got -1"):
        HFScorer(model, tok, max_cache_bytes=-1)
    with pytest.raises(ValueError, match="`fraction`"):
        default_cache_bytes("cpu", fraction=0)


def test_bfloat16_runs_close_to_fp32(tok):
    model = tiny_causal_lm(seed=6)
    ctx = [h[-1] for h in _episodes(2, 2)]
    ref = HFScorer(model, tok).score(ctx, ["Karsel", "Maren"])
    bf = HFScorer(tiny_causal_lm(seed=6), tok, dtype="bfloat16").score(ctx, ["Karsel", "Maren"])
    for a, b in zip(ref, bf, strict=True):
        assert math.isfinite(b.mean_logprob)
        assert abs(a.mean_logprob - b.mean_logprob) < 0.2


def test_from_pretrained_roundtrip(tok, tmp_path):
    model = tiny_causal_lm(seed=7)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scorer = HFScorer.from_pretrained(str(tmp_path))
    msgs = [{"role": "user", "content": "Who founded Karsel?"}]
    assert scorer.score([msgs], ["Ilka Maren"])[0].token_logprobs == pytest.approx(
        _naive(model, tok, msgs, "Ilka Maren"), abs=TOL
    )
    # a model object saved to disk remembers its path, so the tokenizer can be found from it
    assert HFScorer(scorer.model).tokenizer is not None


def test_argument_validation(tok):
    model = tiny_causal_lm()
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        HFScorer(model, tok, dtype="fp8")
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1, got 0"):
        HFScorer(model, tok, batch_size=0)
    with pytest.raises(ValueError, match="`max_cached_streams`"):
        HFScorer(model, tok, max_cached_streams=-1)
    with pytest.raises(TypeError, match="`template` must be an IGTemplate"):
        HFScorer(model, tok, template="x")
    with pytest.raises(TypeError, match="`model` must be a path or a transformers model"):
        HFScorer(42, tok)
    with pytest.raises(ValueError, match="`tokenizer` is required"):
        HFScorer(model)
    scorer = HFScorer(model, tok)
    with pytest.raises(ValueError, match="same length"):
        scorer.score(["a"], ["b", "c"])
    with pytest.raises(ValueError, match="`cache_keys` must have one key per context"):
        scorer.score(["a"], ["b"], cache_keys=[1, 2])
    with pytest.raises(ValueError, match=r"`targets\[0\]` is empty"):
        scorer.score(["a"], [""])
    with pytest.raises(ValueError, match="renders to zero tokens"):
        scorer.score([""], ["b"])
    with pytest.raises(TypeError, match=r"`contexts\[0\]\[0\]` must be a dict"):
        scorer.score([[("user", "hi")]], ["b"])


def test_plan_batches_covers_rows_and_limits_padding():
    from igpo_env.scoring.hf import plan_batches

    new = [5, 300, 7, 290, 6, 310, 5, 5]
    past = [0, 0, 100, 0, 1000, 0, 0, 0]
    batches = plan_batches(past, new, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) <= 3 for b in batches)
    assert not any({1, 3, 5} & set(b) and {0, 2, 6, 7} & set(b) for b in batches)  # short and long rows apart
    with pytest.raises(ValueError, match="`pad_slack` must be a finite number >= 1 or None, got 0.5"):
        HFScorer(tiny_causal_lm(), tiny_tokenizer(), pad_slack=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_prefix_reuse_matches_cpu_naive(tok):
    model = tiny_causal_lm(seed=8)
    scorer = HFScorer(tiny_causal_lm(seed=8), tok, device="cuda", pad_slack=100.0)
    eps = _episodes(4, 3)
    for t in range(4):
        got = scorer.score([h[t] for h in eps], ["Karsel"] * 4, cache_keys=list(range(4)))
        for h, s in zip(eps, got, strict=True):
            assert s.token_logprobs == pytest.approx(_naive(model, tok, h[t], "Karsel"), abs=1e-4)
