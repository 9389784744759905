from __future__ import annotations

import pytest

from agents.igpo.configs import TRAIN_DEFAULTS_FILE, load_config, train_defaults
from agents.igpo.pipeline import (
    RunArguments,
    default_run_arguments,
    default_train_config,
    resolve_data,
    resolve_policy,
)

# The CPU-sized default run of `igpo-env train` before its defaults moved into configs/cpu.yaml: these values must
# not change by accident (edit cpu.yaml and this table together).
CPU_RUN = {
    "max_steps": 20,
    "num_generations": 4,
    "prompts_per_step": 2,
    "learning_rate": 2e-6,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "temperature": 1.0,
    "max_turns": 5,
    "max_turn_tokens": 96,
    "max_completion_length": 1024,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "tensorboard",
    "gradient_checkpointing": False,
    "seed": 0,
    "freeze_layers": 15,
    "eval_split": "dev",
    "eval_limit": 64,
    "eval_every": 0,
    "eval_batch_size": 64,
    "threads": 2,
    "search_top_k": 3,
}


def test_cpu_yaml_holds_the_cpu_run():
    defaults = train_defaults()
    assert {k: defaults[k] for k in CPU_RUN} == CPU_RUN
    assert isinstance(defaults["learning_rate"], float)  # YAML reads 2e-6 (no dot) as a string


def test_default_train_config_and_run_arguments_apply_the_yaml(tmp_path):
    cfg = default_train_config(tmp_path, max_steps=3, report_to="none")
    assert (cfg.max_steps, cfg.learning_rate, cfg.max_turn_tokens, cfg.seed) == (3, 2e-6, 96, 0)
    assert cfg.per_device_train_batch_size == 2 * 4 and cfg.output_dir == str(tmp_path)
    run = default_run_arguments(model="tiny")
    assert (run.model, run.freeze_layers, run.eval_limit, run.eval_batch_size) == ("tiny", 15, 64, 64)
    assert RunArguments().freeze_layers == 0  # the dataclass keeps generic defaults; the CPU run is cpu.yaml's
    with pytest.raises(ValueError, match=r"unknown IGPOConfig fields \['freeze_layers'\]"):
        default_train_config(tmp_path, freeze_layers=3)
    with pytest.raises(ValueError, match=r"unknown run options \['max_steps'\]"):
        default_run_arguments(max_steps=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"freeze_layers": -1}, "`freeze_layers` must be an int >= 0, got -1"),
        ({"eval_limit": 0}, "`eval_limit` must be an int >= 1 or None, got 0"),
        ({"eval_batch_size": 0}, "`eval_batch_size` must be an int >= 1, got 0"),
        ({"search_top_k": 0}, "`search_top_k` must be an int >= 1, got 0"),
        ({"train_limit": 0}, "`train_limit` must be an int >= 1 or None, got 0"),
    ],
)
def test_run_arguments_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunArguments(**kwargs)


def test_resolve_policy_and_data(tmp_path):
    assert resolve_policy(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="neither a directory nor a packaged model"):
        resolve_policy(str(tmp_path / "nope"))
    assert resolve_data(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="data directory .* does not exist"):
        resolve_data(tmp_path / "nope")


def test_load_config_errors(tmp_path):
    assert load_config(TRAIN_DEFAULTS_FILE) == train_defaults()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(bad)
