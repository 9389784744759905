from __future__ import annotations

import json
import re

import pytest
import torch

from igpo_env.cli import main
from igpo_env.data.synthwiki import build_world
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("igpo-cli")
    tok, model = tiny_tokenizer(), tiny_causal_lm()
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    build_world(root / "world", passages=120, seed=0, verbose=False)
    n = torch.get_num_threads()
    yield root
    torch.set_num_threads(n)


@pytest.mark.slow
def test_train_and_eval_commands(tiny_run, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("max_turns: 2\nmax_turn_tokens: 6\nnum_generations: 2\nprompts_per_step: 2\neval_limit: 4\n")
    out = tmp_path / "out"
    code = main(
        [
            "train",
            "--config",
            str(cfg),
            "--algo",
            "grpo",
            "--model",
            str(tiny_run / "model"),
            "--data",
            str(tiny_run / "world"),
            "--max-steps",
            "1",
            "--output-dir",
            str(out),
            "--report-to",
            "none",
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["algo"] == "grpo" and report["config"]["ig_coef"] == 0.0
    assert report["before"]["n"] == 4 and set(report["after"]["by_source"])
    assert [p["step"] for p in report["curve"]] == [0, 1]
    assert (out / "model.safetensors").exists()
    printed = capsys.readouterr().out
    assert "dev before" in printed and "dev after" in printed
    res_file = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(tiny_run / "world"),
                "--limit",
                "3",
                "--max-turns",
                "1",
                "--out",
                str(res_file),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(res_file.read_text())["n"] == 3


def test_user_errors(tiny_run, tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_an_option: 1\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown options ['not_an_option'] in --config" in capsys.readouterr().err
    assert main(["train", "--algo", "grpo", "--ig_coef", "2"]) == 2
    assert "--algo grpo means ig_coef=0" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "nope"), "--data", str(tiny_run / "world")]) == 2
    assert "neither a directory nor a packaged model name" in capsys.readouterr().err


def test_train_flags_come_from_the_dataclasses_with_cpu_yaml_defaults(capsys):
    from dataclasses import fields

    from agents.igpo.cli import TrainCommandArguments, train_make_parser
    from agents.igpo.igpo_config import IGPOConfig
    from agents.igpo.pipeline import RunArguments

    parser = train_make_parser()
    dests = {a.dest for a in parser._actions}
    for cls in (IGPOConfig, RunArguments, TrainCommandArguments):
        assert {f.name for f in fields(cls) if f.init} <= dests, cls
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: igpo-env train" in out and "--config CONFIG" in out
    assert re.search(r"--max_steps MAX_STEPS, --max-steps MAX_STEPS Overrides .*?\(default: 20\)", out)
    assert "--beta BETA KL coefficient (IGPO: 0.001; 0 skips the reference model). (default: 0.0)" in out
    assert re.search(r"--freeze-layers FREEZE_LAYERS Keep .*?\(default: 15\)", out)
    assert "--algo {igpo,grpo}" in out and "--normalization {joint,separate}" in out


def test_train_precedence_yaml_then_config_then_flags(tmp_path):
    from agents.igpo.cli import parse_train_args

    config, run, cmd = parse_train_args(["--report-to", "none"])
    assert (config.max_steps, config.beta, config.seed, config.per_device_train_batch_size) == (20, 0.0, 0, 8)
    assert (config.output_dir, run.freeze_layers, run.eval_limit, cmd.threads, cmd.algo) == (
        "runs/igpo-seed0",
        15,
        64,
        2,
        "igpo",
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("max_steps: 7\nbeta: 0.001\nfreeze_layers: 3\noutput_dir: out/{algo}-{seed}\n")
    config, run, cmd = parse_train_args(["--config", str(cfg), "--max_steps", "9", "--seed", "4", "--algo", "grpo"])
    assert (config.max_steps, config.beta, run.freeze_layers, config.ig_coef) == (9, 0.001, 3, 0.0)
    assert config.output_dir == "out/grpo-4"
    config, _, _ = parse_train_args(["--num-generations", "3", "--prompts-per-step", "5", "--quiet"])
    assert config.per_device_train_batch_size == 15 and config.disable_tqdm
    with pytest.raises(ValueError, match="--algo grpo means ig_coef=0, got ig_coef 0.5"):
        parse_train_args(["--algo", "grpo", "--ig-coef", "0.5"])
    with pytest.raises(SystemExit) as e:
        parse_train_args(["--no-such-flag", "1"])
    assert e.value.code == 2


def test_shipped_configs_hold_only_known_options():
    from agents.igpo.cli import train_make_parser
    from agents.igpo.configs import CONFIG_DIR, load_config

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert train_make_parser().set_defaults_with_config(**load_config(path)) == [], path.name


def test_train_compare_rejects_bad_counts():
    from benchmarks.train_compare import main as compare

    threads = torch.get_num_threads()
    for argv, match in ((["--jobs", "0"], "--jobs"), (["--seeds", "0"], "--seeds"), (["--steps", "-1"], "--steps")):
        with pytest.raises(ValueError, match=match):
            compare([*argv, "--out", "unused", "--threads", str(threads + 1)])
    assert torch.get_num_threads() == threads  # rejected before touching the process's torch threads


@pytest.mark.slow
def test_train_compare_reuses_start_eval_and_writes_runs_as_they_end(tiny_policy_dir, tmp_path):
    import json

    from benchmarks.train_compare import main as compare

    threads = torch.get_num_threads()
    marker = {"f1": 0.123, "em": 0.1, "n": 2, "by_source": {}}
    before = tmp_path / "before.json"
    before.write_text(json.dumps(marker))
    argv = ["--quick", "--model", str(tiny_policy_dir), "--seeds", "1", "--steps", "1", "--eval-every", "0"]
    argv += ["--eval-limit", "2", "--learning-rate", "1e-6", "--before-json", str(before), "--out", str(tmp_path)]
    try:
        assert compare([*argv, "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "train_compare.json").read_text())
    assert summary["start_f1"] == 0.123 and summary["start_eval_reused"] is True
    assert summary["learning_rate"] == 1e-6
    lines = (tmp_path / "train_compare.runs.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["algo"] for line in lines) == ["grpo", "igpo"]
    assert all(json.loads(line)["before"] == marker for line in lines)
