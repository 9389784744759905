import json

import pytest

from agents.bootstrap.cli import SUMMARY_KEYS
from agents.bootstrap.warm_start import WarmStartSpec
from agents.quickstart import STAGES, quickstart


def test_quickstart_end_to_end_on_tiny_policy(tiny_policy_dir, tmp_path, capsys):
    spec = WarmStartSpec(train_episodes=4, steps=1, batch_size=2, freeze_layers=0, bf16=False)
    numbers = quickstart(
        out=tmp_path,
        base=str(tiny_policy_dir),
        spec=spec,
        steps=1,
        eval_questions=3,
        prompts_per_step=1,
        verbose=False,
    )
    out = capsys.readouterr().out
    for stage in ("world", "fetch", *STAGES, "report", "total"):
        assert f"[quickstart] {stage}" in out
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# igpo-env quickstart report") and "| dev_f1 |" in md
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "| episodes: extra_search |" in md and "| IG > 0 synthwiki-" in md
    for stage in STAGES:
        assert set(SUMMARY_KEYS) <= set(saved[stage]), stage
        assert saved[stage]["eval_questions"] == 3
        assert sum(saved[stage]["episode_types"].values()) == 3
        assert set(saved[stage]["ig_sanity_by_source"]) == set(saved[stage]["dev_f1_by_source"])
        assert saved["minutes"][stage] == pytest.approx(saved[stage]["minutes"])
    assert saved["warm_start"]["sft"]["steps"] == 1
    assert saved["train"]["steps"] == 1 and 0.0 <= saved["train"]["reward_density"] <= 1.0
    assert (tmp_path / "model" / "config.json").exists()
    assert numbers["trained"]["model_dir"] == str(tmp_path / "model")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"steps": 0}, "steps"), ({"eval_questions": 0}, "eval_questions"), ({"prompts_per_step": 0}, "prompts")],
)
def test_quickstart_validates_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        quickstart(out=tmp_path, **kwargs)


def test_quickstart_missing_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a directory nor a packaged model"):
        quickstart(out=tmp_path, base=str(tmp_path / "nope"), steps=1, verbose=False)
