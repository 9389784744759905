"""mc_value: values of scripted continuations worked by hand on the toy corpus."""

import math

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.search_qa import SearchQAEnv
from igpo_env.retrieval import BM25Retriever
from igpo_env.wrappers import MCValueWrapper

RETRIEVER = BM25Retriever.from_docs(toy_corpus())


def base(**kw):
    return gym.make("SearchQA-v0", dataset=toy_qa(), retriever=RETRIEVER, **kw)


def observed(messages, word):
    return any(word in m["content"] for m in messages if m["role"] != "assistant")


def reader(messages):
    """Answer Karsel once an observation showed it, else answer Oslo (wrong for tq0)."""
    return "<answer>Karsel</answer>" if observed(messages, "Karsel") else "<answer>Oslo</answer>"


class Alternating:
    """Right answer on odd calls, wrong on even ones: k=2 continuations average 0.5."""

    def __init__(self):
        self.calls = 0

    def __call__(self, messages):
        self.calls += 1
        return "<answer>Karsel</answer>" if self.calls % 2 else "<answer>Oslo</answer>"


def test_values_by_hand():
    env = MCValueWrapper(base(), reader, k=3)
    _, info = env.reset(options={"question_id": "tq0"})
    # bare prompt: the reader answers Oslo -> V_0 = 0
    assert info["shaping"] == {
        "scheme": "mc_value",
        "reward": 0.0,
        "parts": {"value_prev": 0.0, "value": 0.0, "returns": [0.0, 0.0, 0.0]},
    }
    _, r, *_, info = env.step("<search>Ostrand</search>")  # t1 says "Its capital is Karsel" -> V_1 = 1
    assert r == 1.0 and info["shaping"]["parts"] == {"value_prev": 0.0, "value": 1.0, "returns": [1.0, 1.0, 1.0]}
    _, r, *_, info = env.step("hmm")  # invalid: V stays 1, the env's format penalty is kept
    assert r == -2.0 and info["shaping"]["reward"] == 0.0
    _, r, terminated, _, info = env.step("<answer>Karsel</answer>")  # final="outcome": not estimated
    assert terminated and r == 1.0 and math.isnan(info["shaping"]["parts"]["value"])


def test_average_over_k_and_gamma_coef():
    policy = Alternating()
    env = MCValueWrapper(base(), policy, k=2, coef=2.0, gamma=0.5)
    _, info = env.reset(options={"question_id": "tq0"})
    assert info["shaping"]["parts"]["returns"] == [1.0, 0.0] and info["shaping"]["parts"]["value"] == 0.5
    _, r, *_, info = env.step("<search>Velmora</search>")
    assert r == pytest.approx(2.0 * (0.5 * 0.5 - 0.5))
    assert policy.calls == 4  # k continuations per estimate, each one answering at once


def test_final_outcome_plus_shaping_uses_the_known_outcome():
    env = MCValueWrapper(base(), reader, k=2, final="outcome+shaping")
    env.reset(options={"question_id": "tq0"})  # V_0 = 0
    _, r, terminated, _, info = env.step("<answer>Karsel</answer>")  # a final state's value is its outcome
    assert terminated and r == pytest.approx(1.0 + (1.0 - 0.0)) and info["shaping"]["parts"]["returns"] == [1.0, 1.0]


def test_truncated_continuations_count_zero():
    env = MCValueWrapper(base(max_episode_steps=2), lambda m: "<search>Velmora</search>", k=2)
    _, info = env.reset(options={"question_id": "tq0"})
    assert info["shaping"]["parts"]["returns"] == [0.0, 0.0]
    env.step("<search>Ostrand</search>")
    _, r, terminated, truncated, info = env.step("<search>Karsel</search>")  # the time limit ends the episode
    assert truncated and not terminated and r == 0.0 and info["shaping"]["parts"]["returns"] == [0.0, 0.0]


def test_factory_and_turn_cap_without_time_limit():
    def fresh():
        return SearchQAEnv(dataset=toy_qa(), retriever=RETRIEVER)

    calls = []

    def never_answers(messages):
        calls.append(len(messages))
        return "<search>Dovia</search>"

    with pytest.raises(ValueError, match="pass `env_factory="):
        MCValueWrapper(fresh(), never_answers)
    env = MCValueWrapper(fresh(), never_answers, k=1, env_factory=fresh, max_turns=3)
    _, info = env.reset(options={"question_id": "tq0"})
    assert info["shaping"]["parts"]["returns"] == [0.0] and len(calls) == 3


def test_replay_divergence_is_reported():
    env = MCValueWrapper(base(top_k=1), reader, k=1, env_factory=lambda: base(top_k=2))
    env.reset(options={"question_id": "tq0"})  # the bare prompt replays identically
    with pytest.raises(RuntimeError, match="gave another transcript"):
        env.step("<search>Ostrand</search>")


def test_validation():
    with pytest.raises(TypeError, match="`policy` must be callable"):
        MCValueWrapper(base(), "greedy")
    with pytest.raises(ValueError, match="`k` must be an int >= 1, got 0"):
        MCValueWrapper(base(), reader, k=0)
    with pytest.raises(ValueError, match="`final` must be one of"):
        MCValueWrapper(base(), reader, final="outcome+ig")
    with pytest.raises(ValueError, match="`gamma` must be a number in"):
        MCValueWrapper(base(), reader, gamma=2.0)
    with pytest.raises(TypeError, match="`env_factory` must be callable"):
        MCValueWrapper(base(), reader, env_factory=3)
