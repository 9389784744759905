"""The one episode loop: generators plug in, LLMAgent plays through it, IG scorers get cache keys in both engines."""

from __future__ import annotations

import pytest
from rollout_helpers import ACTIONS, forced_engine
from testing_utils import one_torch_thread

import igpo_env  # noqa: F401
from agents.llm_agent import LLMAgent
from agents.rollout import (
    CallableGenerator,
    IGSpec,
    KVCacheGenerator,
    TurnGenerator,
    TurnStops,
    generate_rollouts,
    generate_rollouts_with,
    make_envs,
    run_episodes,
)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.vector import SearchQAVectorEnv
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer


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


class KeyRecorder(HFScorer):
    """HFScorer that records the cache keys it is given and the keys released."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keys, self.released = [], []

    def score(self, contexts, targets, cache_keys=None):
        self.keys.append(cache_keys)
        return super().score(contexts, targets, cache_keys=cache_keys)

    def release(self, cache_keys):
        self.released.extend(cache_keys)
        super().release(cache_keys)


def test_llm_agent_plays_the_loops_greedy_episodes(tok, retriever):
    model = tiny_causal_lm(seed=4)
    qids = ["tq0", "tq1", "tq2"]
    envs = make_envs(3, dataset=toy_qa(), retriever=retriever)
    ref, _ = generate_rollouts(model, tok, envs, qids, max_turns=3, max_turn_tokens=6, temperature=0.0)
    agent = LLMAgent(model, tok, max_new_tokens=6, batch_size=2)
    records = agent.play(envs, options=[{"question_id": q} for q in qids], max_turns=3)
    for r, rec in zip(ref, records, strict=True):
        assert rec.messages == r.messages and rec.action_types == r.action_types
        assert rec.actions == [m["content"] for m in r.messages if m["role"] == "assistant"]
        assert rec.reward == r.outcome and rec.terminated == r.terminated
    venv = SearchQAVectorEnv(3, dataset=toy_qa(), retriever=retriever, max_episode_steps=3)
    from_vector = agent.play(venv, options=[{"question_id": q} for q in qids])
    assert [r.messages for r in from_vector] == [r.messages for r in records]


def test_sampled_play_is_seeded(tok, retriever):
    model = tiny_causal_lm(seed=4)
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    opts = [{"index": 0}, {"index": 1}]
    first = LLMAgent(model, tok, do_sample=True, seed=5, max_new_tokens=6).play(envs, options=opts, max_turns=2)
    second = LLMAgent(model, tok, do_sample=True, seed=5, max_new_tokens=6).play(envs, options=opts, max_turns=2)
    assert [r.actions for r in first] == [r.actions for r in second]


def test_any_callable_is_a_generator(tok, retriever):
    answer = tok.encode("<answer> Karsel </answer>", add_special_tokens=False) + [tok.eos_token_id, 5, 5]
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    engine = lambda prompts, n: ([answer for _ in prompts], None)  # noqa: E731
    assert not isinstance(engine, TurnGenerator) and isinstance(CallableGenerator(engine), TurnGenerator)
    rollouts, stats = run_episodes(engine, tok, envs, options=[{"index": 0}, {"index": 1}])
    assert [r.question_id for r in rollouts] == [ex.id for ex in toy_qa()[:2]]
    assert rollouts[0].f1 == 1.0 and stats.generated_tokens == 2 * (len(answer) - 3)  # cut after </answer>
    with pytest.raises(ValueError, match="exactly one of `question_ids` and `options`"):
        run_episodes(engine, tok, envs)
    with pytest.raises(ValueError, match="`seeds` must hold one seed per episode"):
        run_episodes(engine, tok, envs, ["tq0"], seeds=[1, 2])
    with pytest.raises(ValueError, match="`max_completion_length` must be an int >= 1 or None"):
        run_episodes(engine, tok, envs, ["tq0"], max_completion_length=0)
    with pytest.raises(TypeError, match="`fn` must be callable"):
        CallableGenerator(3)


@pytest.mark.parametrize("engine", ["kv_cache", "callable"])
def test_caching_ig_scorer_gets_one_key_per_episode_and_release(engine, tok, retriever):
    model = tiny_causal_lm(seed=6)
    qids = ["tq0", "tq1"]
    envs = make_envs(2, dataset=toy_qa(), retriever=retriever)
    forced_turns = [ACTIONS[q] for q in qids]
    fused, _ = generate_rollouts(
        model, tok, envs, qids, max_turns=2, max_turn_tokens=64, ig=IGSpec(alias="max"), actions=forced_turns
    )
    scorer = KeyRecorder(model, tok)
    ig = IGSpec(alias="max", scorer=scorer)
    if engine == "kv_cache":
        got, _ = generate_rollouts(
            model, tok, envs, qids, max_turns=2, max_turn_tokens=64, ig=ig, actions=forced_turns
        )
    else:
        engine_fn = forced_engine(tok, fused, qids)
        got, _ = generate_rollouts_with(engine_fn, tok, envs, qids, max_turns=2, max_turn_tokens=64, ig=ig)
    assert all(keys is not None for keys in scorer.keys)
    first = scorer.keys[0]
    assert len(set(first)) == 2 and scorer.keys[1] == first  # one key per episode, kept across turns
    assert sorted(scorer.released) == sorted(set(first)) and scorer.num_cached_streams == 0
    for a, b in zip(fused, got, strict=True):
        assert a.ig_rewards == pytest.approx(b.ig_rewards, abs=1e-5)  # the fused branch == the external scorer


def test_ig_spec_and_generator_validation(tok, retriever):
    with pytest.raises(TypeError, match="`scorer` must be a Scorer"):
        IGSpec(scorer=object())
    with pytest.raises(TypeError, match="`template` must be an IGTemplate or None"):
        IGSpec(template="x")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        IGSpec(mode="diff")
    model = tiny_causal_lm()
    with pytest.raises(ValueError, match="`temperature` must be a finite number >= 0"):
        KVCacheGenerator(model, temperature=-1.0)
    with pytest.raises(ValueError, match="`top_k` must be an int >= 0"):
        KVCacheGenerator(model, top_k=-1)
    envs = make_envs(1, dataset=toy_qa(), retriever=retriever)
    model.train()
    with pytest.raises(ValueError, match=r"`actions\[0\]` has 1 turns"):
        generate_rollouts(model, tok, envs, ["tq1"], max_turns=3, actions=[["<search> q </search>"]])
    assert model.training  # restored after the error
    with pytest.raises(ValueError, match="`actions` must hold one list per rollout"):
        generate_rollouts(model, tok, envs, ["tq1"], actions=[["a"], ["b"]])


def test_turn_stops(tok):
    stops = TurnStops(tok)
    assert stops.eot == "<|im_end|>" and stops.close_id == tok.eos_token_id in stops.eot_ids
    ids = tok.encode("<think> x </think><search> q </search> more", add_special_tokens=False)
    cut = stops.cut(ids)
    assert tok.decode(cut).endswith("</search>") and stops.has_stop(cut) and not stops.has_stop(cut[:-1])
    assert stops.cut([5, tok.eos_token_id, 7]) == [5, tok.eos_token_id] and stops.ends_with_eot([5, tok.eos_token_id])
    assert not TurnStops(tok, ["</answer>"]).has_stop(cut)
    with pytest.raises(TypeError, match="`stop_strings` must be a sequence of strings"):
        TurnStops(tok, "</search>")
