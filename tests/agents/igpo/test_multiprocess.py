"""Multi-process training through accelerate: the shipped launch configs, a 2-process CPU step equal to the
1-process step, and lock-step rollouts of an FSDP-sharded policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testing_utils import free_port

from agents.igpo.configs import ACCELERATE_CONFIG_DIR, ACCELERATE_CONFIGS, accelerate_config

LAUNCH_TIMEOUT_S = 240
"""Upper bound of one launched run (about 25 s here); a hung process group fails the test instead of the suite."""

EXPECTED = {
    "cpu-2proc": {"distributed_type": "MULTI_GPU", "num_processes": 2, "mixed_precision": "no"},
    "ddp": {"distributed_type": "MULTI_GPU", "mixed_precision": "bf16"},
    "zero2": {"distributed_type": "DEEPSPEED", "mixed_precision": "bf16"},
    "zero3": {"distributed_type": "DEEPSPEED", "mixed_precision": "bf16"},
    "fsdp": {"distributed_type": "FSDP", "mixed_precision": "bf16"},
}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _launch_env(name: str, monkeypatch) -> tuple[object, dict[str, str]]:
    """Run accelerate's own launch validation on a shipped config; return its args and the env it gives processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(accelerate_config(name)), "-m", "igpo_env.cli", "train"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    return args, env


def test_every_shipped_accelerate_config_is_valid(monkeypatch):
    """Each config loads as accelerate's ClusterConfig (no unknown key), each nested key is a flag of
    ``accelerate launch`` (a typo would be ignored silently), accelerate's launcher accepts it, and the DeepSpeed /
    FSDP plugins built from the launcher's environment hold the intended settings (deepspeed itself and GPUs are not
    needed for any of this)."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    assert sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml")) == sorted(ACCELERATE_CONFIGS)
    flags = set(vars(launch_command_parser().parse_args(["train.py"])))
    for name in ACCELERATE_CONFIGS:
        cfg = load_config_from_file(str(accelerate_config(name)))
        assert isinstance(cfg, ClusterConfig), name
        for key, value in EXPECTED[name].items():
            got = getattr(cfg, key)
            assert str(getattr(got, "value", got)) == str(value), (name, key, got)
        nested = [*cfg.deepspeed_config, *(k if k.startswith("fsdp") else f"fsdp_{k}" for k in cfg.fsdp_config)]
        assert set(nested) <= flags, (name, sorted(set(nested) - flags))
        with monkeypatch.context() as mp:
            args, env = _launch_env(name, mp)
            assert env["ACCELERATE_MIXED_PRECISION"] == EXPECTED[name]["mixed_precision"]
            if name in ("cpu-2proc", "ddp"):
                assert args.multi_gpu and not args.use_deepspeed and not args.use_fsdp  # torchrun launcher
            if name.startswith("zero"):
                plugin = DeepSpeedPlugin()
                stage = int(name[-1])
                assert plugin.zero_stage == stage and env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "false"
                zero = plugin.deepspeed_config["zero_optimization"]
                assert zero["offload_param"]["device"] == "none"
                assert zero.get("stage3_gather_16bit_weights_on_model_save", False) == (stage == 3)
            if name == "fsdp":
                plugin = FullyShardedDataParallelPlugin()
                assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
                assert plugin.cpu_ram_efficient_loading is False and "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert accelerate_config("cpu-2proc").read_text().count("main_process_ip: 127.0.0.1") == 1  # loopback only
    with pytest.raises(ValueError, match="no shipped accelerate config 'zero1'"):
        accelerate_config("zero1")


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory):
    from testing_utils import save_tiny_policy

    from igpo_env.data.synthwiki import build_world

    root = tmp_path_factory.mktemp("multiprocess")
    save_tiny_policy(root / "model")
    build_world(root / "world", passages=120, seed=0, verbose=False)
    # 3 prompts x 4 rollouts per step: 12 rollouts on 1 process, 6 per process on 2 (the middle group spans both)
    (root / "run.yaml").write_text(
        "max_steps: 1\nnum_generations: 4\nprompts_per_step: null\nmax_turns: 2\nmax_turn_tokens: 6\n"
        "eval_limit: 5\neval_batch_size: 2\n"
        "freeze_layers: 0\noptim: sgd\nlearning_rate: 1.0\nbeta: 0.0\nreport_to: none\n"
        "save_strategy: 'no'\nthreads: 1\nquiet: true\n"
    )
    return root


def _train_argv(root: Path, out: Path, per_device: int) -> list[str]:
    return [
        "-m", "igpo_env.cli", "train", "--config", str(root / "run.yaml"), "--model", str(root / "model"),
        "--data", str(root / "world"), "--per-device-train-batch-size", str(per_device), "--output-dir", str(out),
    ]  # fmt: skip


PORT_TRIES = 3
"""Launches of a multi-process run, each on a fresh port: ``free_port`` releases its port before the launcher binds
it, so another process may take it in between (the run then fails with "address already in use")."""


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _launch(launcher: list[str], port_flag: str, rest: list[str], cwd: Path) -> None:
    """Run ``launcher port_flag PORT rest`` on a free loopback port, on a fresh port again after a port race."""
    for _ in range(PORT_TRIES):
        cmd = [*launcher, port_flag, str(free_port()), *rest]
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
        if proc.returncode == 0 or "address already in use" not in (proc.stdout + proc.stderr).lower():
            break
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
def test_two_process_step_equals_one_process_step(tiny_run_dir, tmp_path):
    """``accelerate launch`` with ``cpu-2proc.yaml`` (2 processes, gloo on loopback) trains one IGPO step equal to
    the 1-process step of the same global batch: same rollouts (each samples from its own seed), rewards, loss and
    updated weights; its dev evaluations (each process plays its share of the questions) equal the 1-process ones.

    Not bit-identical, within float32 rounding: DDP averages the two processes' gradients (a different summation
    order than one backward pass over all 12 rollouts), and each process pads its batched forward passes to its own
    longest row, which changes the order of some reductions. Measured here: weight updates differ by <= 1e-8
    (updates of up to 3e-2 with SGD at lr 1.0); the tolerance, 1e-6, is 100x that and 4 orders of magnitude below the
    update. A wrong split (rollouts seeded per process, groups normalized per process, a group cut in two, gradients
    summed instead of averaged) changes the update at the 1e-3 level or fails the run.
    """
    from safetensors.torch import load_file

    root = tiny_run_dir
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, *_train_argv(root, one, per_device=12)], tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config("cpu-2proc"))]
    _launch(launch, "--main_process_port", _train_argv(root, two, per_device=6), tmp_path)

    reports = [json.loads((d / "train_report.json").read_text()) for d in (one, two)]
    assert [r["num_processes"] for r in reports] == [1, 2]
    assert [r["config"]["per_device_train_batch_size"] for r in reports] == [12, 6]
    step1, step2 = (r["log_history"][0] for r in reports)
    for key in ("loss", "grad_norm", "reward", "reward_std", "entropy", "rollout/turns", "rollout/ig_mean",
                "completions/mean_length", "num_tokens", "zero_variance_group_frac"):  # fmt: skip
        assert step2[key] == pytest.approx(step1[key], rel=1e-5, abs=1e-9), key
    assert step1["loss"] != 0.0 and step1["grad_norm"] > 0.0
    start = load_file(str(root / "model" / "model.safetensors"))
    w1, w2 = (load_file(str(d / "model.safetensors")) for d in (one, two))
    biggest = max(float((w1[k] - start[k]).abs().max()) for k in start)
    diff = max(float(((w1[k] - start[k]) - (w2[k] - start[k])).abs().max()) for k in start)
    assert biggest > 1e-3, biggest  # the step moved the weights
    assert diff <= 1e-6, diff
    assert (two / "tokenizer_config.json").exists()  # written by process 0 alone
    # the dev evals before and after: 3 + 2 of the 5 questions played per process, gathered in order: the 1-process
    # summary (episode counts per source included; the tiny model's greedy episodes do not answer)
    for when in ("before", "after"):
        assert reports[1][when] == reports[0][when], when
        assert reports[1][when]["n"] == 5 and sum(s["n"] for s in reports[1][when]["by_source"].values()) == 5


@pytest.mark.slow
def test_lockstep_rollouts_of_an_fsdp_sharded_policy(tmp_path):
    """Two processes shard the tiny policy with FSDP2 (each forward pass all-gathers: a collective) and play episodes
    of different lengths; in lock step both finish (without it the process with fewer forward passes waits forever),
    with the rollouts of the unsharded model."""
    worker = Path(__file__).with_name("lockstep_worker.py")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    _launch(run, "--master_port", [str(worker), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for res in ranks:
        assert res["param_type"] == "DTensor"
        assert res["completion_ids"] == res["reference_ids"]
        for got, ref in zip(res["ig"], res["reference_ig"], strict=True):
            assert got == pytest.approx(ref, abs=1e-5)
    assert ranks[0]["rounds"] == ranks[1]["rounds"]  # one round per forward pass, real or dummy, on every process
    assert ranks[0]["dummies"] == 0 and ranks[1]["dummies"] > 0  # rank 1's shorter episodes needed dummy passes
