"""Rollouts: KV-cached batched generation is exact, bookkeeping is consistent, fused IG equals the wrapper's."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from rollout_helpers import ACTIONS, forced_engine
from testing_utils import one_torch_thread

import igpo_env  # noqa: F401
from agents.rollout import IGSpec, evaluate_policy, generate_rollouts, make_envs
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
from igpo_env.wrappers.information_gain import InformationGainWrapper


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _full_logps(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, -1)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_kv_cached_batched_sampling_matches_full_forward(arch, tok, retriever):
    model = tiny_causal_lm(arch)
    envs = make_envs(5, dataset=toy_qa(), retriever=retriever)
    qids = ["tq0", "tq0", "tq1", "tq2", "tq2"]
    rollouts, stats = generate_rollouts(model, tok, envs, qids, max_turns=3, max_turn_tokens=10, ig=IGSpec(), seed=1)
    assert stats.total_seconds > 0 and stats.generated_tokens > 0
    for r, qid in zip(rollouts, qids, strict=True):
        assert r.question_id == qid
        assert len(r.completion_ids) == len(r.env_mask) == len(r.logprobs)
        lp = _full_logps(model, r.prompt_ids + r.completion_ids)
        p = len(r.prompt_ids)
        for k, (tid, m) in enumerate(zip(r.completion_ids, r.env_mask, strict=True)):
            if m:  # sampled tokens: the cached batched pass gave the same distribution as one full forward
                assert r.logprobs[k] == pytest.approx(lp[p + k - 1, tid].item(), abs=1e-4)
        # turn spans are exactly the env_mask == 1 tokens, observations in between are env tokens
        sampled = [k for k, m in enumerate(r.env_mask) if m]
        assert sampled == [k for s, e in r.turn_spans for k in range(s, e)]
        assert len(r.ig_rewards) == len(r.obs_ends) == r.num_turns - 1
        assert all(r.env_mask[k] == 0 for k in r.obs_ends)
        assert r.outcome == pytest.approx(sum(r.env_rewards))
        assert r.terminated or r.truncated
    # rollouts of one prompt share the prompt tokens
    assert rollouts[0].prompt_ids == rollouts[1].prompt_ids != rollouts[2].prompt_ids


def test_forced_rollout_tokens_are_the_chat_template(tok, retriever):
    model = tiny_causal_lm()
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    qids = ["tq0", "tq1"]
    rollouts, _ = generate_rollouts(
        model, tok, envs, qids, max_turns=3, max_turn_tokens=64, actions=[ACTIONS[q] for q in qids]
    )
    for r in rollouts:
        text = tok.apply_chat_template(r.messages, tokenize=False)
        assert tok.decode(r.prompt_ids + r.completion_ids) == text.rstrip("\n")
    assert rollouts[0].terminated and rollouts[0].f1 == 1.0 and rollouts[0].outcome == 1.0
    assert rollouts[1].env_rewards[1] == -2.0  # the invalid turn's format penalty, part of the episode return


@pytest.mark.parametrize("mode, alias", [("prob_diff", "first"), ("log_prob_diff", "max"), ("prob_diff", "mean")])
def test_fused_ig_equals_information_gain_wrapper(mode, alias, tok, retriever):
    model = tiny_causal_lm(seed=3)
    qids = ["tq0", "tq1", "tq3"]
    envs = make_envs(3, dataset=toy_qa(), retriever=retriever)
    rollouts, stats = generate_rollouts(
        model,
        tok,
        envs,
        qids,
        max_turns=2,
        max_turn_tokens=64,
        ig=IGSpec(mode=mode, alias=alias),
        actions=[ACTIONS[q] for q in qids],
    )
    assert stats.ig_seconds > 0
    scorer = HFScorer(model, tok)
    for r, qid in zip(rollouts, qids, strict=True):
        env = InformationGainWrapper(
            gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever, max_episode_steps=2),
            scorer,
            mode=mode,
            alias=alias,
        )
        env.reset(options={"question_id": qid})
        wrapper_rewards = []
        for action in ACTIONS[qid][: r.num_turns]:
            _, reward, terminated, truncated, _ = env.step(action)
            wrapper_rewards.append(reward)
        assert len(r.ig_rewards) == r.num_turns - 1 >= 1
        for t, ig in enumerate(r.ig_rewards):  # non-final turns: env reward + IG
            assert r.env_rewards[t] + ig == pytest.approx(wrapper_rewards[t], abs=1e-5)


def test_other_scorer_and_budget_truncation(tok, retriever):
    model = tiny_causal_lm()
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    scorer = HFScorer(model, tok)
    fused, _ = generate_rollouts(
        model, tok, envs, ["tq0"], max_turns=2, max_turn_tokens=64, ig=IGSpec(), actions=[ACTIONS["tq0"]]
    )
    ext, _ = generate_rollouts(
        model, tok, envs, ["tq0"], max_turns=2, max_turn_tokens=64, ig=IGSpec(scorer=scorer), actions=[ACTIONS["tq0"]]
    )
    assert fused[0].ig_rewards == pytest.approx(ext[0].ig_rewards, abs=1e-5)
    short, _ = generate_rollouts(model, tok, envs, ["tq1"], max_turns=5, max_turn_tokens=8, max_completion_length=20)
    assert short[0].truncated and len(short[0].completion_ids) <= 21


def test_per_rollout_seeds_make_rollouts_independent_of_the_batch_split(tok, retriever):
    """One seed per rollout: the sampled tokens are the same played as one batch of 6 or as two batches of 3 (the
    trainer's rollouts under 1 or 2 processes); one shared seed gives a batch-dependent stream."""
    model = tiny_causal_lm(seed=3)
    qids = ["tq0", "tq0", "tq1", "tq1", "tq2", "tq2"]
    seeds = [101, 102, 103, 104, 105, 106]
    envs = make_envs(6, dataset=toy_qa(), retriever=retriever)
    kwargs = dict(max_turns=3, max_turn_tokens=6, ig=IGSpec())
    whole, _ = generate_rollouts(model, tok, envs, qids, seed=seeds, **kwargs)
    first, _ = generate_rollouts(model, tok, envs[:3], qids[:3], seed=seeds[:3], **kwargs)
    second, _ = generate_rollouts(model, tok, envs[:3], qids[3:], seed=seeds[3:], **kwargs)
    assert [r.completion_ids for r in whole] == [r.completion_ids for r in first + second]
    for a, b in zip(whole, first + second, strict=True):
        assert a.ig_rewards == pytest.approx(b.ig_rewards, abs=1e-5)
    assert len({tuple(r.completion_ids) for r in whole}) > 1  # the rollouts do sample (not all the same text)
    shared, _ = generate_rollouts(model, tok, envs, qids, seed=7, **kwargs)
    half, _ = generate_rollouts(model, tok, envs[:3], qids[3:], seed=7, **kwargs)
    assert [r.completion_ids for r in shared[3:]] != [r.completion_ids for r in half]
    with pytest.raises(ValueError, match=r"`seed` must hold one seed per rollout \(6\), got 2"):
        generate_rollouts(model, tok, envs, qids, seed=[1, 2], **kwargs)


def test_validation_and_evaluate(tok, retriever):
    model = tiny_causal_lm()
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    with pytest.raises(ValueError, match="one env per rollout"):
        generate_rollouts(model, tok, envs, ["tq0"] * 3)
    with pytest.raises(ValueError, match="`max_turns` must be an int >= 1"):
        generate_rollouts(model, tok, envs, ["tq0"], max_turns=0)
    with pytest.raises(ValueError, match="`num_envs` must be"):
        make_envs(0, dataset=toy_qa(), retriever=retriever)
    res = evaluate_policy(model, tok, envs, limit=3, max_turns=2, max_turn_tokens=6)
    assert res["n"] == 3 and sum(v["n"] for v in res["by_source"].values()) == 3
    assert 0.0 <= res["f1"] <= 1.0


def test_external_engine_loop_matches_kv_cache_loop(tok, retriever):
    """The engine-agnostic loop (vLLM path) gives the same tokens, masks and IG as the KV-cache loop."""
    from agents.rollout import generate_rollouts_with

    model = tiny_causal_lm(seed=5)
    qids = ["tq0", "tq1", "tq3"]
    envs = make_envs(3, dataset=toy_qa(), retriever=retriever)
    ref, _ = generate_rollouts(
        model, tok, envs, qids, max_turns=2, max_turn_tokens=64, ig=IGSpec(), actions=[ACTIONS[q] for q in qids]
    )
    engine = forced_engine(tok, ref, qids)

    got, stats = generate_rollouts_with(
        engine, tok, envs, qids, max_turns=2, max_turn_tokens=64, ig=IGSpec(scorer=HFScorer(model, tok))
    )
    for a, b in zip(ref, got, strict=True):
        assert a.completion_ids == b.completion_ids and a.env_mask == b.env_mask and a.turn_spans == b.turn_spans
        assert a.ig_rewards == pytest.approx(b.ig_rewards, abs=1e-5)
        assert a.outcome == b.outcome
    with pytest.raises(ValueError, match="`ig.scorer` must be set"):
        generate_rollouts_with(engine, tok, envs, qids, ig=IGSpec())
