import json

import pytest

from agents.bootstrap import SIZES
from benchmarks.bootstrap_recipes import VARIANTS, main, parse_variant


def test_parse_variant_named_and_inline():
    base = SIZES["tiny"]
    name, spec = parse_variant("rename", base)
    assert name == "rename" and spec == type(base)(**{**base.__dict__, **VARIANTS["rename"]})
    name, spec = parse_variant("mix:train_tokens=2e5,learning_rate=0.01,bf16=TRUE,rename_share=0.5", base)
    got = (name, spec.train_tokens, spec.learning_rate, spec.bf16, spec.rename_share)
    assert got == ("mix", 200_000, 0.01, True, 0.5)
    assert parse_variant("same:", base)[1] == base


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nope", "unknown variant 'nope'"),
        ("x:no_such_field=1", "bad override 'no_such_field=1'"),
        ("x:learning_rate", "bad override 'learning_rate'"),
        ("x:bf16=yes", "bad value 'yes' for bf16"),
        ("x:train_tokens=2.5", "bad value '2.5' for train_tokens .* expected a value of type int"),
        ("x:learning_rate=fast", "bad value 'fast' for learning_rate"),
        ("a b:bf16=true", "variant name 'a b'"),
    ],
)
def test_parse_variant_refuses_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_variant(text, SIZES["tiny"])


def test_main_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        main(["--quick", "--out", str(tmp_path), "--variants", "base", "base"])
    with pytest.raises(ValueError, match="--eval-every"):
        main(["--quick", "--out", str(tmp_path), "--train-tokens", "-5"])
    assert not list(tmp_path.iterdir())  # nothing built or written


@pytest.mark.slow
def test_quick_run_writes_curves_table_and_plot(tmp_path):
    argv = ["--quick", "--out", str(tmp_path), "--variants", "base", "hot:learning_rate=0.01", "--eval-every", "10"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "bootstrap_recipes.json").read_text())
    assert [r["variant"] for r in data["runs"]] == ["base", "hot"]
    assert data["runs"][0]["changes"] == {} and data["runs"][1]["changes"] == {"learning_rate": 0.01}
    for run in data["runs"]:
        assert [p["step"] for p in run["curve"]] == [0, 10, 20]  # 40,960 tokens / (2 x 1024) = 20 steps
        for point in run["curve"]:
            assert 0.0 < point["median_p"] < 1.0
            assert isinstance(point["repeat_copy_gain"], float)
        assert run["curve"][0] != run["curve"][-1]  # the probes see training
    # the two variants start from the same random init and data, so their step-0 probes agree
    assert data["runs"][0]["curve"][0] == data["runs"][1]["curve"][0]
    md = (tmp_path / "bootstrap_recipes.md").read_text()
    assert "| hot | learning_rate=0.01 | 20 |" in md
    assert f"Command: `python -m benchmarks.bootstrap_recipes {' '.join(argv)}`" in md
    assert (tmp_path / "bootstrap_recipes.png").stat().st_size > 10_000
