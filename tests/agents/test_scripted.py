from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import igpo_env  # noqa: F401
from agents.scripted import (
    NoisyOracleAgent,
    OracleAgent,
    RandomAgent,
    format_search,
    oracle_plan,
    run_episode,
    run_vector_episodes,
)
from igpo_env.actions import parse_action
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.vector import SearchQAVectorEnv
from igpo_env.retrieval import BM25Retriever


@pytest.fixture(scope="module")
def dev_envs():
    return SearchQAVectorEnv(16, split="dev")  # default SynthWiki world + BM25


@pytest.fixture(scope="module")
def toy():
    docs = toy_corpus()
    return {"dataset": toy_qa(), "retriever": BM25Retriever.from_docs(docs)}, {d.id: d.title for d in docs}


def test_oracle_on_default_dev_set(dev_envs):
    n = len(dev_envs.envs[0].examples)
    eps = run_vector_episodes(dev_envs, OracleAgent(dev_envs), n, seed=0)
    assert len(eps) == n
    assert np.mean([e.final_info["f1"] for e in eps]) == pytest.approx(1.0)
    assert all(e.terminated and not e.truncated and not any(e.mistakes) for e in eps)
    # the oracle's searches really retrieve every supporting passage (what SFT data needs)
    examples = {q.id: q for q in dev_envs.envs[0].examples}
    found = []
    for e in eps:
        text = "".join(m["content"] for m in e.messages if m["role"] == "user")
        hops = examples[e.question_id].metadata["hops"]
        found += [f"(Title: {h['entity']})" in text for h in hops]
    assert np.mean(found) >= 0.95


def test_oracle_action_style(dev_envs):
    q = dev_envs.envs[0].examples[0]
    plan = oracle_plan(q)
    assert len(plan) == len(q.metadata["hops"]) + 1
    first, last = plan[0].text, plan[-1].text
    assert first.startswith("<think>") and "</think>\n<search> " in first and first.endswith(" </search>")
    assert last.endswith(f"<answer> {q.golden_answers[0]} </answer>")
    assert [parse_action(a.text).kind for a in plan] == ["search"] * (len(plan) - 1) + ["answer"]


def test_random_agent_scores_near_zero(dev_envs):
    eps = run_vector_episodes(dev_envs, RandomAgent(seed=0), 200, seed=1)
    assert np.mean([e.final_info.get("f1", 0.0) for e in eps]) < 0.1
    assert any(e.truncated for e in eps) or any(e.terminated for e in eps)


def test_noisy_oracle(dev_envs):
    agent = NoisyOracleAgent(dev_envs, p_wrong_query=0.3, p_redundant=0.3, p_wrong_answer=0.1, seed=0)
    eps = run_vector_episodes(dev_envs, agent, 200, seed=0)
    f1 = np.mean([e.final_info.get("f1", 0.0) for e in eps])
    assert 0.5 < f1 < 1.0
    assert any(any(e.mistakes) for e in eps)
    mean_turns = np.mean([e.turns for e in eps])
    oracle_turns = np.mean([len(oracle_plan(q)) for q in dev_envs.envs[0].examples])
    assert mean_turns > oracle_turns - 0.5  # extra searches outweigh early stops


def test_noisy_oracle_extremes(toy):
    kwargs, titles = toy
    env = gym.make("SearchQA-v0", **kwargs)
    clean = NoisyOracleAgent(env, 0.0, 0.0, 0.0, seed=0, titles=titles)
    for q in toy_qa():
        assert clean.plan(q) == oracle_plan(q, titles=titles)
    wrong = NoisyOracleAgent(env, 0.0, 0.0, 1.0, seed=0, titles=titles)
    ep = run_episode(env, wrong, options={"question_id": "tq1"})
    assert ep.turns == 1 and ep.mistakes == [True] and ep.final_info["f1"] == 0.0
    redundant = NoisyOracleAgent(env, 0.0, 1.0, 0.0, seed=0, titles=titles)
    ep = run_episode(env, redundant, options={"question_id": "tq1"})
    assert ep.mistakes == [False, True, False, True, False] and ep.final_info["f1"] == 1.0


def test_noisy_oracle_seeded(toy):
    kwargs, titles = toy
    env = gym.make("SearchQA-v0", **kwargs)
    agent = NoisyOracleAgent(env, 0.5, 0.5, 0.2, titles=titles)
    runs = [[run_episode(env, agent, seed=s).messages for s in range(5)] for _ in range(2)]
    assert runs[0] == runs[1]


def test_oracle_tool_call_protocol(toy):
    kwargs, titles = toy
    env = gym.make("SearchQA-v0", protocol="tool_call", **kwargs)
    ep = run_episode(env, OracleAgent(env, titles=titles), options={"question_id": "tq2"})
    assert ep.final_info["em"] == 1.0 and ep.turns == 3
    assert "<tool_call>" in ep.messages[1]["content"] and ep.messages[2]["role"] == "tool"


def test_oracle_without_labels_searches_question(toy):
    kwargs, _ = toy
    env = gym.make("SearchQA-v0", **kwargs)
    ep = run_episode(env, OracleAgent(env), options={"question_id": "tq0"})
    assert "<search> What is the capital of Ostrand? </search>" in ep.messages[1]["content"]
    assert ep.final_info["f1"] == 1.0


def test_format_search_tool_call_unicode():
    text = format_search("Zürich 中文", "think", protocol="tool_call")
    assert parse_action(text, "tool_call").queries == ("Zürich 中文",)


def test_agent_validation(toy):
    kwargs, _ = toy
    env = gym.make("SearchQA-v0", **kwargs)
    with pytest.raises(ValueError, match="`p_wrong_query` must be a probability"):
        NoisyOracleAgent(env, p_wrong_query=1.5)
    with pytest.raises(ValueError, match="`p_search \\+ p_answer` must be <= 1"):
        RandomAgent(p_search=0.8, p_answer=0.5)
    with pytest.raises(TypeError, match="must be a SearchQA-v0 env"):
        OracleAgent(object())
    with pytest.raises(ValueError, match="`num_episodes` must be an int >= 1"):
        run_vector_episodes(SearchQAVectorEnv(2, **kwargs), RandomAgent(), 0)
