"""benchmarks/sb3_compare: a miniature run end to end (tiny fixture scorer), its outputs and its argument checks."""

import json

import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from benchmarks.sb3_compare import main  # noqa: E402

SMALL = ["--seeds", "2", "--timesteps", "64", "--eval-freq", "32", "--train-questions", "6"]
SMALL += ["--eval-questions", "6", "--num-envs", "2"]


def test_sb3_compare_writes_the_issue_keys_and_curves(tiny_policy_dir, tmp_path):
    assert main([*SMALL, "--scorer", str(tiny_policy_dir), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "sb3_compare.json").read_text())
    for key in ("ig_final_f1", "outcome_final_f1", "random_f1", "noisy_oracle_f1", "candidate_ceiling_f1"):
        assert 0.0 <= summary[key] <= 1.0, key
    # the references are what they claim: the scripted noisy oracle and the hidden-label ceiling beat random picks
    assert summary["noisy_oracle_f1"] > summary["random_f1"]
    assert summary["candidate_ceiling_f1"] > summary["random_f1"]
    runs = summary["runs"]
    assert sorted((r["reward"], r["seed"]) for r in runs) == [("ig", 0), ("ig", 1), ("outcome", 0), ("outcome", 1)]
    for run in runs:
        steps = [point["timesteps"] for point in run["curve"]]
        assert steps == sorted(steps) and steps[-1] >= 64
        assert all(0.0 <= point["f1"] <= 1.0 for point in run["curve"])
    assert summary["ig_final_f1_per_seed"] == [round(r["curve"][-1]["f1"], 4) for r in runs if r["reward"] == "ig"]
    assert summary["ig_states_scored"] > 0  # IG really went through the scorer
    assert (tmp_path / "sb3_compare.png").stat().st_size > 0
    table = (tmp_path / "sb3_compare.md").read_text()
    assert "random candidates" in table and "noisy oracle" in table


@pytest.mark.parametrize("flag", ["--seeds", "--timesteps", "--train-questions", "--num-envs"])
def test_sb3_compare_rejects_bad_counts(flag, tmp_path):
    with pytest.raises(ValueError, match=flag):
        main([flag, "0", "--out", str(tmp_path)])
