"""IGPOConfig(turn_reward=...): every scheme by name, the rewards that reach the advantage function, GiGPO."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from test_igpo_trainer import G, _inputs, make_trainer, varied_reward
from testing_utils import one_torch_thread

import igpo_env  # noqa: F401
from agents.igpo import igpo_trainer
from agents.igpo.anchor_advantages import anchor_advantages, doc_set_states
from agents.igpo.igpo_config import IGPOConfig
from agents.igpo.turn_rewards import (
    ENV_TURN_REWARDS,
    TURN_REWARDS,
    check_turn_reward,
    gigpo_turn_advantages,
    turn_rewards_of,
)
from agents.rollout import Rollout
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.wrappers import make_shaping

BASE = dict(output_dir="/tmp/igpo-turn-reward-test", report_to="none", use_cpu=True, bf16=False)

FORCED = {
    "tq0": ["<search> Ostrand capital </search>", "<answer> Karsel </answer>"],
    "tq1": ["<search> Ilka Maren </search>", "<search> Maren </search>"],
}
"""Teacher-forced turns (max_turns=2): tq0 finds Karsel (gold) in t1 and answers it; tq1 finds the gold "Ilka Maren"
on its first search, searches again and is truncated."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


# ------------------------------------------------------------------------------------------------ config
def test_every_name_builds_a_config_and_the_refused_ones_say_why():
    assert set(TURN_REWARDS) == {
        "ig",
        "log_ig",
        "outcome",
        "answer_in_context",
        "evidence_recall",
        "search_cost",
        "gigpo_anchor",
    }
    for name in TURN_REWARDS:
        assert IGPOConfig(**BASE, turn_reward=name).turn_reward == name
    assert IGPOConfig(**BASE, turn_reward="log_ig").ig_mode == "log_prob_diff"
    assert IGPOConfig(**BASE, turn_reward="outcome", ig_coef=1.0).ig_coef == 0.0
    cfg = IGPOConfig(**BASE, turn_reward="search_cost", turn_reward_kwargs='{"cost": 0.1}')
    assert cfg.turn_reward_kwargs == {"cost": 0.1} and cfg.ig_coef == 1.0 and cfg.ig_mode == "prob_diff"
    assert IGPOConfig(**BASE).turn_reward == "ig" and IGPOConfig(**BASE).step_advantage_weight == 1.0
    with pytest.raises(ValueError, match="'mc_value'` cannot be trained with: it needs a policy .* Use 'ig'"):
        IGPOConfig(**BASE, turn_reward="mc_value")
    with pytest.raises(ValueError, match="'potential'` cannot be trained with: it needs a Python potential_fn"):
        IGPOConfig(**BASE, turn_reward="potential")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"turn_reward": "gae"}, ValueError, "`turn_reward` must be one of"),
        ({"turn_reward": "search_cost", "turn_reward_kwargs": {"bonus": 1}}, ValueError, r"takes \['cost'\]"),
        ({"turn_reward": "ig", "turn_reward_kwargs": {"alias": "max"}}, ValueError, "ig_alias, ig_mode and scorer"),
        ({"turn_reward": "outcome", "turn_reward_kwargs": {"metric": "em"}}, ValueError, "env's `reward`"),
        ({"turn_reward": "gigpo_anchor", "turn_reward_kwargs": {"w": 1}}, ValueError, r"only \['normalize_std'\]"),
        ({"turn_reward": "gigpo_anchor", "turn_reward_kwargs": {"normalize_std": 1}}, TypeError, "must be a bool"),
        ({"turn_reward": "gigpo_anchor", "advantage": "released"}, ValueError, "needs `advantage='paper'`"),
        ({"turn_reward": "gigpo_anchor", "step_advantage_weight": -1}, ValueError, "`step_advantage_weight` must"),
        ({"turn_reward_kwargs": "{cost: 1}"}, ValueError, "`turn_reward_kwargs` must be a JSON object"),
    ],
)
def test_config_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        IGPOConfig(**BASE, **kwargs)


# ------------------------------------------------------------------------------------------------ pure parts
def test_turn_rewards_of_each_kind():
    r = Rollout("q", "s", [1], turn_spans=[(0, 1), (1, 2), (2, 3)], ig_rewards=[0.2, -0.1])
    assert turn_rewards_of(r, "ig") == ([0.2, -0.1], 0.0) == turn_rewards_of(r, "log_ig")
    assert turn_rewards_of(r, "outcome") == ([0.0, 0.0], 0.0) == turn_rewards_of(r, "gigpo_anchor")
    assert turn_rewards_of(Rollout("q", "s", [1], turn_spans=[(0, 1), (1, 2)]), "ig") == ([0.0], 0.0)  # not scored
    r.shaping_rewards = [0.1, 0.0, -0.5]
    assert turn_rewards_of(r, "answer_in_context", ig_coef=2.0) == ([0.1, 0.0], -1.0)
    with pytest.raises(RuntimeError, match="not wrapped with the 'search_cost' scheme"):
        turn_rewards_of(Rollout("q", "s", [1], turn_spans=[(0, 1)]), "search_cost")
    assert turn_rewards_of(Rollout("q", "s", [1], turn_spans=[(0, 1)]), "search_cost", ig_coef=0.0) == ([], 0.0)
    assert check_turn_reward("evidence_recall", {"redundancy_coef": 0.0, "corpus": "c.jsonl"})


def test_gigpo_turn_advantages_by_hand():
    # group 0: rollouts 0 and 1 share the bare prompt (turn 1) and, after both retrieved {d1}, turn 2; rollout 2 is
    # alone in group 1 (no anchor peers: step advantages 0)
    retrieved = [[["d1"], []], [["d1"], ["d2"]], [["d1"], []]]
    adv = gigpo_turn_advantages([1.0, -1.0, 0.0], retrieved, [1.0, 0.0, 5.0], [0, 0, 1], weight=0.5, gamma=0.5)
    # returns with gamma 0.5: rollout 0 (0.5, 1.0), rollout 1 (0.0, 0.0); anchor means 0.25 and 0.5
    assert adv == [[1.0 + 0.5 * 0.25, 1.0 + 0.5 * 0.5], [-1.0 - 0.5 * 0.25, -1.0 - 0.5 * 0.5], [0.0, 0.0]]
    with pytest.raises(ValueError, match="one entry per rollout"):
        gigpo_turn_advantages([0.0], retrieved, [1.0], [0])


# ------------------------------------------------------------------------------------------------ trainer
ALTERNATIVE = ["<search> Velmora </search>", "<answer> Dovia </answer>"]
"""Teacher-forced turns of the odd rollouts of a group where a group should differ (a wrong answer)."""


def _forced_rollouts(monkeypatch, alternate=False):
    real = igpo_trainer.generate_rollouts

    def generate(model, tokenizer, envs, qids, **kwargs):
        actions = [ALTERNATIVE if alternate and i % 2 else FORCED[q] for i, q in enumerate(qids)]
        return real(model, tokenizer, envs, qids, actions=actions, **kwargs)

    monkeypatch.setattr(igpo_trainer, "generate_rollouts", generate)


def _spy_advantages(monkeypatch):
    calls = []
    real = igpo_trainer.paper_turn_advantages

    def spy(turn_rewards, outcomes, group_ids, **kwargs):
        calls.append(([list(r) for r in turn_rewards], list(outcomes)))
        return real(turn_rewards, outcomes, group_ids, **kwargs)

    monkeypatch.setattr(igpo_trainer, "paper_turn_advantages", spy)
    return calls


def _replay(retriever, scheme, kwargs, rollout):
    """The wrapper's own rewards and terms on a rollout's transcript (a fresh gym.make env, wrapped)."""
    env = make_shaping(scheme, gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever), **kwargs)
    env.reset(options={"question_id": rollout.question_id})
    rewards, terms = [], []
    for action in (m["content"] for m in rollout.messages if m["role"] == "assistant"):
        _, r, *_, info = env.step(action)
        rewards.append(r)
        terms.append(info["shaping"]["reward"])
    return rewards, terms


@pytest.mark.parametrize(
    "scheme, kwargs, expected",
    [
        # tq0: search (-0.25), answer (F1 1.0); tq1: two searches (-0.25 each), truncated: r_T = 0 - 0.25
        ("search_cost", {"cost": 0.25}, {"tq0": ([-0.25], 1.0), "tq1": ([-0.25], -0.25)}),
        # the bonus (0.1) once, on the first search that retrieves a gold alias: both first searches
        ("answer_in_context", {}, {"tq0": ([0.1], 1.0), "tq1": ([0.1], 0.0)}),
        ("evidence_recall", {}, None),  # not worked by hand: compared with the wrapper only
    ],
)
def test_hand_worked_turn_rewards_reach_the_advantage_function(
    tmp_path, retriever, monkeypatch, scheme, kwargs, expected
):
    _forced_rollouts(monkeypatch)
    calls = _spy_advantages(monkeypatch)
    trainer = make_trainer(tmp_path, retriever, turn_reward=scheme, turn_reward_kwargs=kwargs, max_turn_tokens=32)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, ["tq0", "tq1"]))
    ((turn_rewards, outcomes),) = calls
    rollouts = trainer._last_rollouts
    if expected is not None:
        assert list(zip(turn_rewards, outcomes, strict=True)) == [expected[r.question_id] for r in rollouts]
    assert any(t != [0.0] for t in turn_rewards)  # the check against the wrapper is not vacuous
    for r, t, o in zip(rollouts, turn_rewards, outcomes, strict=True):  # = the wrapper's rewards on the transcript
        assert _replay(retriever, scheme, kwargs, r)[0] == [*t, o]
    assert torch.isfinite(out["advantages"]).all()


@pytest.mark.parametrize("scheme", ENV_TURN_REWARDS)
def test_sampled_turn_rewards_equal_the_wrappers_terms(tmp_path, retriever, monkeypatch, scheme):
    calls = _spy_advantages(monkeypatch)
    trainer = make_trainer(tmp_path, retriever, reward_funcs=[varied_reward], turn_reward=scheme)
    trainer.model.train()
    trainer._generate_and_score_completions(_inputs(trainer, ["tq0", "tq2"]))
    ((turn_rewards, outcomes),) = calls
    for i, r in enumerate(trainer._last_rollouts):
        _, terms = _replay(retriever, scheme, {}, r)
        assert turn_rewards[i] == terms[:-1] and len(terms) == r.num_turns
        assert outcomes[i] == trainer._outcomes[i] + terms[-1]


def _advantages(tmp_path, retriever, **overrides):
    trainer = make_trainer(tmp_path, retriever, reward_funcs=[varied_reward], **overrides)
    trainer.model.train()
    return trainer, trainer._generate_and_score_completions(_inputs(trainer, ["tq0", "tq1"]))


def test_named_schemes_equal_their_ig_mode_and_ig_coef_forms(tmp_path, retriever):
    _, log_ig = _advantages(tmp_path / "a", retriever, turn_reward="log_ig")
    _, ig_log = _advantages(tmp_path / "b", retriever, ig_mode="log_prob_diff")
    assert torch.equal(log_ig["advantages"], ig_log["advantages"])
    _, outcome = _advantages(tmp_path / "c", retriever, turn_reward="outcome")
    _, coef0 = _advantages(tmp_path / "d", retriever, ig_coef=0.0)
    assert torch.equal(outcome["advantages"], coef0["advantages"])
    _, gigpo0 = _advantages(tmp_path / "e", retriever, turn_reward="gigpo_anchor", step_advantage_weight=0.0)
    assert torch.equal(gigpo0["advantages"], outcome["advantages"])  # omega = 0: GRPO (gamma 1)


def test_gigpo_anchor_adds_the_weighted_step_advantage_to_grpo(tmp_path, retriever, monkeypatch):
    _forced_rollouts(monkeypatch, alternate=True)  # each group: half answer right after their search, half wrong
    limits = {"max_turn_tokens": 32}
    _, grpo = _advantages(tmp_path / "a", retriever, turn_reward="outcome", **limits)
    trainer, gigpo = _advantages(
        tmp_path / "b", retriever, turn_reward="gigpo_anchor", step_advantage_weight=0.5, **limits
    )
    rollouts, outcomes = trainer._last_rollouts, trainer._outcomes
    for g in range(0, len(rollouts), G):
        group = range(g, g + G)
        keys = [doc_set_states(rollouts[i].retrieved_doc_ids) for i in group]
        step = anchor_advantages(keys, [[outcomes[i]] * len(k) for i, k in zip(group, keys, strict=True)])
        assert any(a != 0 for row in step for a in row)  # the check is not vacuous
        for j, i in enumerate(group):
            for t, (s, e) in enumerate(rollouts[i].turn_spans):
                expected = grpo["advantages"][i, s] + 0.5 * step[j][t]
                assert torch.allclose(gigpo["advantages"][i, s:e], expected.expand(e - s).float(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", TURN_REWARDS)
def test_every_scheme_runs_a_training_step(tmp_path, retriever, scheme):
    trainer = make_trainer(
        tmp_path, retriever, turn_reward=scheme, num_generations=2, per_device_train_batch_size=2, max_turn_tokens=4
    )
    trainer.train()
    assert trainer.state.global_step == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    if scheme in ENV_TURN_REWARDS:
        assert all(e.scheme == scheme for e in trainer._envs)
        assert any("rollout/shaping_mean" in h for h in trainer.state.log_history)
