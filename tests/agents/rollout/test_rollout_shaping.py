"""The loop's shaping hook: envs wrapped by a make_shaping scheme have each turn's term recorded apart from the env's
reward, and everything else (tokens, masks, env rewards) is what the bare envs give."""

from __future__ import annotations

import gymnasium as gym
import pytest
from rollout_helpers import ACTIONS
from testing_utils import one_torch_thread

import igpo_env  # noqa: F401
from agents.rollout import generate_rollouts, make_envs
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
from igpo_env.wrappers import make_shaping

QIDS = ["tq0", "tq1", "tq3"]
FORCED = {**ACTIONS, "tq3": [*ACTIONS["tq3"], "<search> Velmora </search>"]}
"""The shared teacher-forced turns, tq3 given a third search so that every episode fits max_turns=3."""
SCHEMES = {"search_cost": {"cost": 0.25}, "answer_in_context": {}, "evidence_recall": {}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def policy():
    return tiny_causal_lm(), tiny_tokenizer()


def _play(policy, retriever, scheme=None, **kwargs):
    envs = make_envs(len(QIDS), dataset=toy_qa(), retriever=retriever)
    if scheme is not None:
        envs = [make_shaping(scheme, e, **kwargs) for e in envs]
    actions = [FORCED[q] for q in QIDS]
    rollouts, _ = generate_rollouts(*policy, envs, QIDS, max_turns=3, actions=actions)
    return rollouts


def _wrapper_record(retriever, scheme, kwargs, qid, actions):
    """Replay a transcript through a fresh gym.make env wrapped with the scheme: (rewards, terms, env rewards)."""
    env = make_shaping(scheme, gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever), **kwargs)
    env.reset(options={"question_id": qid})
    rewards, terms = [], []
    for a in actions:
        _, r, *_, info = env.step(a)
        rewards.append(r)
        terms.append(info["shaping"]["reward"])
    return rewards, terms


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_shaping_terms_are_recorded_per_turn_and_env_rewards_stay_the_envs(policy, retriever, scheme):
    bare = _play(policy, retriever)
    shaped = _play(policy, retriever, scheme, **SCHEMES[scheme])
    for b, s in zip(bare, shaped, strict=True):
        assert (s.completion_ids, s.env_mask, s.turn_spans, s.obs_ends) == (
            b.completion_ids,
            b.env_mask,
            b.turn_spans,
            b.obs_ends,
        )
        assert s.env_rewards == b.env_rewards and s.outcome == b.outcome
        assert b.shaping_rewards == [] and len(s.shaping_rewards) == s.num_turns
        actions = [m["content"] for m in s.messages if m["role"] == "assistant"]
        rewards, terms = _wrapper_record(retriever, scheme, SCHEMES[scheme], s.question_id, actions)
        assert s.shaping_rewards == terms
        assert [e + t for e, t in zip(s.env_rewards, s.shaping_rewards, strict=True)] == rewards
        assert s.retrieved_doc_ids == b.retrieved_doc_ids and len(s.retrieved_doc_ids) == s.num_turns


def test_hand_worked_search_cost_and_answer_in_context(policy, retriever):
    # tq0: search "Ostrand capital" (t1: "Its capital is Karsel"), answer.  tq1: search "Ilka Maren" (t3 names the
    # gold "Ilka Maren"), an invalid turn, answer.  tq3: three searches, truncated at max_turns=3; the first ("river
    # length") retrieves t0 with the gold "412 kilometres".
    cost = _play(policy, retriever, "search_cost", cost=0.25)
    assert [r.shaping_rewards for r in cost] == [[-0.25, 0.0], [-0.25, 0.0, 0.0], [-0.25, -0.25, -0.25]]
    bonus = _play(
        policy, retriever, "answer_in_context"
    )  # 0.1 once, on the first search turn that retrieves a gold alias
    assert [r.shaping_rewards for r in bonus] == [[0.1, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]]
    assert [d in r.retrieved_doc_ids[0] for r, d in zip(bonus, ["t1", "t3", "t0"], strict=True)] == [True] * 3
    assert [r.env_rewards for r in bonus] == [[0.0, 1.0], [0.0, -2.0, 1.0], [0.0, 0.0, 0.0]]
