"""Tests of the credit-assignment benchmark: its metric functions on hand-made inputs and the JSON it writes."""

import json

import pytest

from benchmarks._credit_metrics import (
    GROUP_SIZES,
    credit_auroc,
    gigpo_advantage_fn,
    gigpo_group_advantages,
    group_is_zero_variance,
    new_support_labels,
    paper_advantage_fn,
    reward_density,
    spearman,
    trainer_rewards,
    zero_variance_rate,
)

SCHEMES = (
    "outcome",
    "ig",
    "log_ig",
    "answer_in_context",
    "evidence_recall",
    "search_cost",
    "potential",
    "mc_value",
    "gigpo_anchor",
)


def test_auroc_of_perfect_reversed_and_uninformative_rankings():
    labels = [True, True, False, False, False]
    assert credit_auroc([0.9, 0.8, 0.1, 0.0, -1.0], labels) == 1.0
    assert credit_auroc([-0.9, -0.8, 0.1, 0.0, 1.0], labels) == 0.0
    assert credit_auroc([0.0] * 5, labels) == 0.5  # a scheme that gives every turn the same value
    assert credit_auroc([0.3, 0.1], [True, True]) is None  # one class: undefined
    with pytest.raises(ValueError, match="one label per value"):
        credit_auroc([0.1], [True, False])


def test_spearman_is_rank_based_and_undefined_for_constants():
    assert spearman([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 400.0]) == pytest.approx(1.0)
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None


def test_new_support_labels_count_only_first_retrievals_of_gold_docs():
    retrieved = [["x"], ["g1", "x"], ["g1"], [], ["g2", "g1"]]
    assert new_support_labels(retrieved, ["g1", "g2"]) == [False, True, False, False, True]


def test_trainer_rewards_and_density():
    assert trainer_rewards([0.0, 0.0, 0.0], [0.0, -2.0, 1.0]) == ([0.0, 0.0], -1.0)
    assert trainer_rewards([0.5], [1.0]) == ([], 1.5)
    with pytest.raises(ValueError, match="one term per env reward"):
        trainer_rewards([], [])
    assert reward_density([[0.0, 0.0, 1.0], [0.0]]) == 0.25
    assert reward_density([[0.1, -0.2]]) == 1.0


def test_zero_variance_rate_grpo_and_joint():
    grpo, joint = paper_advantage_fn(0.0), paper_advantage_fn(1.0)
    same = [([0.0], 1.0)] * 4
    varied = [([0.0], 1.0), ([0.0], 1.0), ([0.0], 0.0), ([0.0], 1.0)]
    ids = ["a"] * 4 + ["b"] * 4
    assert zero_variance_rate(same + varied, ids, 4, grpo) == 0.5
    assert zero_variance_rate(same + varied, ids, 8, grpo) is None  # no group that large
    assert zero_variance_rate(same + varied, ids, 2, grpo) == 1.0  # the first 2 of each group agree
    # joint normalization z-scores turn rewards and outcomes together: a dense reward separates equal outcomes
    dense = [([0.3], 1.0), ([0.0], 1.0), ([0.3], 1.0), ([0.0], 1.0)]
    assert zero_variance_rate(dense, ["a"] * 4, 4, grpo) == 1.0
    assert zero_variance_rate(dense, ["a"] * 4, 4, joint) == 0.0
    assert zero_variance_rate([([0.0], 0.0)] * 4, ["a"] * 4, 4, joint) == 1.0
    assert group_is_zero_variance([[0.0, 1e-12], []])
    with pytest.raises(ValueError, match="one group id per rollout"):
        zero_variance_rate(same, ["a"], 1, grpo)


def test_gigpo_advantages_compare_turns_from_the_same_state():
    keys = [["s0", "s1"], ["s0", "s1"], ["s0"]]
    rewards = [[0.0, 1.0], [0.0, 0.0], [0.0]]
    episode, step = gigpo_group_advantages(keys, rewards)
    assert step == [[pytest.approx(2 / 3), 0.5], [pytest.approx(-1 / 3), -0.5], [pytest.approx(-1 / 3)]]
    assert all(len(e) == len(k) for e, k in zip(episode, keys, strict=True))
    assert episode[0][0] > 0 > episode[1][0]
    same = [(["s0"], [1.0]), (["s0"], [1.0])]
    assert group_is_zero_variance(gigpo_advantage_fn()(same))


def test_main_writes_every_scheme_in_the_json_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("IGPO_ENV_CACHE", str(tmp_path / "cache"))
    from benchmarks.credit_assignment import TRAJECTORY_FILE, main

    out = tmp_path / "out"
    argv = ["--quick", "--out", str(out), "--questions", "1", "--samples", "4", "--max-turns", "2", "--threads", "1"]
    assert main(argv) == 0
    result = json.loads((out / "credit_assignment.json").read_text())
    assert list(result["schemes"]) == list(SCHEMES)
    for name, m in result["schemes"].items():
        assert set(m) >= {"density", "zero_variance_rate", "auroc", "spearman_mc", "scorer_tokens_per_turn", "seconds"}
        assert set(m["zero_variance_rate"]) == {str(g) for g in GROUP_SIZES}
        assert m["zero_variance_rate"]["8"] is None and m["zero_variance_rate"]["16"] is None  # 4 samples only
        assert 0.0 <= m["density"] <= 1.0 and m["seconds"] >= 0.0, name
    assert result["schemes"]["outcome"]["scorer_tokens_per_turn"] == 0
    assert result["schemes"]["ig"]["scorer_tokens_per_turn"] > 0
    assert result["schemes"]["mc_value"]["spearman_mc"] in (None, pytest.approx(1.0))
    lines = (out / TRAJECTORY_FILE).read_text().splitlines()
    assert len(lines) == 2 * 4 and {json.loads(x)["source"] for x in lines} == {"policy", "noisy_oracle"}
    assert (out / "credit_assignment.md").read_text().startswith("# Credit assignment")
    assert (out / "credit_assignment.png").stat().st_size > 0
    # the saved trajectories are scored again, not replayed from a new sample
    assert main([*argv, "--trajectories", str(out / TRAJECTORY_FILE)]) == 0
    again = json.loads((out / "credit_assignment.json").read_text())
    assert again["schemes"]["ig"]["auroc"] == result["schemes"]["ig"]["auroc"]
