import math

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.wrappers import PotentialShapingWrapper


def make(potential_fn, **kw):
    env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    return PotentialShapingWrapper(env, potential_fn, **kw)


def length_potential(messages, gold):
    return float(len(messages))


def test_gamma_and_coef():
    env = make(length_potential, coef=2.0, gamma=0.5)
    _, info = env.reset(options={"question_id": "tq0"})
    assert info["shaping"] == {"scheme": "potential", "reward": 0.0, "parts": {"phi_prev": 1.0, "phi": 1.0}}
    _, r, *_, info = env.step("<search>Ostrand</search>")
    assert r == pytest.approx(2.0 * (0.5 * 3 - 1))
    _, r, *_, info = env.step("bad")
    assert r == pytest.approx(-2.0 + 2.0 * (0.5 * 5 - 3))
    _, r, term, *_, info = env.step("<answer>Karsel</answer>")
    assert term and r == 1.0 and math.isnan(info["shaping"]["parts"]["phi"]) and info["shaping"]["reward"] == 0.0


def test_final_outcome_plus_shaping():
    env = make(length_potential, final="outcome+shaping")
    env.reset(options={"question_id": "tq0"})
    _, r, term, *_ = env.step("<answer>Karsel</answer>")
    assert term and r == pytest.approx(1.0 + (2 - 1))


def test_validation():
    base = make(length_potential).env
    with pytest.raises(TypeError, match="`potential_fn` must be callable"):
        PotentialShapingWrapper(base, 3)
    with pytest.raises(ValueError, match=r"`gamma` must be a number in \[0, 1\]"):
        PotentialShapingWrapper(base, length_potential, gamma=1.5)
    with pytest.raises(ValueError, match="`coef` must be a finite number >= 0"):
        PotentialShapingWrapper(base, length_potential, coef=-0.1)
    with pytest.raises(ValueError, match="`final` must be one of"):
        PotentialShapingWrapper(base, length_potential, final="outcome+ig")
    env = PotentialShapingWrapper(base, lambda m, g: float("inf"))
    with pytest.raises(ValueError, match="non-finite potential"):
        env.reset()


def test_step_before_reset():
    env = make(length_potential)
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<search>Ostrand</search>")


def test_stacked_records_nest_and_rewards_add():
    inner = make(length_potential, coef=1.0)
    outer = PotentialShapingWrapper(inner, lambda m, g: 10.0 * len(m))
    outer.scheme = "outer"
    _, info = outer.reset(options={"question_id": "tq0"})
    assert info["shaping"]["scheme"] == "outer" and info["shaping"]["inner"]["scheme"] == "potential"
    _, r, *_, info = outer.step("<search>Ostrand</search>")
    assert r == pytest.approx((3 - 1) + 10.0 * (3 - 1))
    assert info["shaping"]["reward"] == pytest.approx(20.0)
    assert info["shaping"]["inner"]["reward"] == pytest.approx(2.0)
