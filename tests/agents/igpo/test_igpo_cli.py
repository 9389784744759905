from __future__ import annotations

import dataclasses
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
    # igpo-env eval on the start model and the trained one: the trainer's dev "before" / "after" numbers
    cfg_eval = tmp_path / "eval-cfg.yaml"  # the run's config: eval takes its episode settings
    cfg_eval.write_text(cfg.read_text())
    res_dir = tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_run / "model"), "--model", str(out), "--dataset", str(tiny_run / "world")]
    assert main([*argv, "--limit", "4", "--config", str(cfg_eval), "--out", str(res_dir), "--quiet"]) == 0
    res = json.loads((res_dir / "eval.json").read_text())
    before, after = res["models"]
    assert (before["n"], after["n"], res["settings"]["max_turns"], res["settings"]["max_turn_tokens"]) == (4, 4, 2, 6)
    for cli, trainer in ((before, report["before"]), (after, report["after"])):
        assert (cli["f1"], cli["em"], cli["by_source"]) == (trainer["f1"], trainer["em"], trainer["by_source"])
        assert cli["episode_types"] == trainer["episode_types"] and sum(cli["episode_types"].values()) == 4
        assert cli["by_normalization"]["squad"]["f1"] == cli["f1"]  # the env's normalization: the same numbers
    assert list(res["tables"]["igpo"]["f1"]["rows"]) == [str(tiny_run / "model"), str(out)]
    markdown = (res_dir / "eval.md").read_text()
    assert "## F1 (igpo normalization)" in markdown and "## EM (squad normalization)" in markdown
    assert "| Model | correct | invalid_turns |" in markdown
    assert "| Model | synthwiki-" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_cli_gives_the_trainer_dev_numbers_of_the_tiny_policy(tiny_policy_dir, tmp_path, capsys):
    from agents.igpo.pipeline import default_run_arguments, default_train_config, run_training

    threads = torch.get_num_threads()
    overrides = dict(max_steps=1, num_generations=2, prompts_per_step=1, learning_rate=1e-3, disable_tqdm=True)
    config = default_train_config(tmp_path / "run", report_to="none", **overrides)
    run = default_run_arguments(model=str(tiny_policy_dir), train_limit=2, eval_limit=6)
    result = run_training(config, run, verbose=False)
    # the fixture answers (dev F1 0 though): equal answered / turns / well-formed rates mean the same episodes
    assert result["before"]["answered"] > 0 and result["before"]["mean_turns"] > 1
    argv = ["eval", "--model", str(tiny_policy_dir), "--model", str(tmp_path / "run"), "--limit", "6"]
    try:
        assert main([*argv, "--threads", str(threads), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    before, after = json.loads((tmp_path / "eval" / "eval.json").read_text())["models"]
    for cli, trainer in ((before, result["before"]), (after, result["after"])):
        assert {k: cli[k] for k in trainer} == trainer


def test_eval_on_verl_parquet_with_several_sources(tiny_run, tmp_path, capsys):
    from igpo_env.data import load_qa, save_verl_parquet

    sources = ["bamboogle", "nq", "hotpotqa", "triviaqa"]
    dev = load_qa(tiny_run / "world", "dev")[:8]
    examples = [dataclasses.replace(ex, data_source=sources[i % 4]) for i, ex in enumerate(dev)]
    parquet = tmp_path / "data" / "test.parquet"
    save_verl_parquet(examples, parquet, join_aliases=True)
    argv = ["eval", "--model", str(tiny_run / "model"), "--dataset", str(parquet), "--max-turns", "1"]
    assert main([*argv, "--max-turn-tokens", "4", "--quiet"]) == 2
    assert "no retriever for" in capsys.readouterr().err
    retriever = ["--retriever", str(tiny_run / "world" / "corpus.jsonl")]
    assert main([*argv, "--max-turn-tokens", "4", *retriever, "--out", str(tmp_path / "r.json"), "--quiet"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["sources"] == ["nq", "triviaqa", "hotpotqa", "bamboogle"] and res["split"] is None
    for norm in ("igpo", "squad"):
        for metric in ("em", "f1"):
            table = res["tables"][norm][metric]
            assert table["columns"] == [*res["sources"], "avg"]
            (row,) = table["rows"].values()
            assert row["avg"] == pytest.approx(sum(row[s] for s in res["sources"]) / 4)
    assert [m["by_source"]["nq"]["n"] for m in res["models"]] == [2]
    assert "| Model | nq | triviaqa | hotpotqa | bamboogle | Avg. |" in (tmp_path / "r.md").read_text()


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
    assert main(["eval", "--dataset", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--algo", "grpo", "--turn-reward", "search_cost"]) == 2
    assert "--algo grpo means turn_reward='outcome'" in capsys.readouterr().err
    assert main(["train", "--turn-reward", "potential"]) == 2
    assert "needs a Python potential_fn" in capsys.readouterr().err


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
    from agents.igpo.turn_rewards import TURN_REWARDS

    help_text = out[out.index("--turn_reward TURN_REWARD, --turn-reward") :][:1500]
    assert all(f"'{name}'" in help_text for name in TURN_REWARDS), help_text
    assert "--turn_reward_kwargs TURN_REWARD_KWARGS" in out and "--step_advantage_weight" in out


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
    assert config.output_dir == "out/grpo-4" and config.turn_reward == "outcome"
    config, _, _ = parse_train_args(["--num-generations", "3", "--prompts-per-step", "5", "--quiet"])
    assert config.per_device_train_batch_size == 15 and config.disable_tqdm
    with pytest.raises(ValueError, match="--algo grpo means ig_coef=0, got ig_coef 0.5"):
        parse_train_args(["--algo", "grpo", "--ig-coef", "0.5"])
    config, _, _ = parse_train_args(["--turn-reward", "search_cost", "--turn-reward-kwargs", '{"cost": 0.2}'])
    assert (config.turn_reward, config.turn_reward_kwargs, config.ig_coef) == ("search_cost", {"cost": 0.2}, 1.0)
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


def test_shaping_train_rejects_bad_arguments():
    from benchmarks.shaping_train import main as shaping

    threads = torch.get_num_threads()
    cases = (
        (["--jobs", "0"], "--jobs"),
        (["--schemes", "ig", "ig"], "twice"),
        (["--schemes", "mc_value"], "cannot be trained"),
        (["--turn-reward-kwargs", "ig"], "NAME=JSON"),
        (["--turn-reward-kwargs", "answer_in_context={bonus}"], "must be a JSON object"),
        (["--turn-reward-kwargs", 'evidence_recall={"bonus": 1}'], "unknown \\['bonus'\\]"),
    )
    for argv, match in cases:
        with pytest.raises(ValueError, match=match):
            shaping([*argv, "--out", "unused", "--threads", str(threads + 1)])
    assert torch.get_num_threads() == threads  # rejected before touching the process's torch threads


@pytest.mark.slow
def test_shaping_train_writes_every_scheme(tiny_policy_dir, tmp_path):
    from benchmarks.shaping_train import SCHEMES
    from benchmarks.shaping_train import main as shaping

    threads = torch.get_num_threads()
    marker = {"f1": 0.123, "em": 0.1, "n": 2, "by_source": {}}
    before = tmp_path / "before.json"
    before.write_text(json.dumps(marker))
    argv = ["--quick", "--model", str(tiny_policy_dir), "--steps", "1", "--eval-every", "0", "--eval-limit", "2"]
    argv += ["--turn-reward-kwargs", 'answer_in_context={"bonus": 0.5}', "--before-json", str(before)]
    try:
        assert shaping([*argv, "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "shaping_train.json").read_text())
    assert list(summary["schemes"]) == list(SCHEMES) == ["outcome", "ig", "answer_in_context", "evidence_recall"]
    assert summary["start_f1"] == 0.123 and summary["seeds"] == 1 and summary["steps"] == 1
    for name, scheme in summary["schemes"].items():
        assert scheme["final_f1"] == pytest.approx(scheme["final_f1_per_seed"][0], abs=1e-4)
        assert [p["step"] for p in scheme["curve"]] == [0, 1]
        assert scheme["curve"][0] == {"step": 0, "mean": 0.123, "min": 0.123, "max": 0.123}
        assert 0 <= scheme["zero_variance_rate"] <= 1 and scheme["train_seconds"] > 0
        assert scheme["turn_reward_kwargs"] == ({"bonus": 0.5} if name == "answer_in_context" else {})
    assert [r["algo"] for r in summary["runs"]] == list(SCHEMES)
    lines = (tmp_path / "shaping_train.runs.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["algo"] for line in lines) == sorted(SCHEMES)
    assert (tmp_path / "shaping_train.png").stat().st_size > 0
    assert "| evidence_recall |" in (tmp_path / "shaping_train.md").read_text()
