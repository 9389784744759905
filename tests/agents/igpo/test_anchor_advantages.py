"""GiGPO anchor-state step advantages, worked by hand on small groups of SearchQA-like rollouts."""

import math

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from agents.igpo.anchor_advantages import anchor_advantages, discounted_returns, doc_set_states
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever


def test_doc_set_states_are_the_docs_before_each_action():
    assert doc_set_states([]) == []
    assert doc_set_states([["a"], ["a"], [], ["b"]]) == [
        frozenset(),
        frozenset({"a"}),
        frozenset({"a"}),
        frozenset({"a"}),
    ]
    assert doc_set_states([["b", "a"]]) == doc_set_states([["a", "b"]])  # order does not matter
    with pytest.raises(TypeError, match="list of str, got the str 'ab'"):
        doc_set_states(["ab"])


def test_doc_set_states_from_env_infos():
    env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()), top_k=1)
    env.reset(options={"question_id": "tq0"})
    per_turn = [env.step(a)[4]["retrieved_doc_ids"] for a in ("<search>Ostrand</search>", "<answer>Karsel</answer>")]
    assert doc_set_states(per_turn) == [frozenset(), frozenset({"t1"})]


def test_discounted_returns():
    assert discounted_returns([0.0, 0.0, 1.0]) == [1.0, 1.0, 1.0]
    assert discounted_returns([1.0, 2.0], gamma=0.5) == [2.0, 2.0]
    assert discounted_returns([]) == []
    with pytest.raises(ValueError, match="`gamma` must be a number in"):
        discounted_returns([1.0], gamma=1.5)


def test_group_of_four_by_hand():
    # Four rollouts of one question. State keys: docs retrieved before each turn's action.
    # r0: search -> {t1}, answer (right)      r1: search -> {t1}, answer (wrong)
    # r2: search -> {t5}, search -> {t5,t2}, answer (right)     r3: answer at once (wrong)
    keys = [
        doc_set_states([["t1"], []]),
        doc_set_states([["t1"], []]),
        doc_set_states([["t5"], ["t2"], []]),
        doc_set_states([[]]),
    ]
    returns = [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0, 1.0], [0.0]]
    # anchor {}: turn 0 of every rollout, returns [1, 0, 1, 0] -> mean 0.5; anchor {t1}: [1, 0] -> mean 0.5;
    # {t5} and {t5, t2}: one turn each -> 0
    assert anchor_advantages(keys, returns) == [[0.5, 0.5], [-0.5, -0.5], [0.5, 0.0, 0.0], [-0.5]]
    # population std of [1, 0, 1, 0] and of [1, 0] is 0.5
    normed = anchor_advantages(keys, returns, normalize_std=True, eps=1e-12)
    expected = [[1.0, 1.0], [-1.0, -1.0], [1.0, 0.0, 0.0], [-1.0]]
    assert [pytest.approx(row) for row in expected] == normed


def test_revisited_state_within_one_rollout_joins_the_anchor_group():
    keys = [["s", "s"], ["s"]]
    returns = [[3.0, 0.0], [0.0]]  # anchor s: [3, 0, 0] -> mean 1
    assert anchor_advantages(keys, returns) == [[2.0, -1.0], [-1.0]]


def test_constant_group_gives_zero_not_nan():
    out = anchor_advantages([["s"], ["s"]], [[0.7], [0.7]], normalize_std=True)
    assert out == [[0.0], [0.0]] and not any(math.isnan(a) for row in out for a in row)


def test_validation():
    with pytest.raises(ValueError, match="state keys for 2 rollouts but returns for 1"):
        anchor_advantages([["s"], ["s"]], [[1.0]])
    with pytest.raises(ValueError, match="rollout 0 has 2 state keys but 1 returns"):
        anchor_advantages([["s", "t"]], [[1.0]])
    with pytest.raises(ValueError, match=r"returns\[0\]\[0\] must be finite"):
        anchor_advantages([["s"]], [[float("nan")]])
    with pytest.raises(ValueError, match="`eps` must be a finite number > 0"):
        anchor_advantages([["s"]], [[1.0]], eps=0.0)
