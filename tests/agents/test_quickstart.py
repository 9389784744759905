import json

import pytest

from agents.quickstart import quickstart


def test_quickstart_end_to_end_on_tiny_policy(tiny_policy_dir, tmp_path, capsys):
    numbers = quickstart(out=tmp_path, model=tiny_policy_dir, steps=1, eval_limit=4, eval_every=1, verbose=False)
    out = capsys.readouterr().out
    for stage in ("world", "bootstrap", "train", "report"):
        assert f"[quickstart] {stage}" in out
    assert (tmp_path / "report.md").read_text().startswith("# igpo-env quickstart report")
    assert (tmp_path / "dev_f1.png").stat().st_size > 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["train"]["after"]["n"] == 4
    assert [c["step"] for c in numbers["train"]["curve"]] == [0, 1]
    assert (tmp_path / "model" / "config.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"steps": 0}, "steps"), ({"eval_limit": 0}, "eval_limit"), ({"eval_every": -1}, "eval_every")],
)
def test_quickstart_validates_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        quickstart(out=tmp_path, **kwargs)


def test_quickstart_missing_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        quickstart(out=tmp_path, model=tmp_path / "nope", steps=1, verbose=False)
