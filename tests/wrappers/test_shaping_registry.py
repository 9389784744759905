"""make_shaping: every registered name builds its wrapper and writes the common info['shaping'] record."""

import math

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring import OverlapScorer
from igpo_env.wrappers import SHAPING_SCHEMES, InformationGainWrapper, make_shaping
from igpo_env.wrappers.shaping_registry import shaping_class

RETRIEVER = BM25Retriever.from_docs(toy_corpus())


def base():
    return gym.make("SearchQA-v0", dataset=toy_qa(), retriever=RETRIEVER)


KWARGS = {
    "outcome": {"metric": "em"},
    "ig": {"scorer": OverlapScorer()},
    "log_ig": {"scorer": OverlapScorer()},
    "answer_in_context": {"bonus": 0.2},
    "evidence_recall": {},
    "search_cost": {"cost": 0.1},
    "potential": {"potential_fn": lambda messages, gold: float(len(messages))},
    "mc_value": {"policy": lambda messages: "<answer>Karsel</answer>", "k": 1},
}


def test_every_scheme_is_covered_here():
    assert set(KWARGS) == set(SHAPING_SCHEMES)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_every_scheme_writes_the_common_record(name):
    env = make_shaping(name, base(), **KWARGS[name])
    assert env.scheme == name
    _, info = env.reset(options={"question_id": "tq0"})
    assert set(info["shaping"]) == {"scheme", "reward", "parts"}
    assert info["shaping"]["scheme"] == name and info["shaping"]["reward"] == 0.0
    for action in ("<search>capital of Ostrand</search>", "<answer>Karsel</answer>"):
        _, r, *_, info = env.step(action)
        record = info["shaping"]
        assert record["scheme"] == name and isinstance(record["parts"], dict)
        assert math.isfinite(record["reward"])
    assert r == 1.0 and info["outcome"] == 1.0  # every scheme leaves the right answer's outcome at 1


def test_ig_names_fix_the_mode_and_keep_the_information_gain_key():
    # OverlapScorer: p(Karsel) = 0.05 before, 0.9 once a passage names it (IG wrapper docstring)
    ig = make_shaping("ig", base(), scorer=OverlapScorer())
    log_ig = make_shaping("log_ig", base(), scorer=OverlapScorer())
    assert isinstance(ig, InformationGainWrapper) and (ig.mode, log_ig.mode) == ("prob_diff", "log_prob_diff")
    for env, expected in ((ig, 0.9 - 0.05), (log_ig, math.log(0.9) - math.log(0.05))):
        env.reset(options={"question_id": "tq0"})
        _, r, *_, info = env.step("<search>capital of Ostrand</search>")
        assert r == pytest.approx(expected) and info["shaping"]["reward"] == pytest.approx(expected)
        assert info["information_gain"]["reward"] == pytest.approx(expected)
        assert info["shaping"]["parts"]["p"] == pytest.approx(0.9)
    assert make_shaping("ig", base(), scorer=OverlapScorer(), mode="prob_diff").mode == "prob_diff"
    with pytest.raises(
        ValueError, match="scheme 'ig' fixes `mode`='prob_diff', got 'log_prob_diff'; use scheme 'log_ig'"
    ):
        make_shaping("ig", base(), scorer=OverlapScorer(), mode="log_prob_diff")


def test_unknown_names():
    with pytest.raises(ValueError, match=r"unknown shaping scheme 'gae'; choose one of \('outcome', 'ig', "):
        make_shaping("gae", base())
    with pytest.raises(ValueError, match="'gigpo_anchor' is an advantage scheme.*agents.igpo.anchor_advantages"):
        make_shaping("gigpo_anchor", base())
    with pytest.raises(ValueError, match="unknown shaping scheme"):
        shaping_class("IG")


def test_scheme_arguments_are_validated_by_the_class():
    with pytest.raises(ValueError, match="`cost` must be a finite number >= 0"):
        make_shaping("search_cost", base(), cost=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bonus'"):
        make_shaping("search_cost", base(), bonus=1.0)
