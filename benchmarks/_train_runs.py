"""Shared machinery of the training benchmarks (``train_compare``, ``shaping_train``): arms x seeds of one trainer.

An *arm* is a name and a set of :class:`~agents.igpo.igpo_config.IGPOConfig` overrides (``{"ig_coef": 0.0}``,
``{"turn_reward": "evidence_recall"}``). Every (seed, arm) run starts from the same policy LM, trains for the same
number of steps with the trainer's defaults (``cpu.yaml``) plus the arm's overrides, and is evaluated on the same dev
questions (greedy) at step 0, every ``eval_every`` steps and at the end.

- :func:`add_arguments` / :func:`options`: the common flags (seeds, steps, dev questions, model, threads, learning
  rate, gradient checkpointing, ``--before-json``, ``--jobs``) and their values over a benchmark's presets;
- :func:`train_arms`: train every run, ``--jobs`` at a time in worker processes, each finished run appended to
  ``NAME.runs.jsonl`` as it ends; :func:`run_one` trains one;
- :func:`arm_stats`: one arm's final dev F1 (mean, per seed), dev F1 curve (mean, min, max per evaluated step),
  zero-variance rates and train seconds;
- :func:`run_header`, :func:`write_outputs`, :func:`plot_arms`: the summary's common fields, ``NAME.json`` / ``.md``
  / ``.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_OUT",
    "Arms",
    "add_arguments",
    "options",
    "run_one",
    "setup_process",
    "train_arms",
    "mean",
    "arm_stats",
    "run_header",
    "plot_arms",
    "write_outputs",
]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
"""Where the training benchmarks write their results by default."""

Arms = Mapping[str, Mapping[str, Any]]
"""Arm name -> its ``IGPOConfig`` overrides."""

PRESET_KEYS = ("seeds", "steps", "eval_every", "eval_limit", "model")
"""The keys of a benchmark preset (``FULL`` / ``QUICK`` dicts of ``train_compare`` and ``shaping_train``)."""

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser, full: Mapping[str, Any], quick: Mapping[str, Any]) -> None:
    """Add the common flags of a training benchmark to ``p``; their help names the presets' values."""
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick['seeds']} seed(s), {quick['steps']} steps, {quick['model']} model, {quick['eval_limit']} dev "
        "questions.",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument(
        "--seeds", type=int, default=None, help=f"Seeds per arm ({full['seeds']}; quick: {quick['seeds']})."
    )
    p.add_argument(
        "--steps", type=int, default=None, help=f"Training steps per run ({full['steps']}; quick: {quick['steps']})."
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help=f"Dev evaluation period in steps, 0: start and end only ({full['eval_every']}; quick: "
        f"{quick['eval_every']}).",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help=f"Dev questions per evaluation ({full['eval_limit']}; quick: {quick['eval_limit']}).",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"HF dir, packaged name or {quick['model']!r} (default: the warm-started packaged model).",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a shared CPU).")
    p.add_argument(
        "--learning-rate", type=float, default=None, help="Learning rate of every run (default: igpo-env train's)."
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="Recompute activations in backward (a training process of the warm-started SmolLM2 peaks at ~11 GB "
        "without it: use it with --jobs 2 on a 24 GB machine).",
    )
    p.add_argument(
        "--before-json",
        default=None,
        help="JSON of a dev eval of the same start model with the same eval settings (the 'before' of an earlier run, "
        "or its file written by this benchmark): reused instead of evaluating the start model again in every job.",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="Runs trained at once, each in its own process (1; 2 fills 2 cores)."
    )


def options(args: argparse.Namespace, full: Mapping[str, Any], quick: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run options: the preset (``quick`` with ``--quick``, else ``full``) overridden by the given flags.

    Raises:
        ValueError: for ``--seeds`` / ``--steps`` / ``--jobs`` below 1 (before anything is set up or loaded).
    """
    base = quick if args.quick else full
    opts = {k: getattr(args, k) if getattr(args, k) is not None else base[k] for k in PRESET_KEYS}
    if opts["seeds"] < 1 or opts["steps"] < 1:
        raise ValueError(f"--seeds and --steps must be >= 1, got {opts['seeds']} and {opts['steps']}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    opts["learning_rate"] = args.learning_rate
    opts["gradient_checkpointing"] = args.gradient_checkpointing
    return opts


def _per_step(log_history: list[dict[str, Any]], key: str) -> list[float]:
    return [h[key] for h in log_history if key in h and "loss" in h]


def mean(xs: list[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (``None`` when there are none).

    Example:
        >>> mean([1.0, None, 2.0]), mean([None])
        (1.5, None)
    """
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def run_one(
    arm: str, overrides: Mapping[str, Any], seed: int, opts: dict[str, Any], workdir: Path, before: dict | None
) -> dict[str, Any]:
    """Train one (arm, seed) run and return its curve and logs (``"algo"``: the arm's name)."""
    from agents.igpo.pipeline import default_run_arguments, default_train_config, run_training

    config = default_train_config(
        workdir / f"{arm}-s{seed}",
        max_steps=opts["steps"],
        seed=seed,
        **overrides,
        **({} if opts.get("learning_rate") is None else {"learning_rate": opts["learning_rate"]}),
        gradient_checkpointing=bool(opts.get("gradient_checkpointing")),
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    run = default_run_arguments(model=opts["model"], eval_limit=opts["eval_limit"], eval_every=opts["eval_every"])
    result = run_training(config, run, before=before, save=False, verbose=False)
    hist = result["log_history"]
    return {
        "algo": arm,
        "seed": seed,
        "curve": result["curve"],
        "before": result["before"],
        "after": result["after"],
        "final_f1": result["after"]["f1"],
        "zero_variance_per_step": _per_step(hist, "zero_variance_group_frac"),
        "outcome_zero_std_per_step": _per_step(hist, "frac_reward_zero_std"),
        "reward_per_step": _per_step(hist, "reward"),
        "ig_share_of_rollout": result["ig_share_of_rollout"],
        "train_seconds": result["train_seconds"],
    }


def setup_process(threads: int) -> None:
    """Set the torch threads and logging of this process (the main one and each ``--jobs`` worker)."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")


def _log(run: dict[str, Any]) -> None:
    logger.info("%s seed %d: dev F1 %.3f -> %.3f", run["algo"], run["seed"], run["before"]["f1"], run["final_f1"])


def _run_all(
    name: str,
    arms: Arms,
    jobs: list[tuple[int, str]],
    opts: dict[str, Any],
    workdir: Path,
    n_jobs: int,
    threads: int,
    before: dict | None,
    partial: Path,
) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    runs: list[dict[str, Any]] = []

    def _done(run: dict[str, Any]) -> None:
        runs.append(run)
        _log(run)
        with partial.open("a") as f:
            f.write(json.dumps(run) + "\n")

    if n_jobs == 1:
        for seed, arm in tqdm(jobs, desc=f"{name} runs"):
            _done(run_one(arm, arms[arm], seed, opts, workdir, before))
            before = runs[-1]["before"]  # greedy dev eval of the shared start model: computed once
        return runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=setup_process, initargs=(threads,)) as pool:
        # without --before-json each run evaluates the shared start model itself: handing one result to the others
        # would serialize a run
        futures = [pool.submit(run_one, arm, dict(arms[arm]), seed, opts, workdir, before) for seed, arm in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"{name} runs"):
            _done(future.result())
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(runs, key=lambda r: order[(r["seed"], r["algo"])])


def train_arms(
    name: str, arms: Arms, opts: dict[str, Any], out: Path, n_jobs: int, threads: int, before: dict | None = None
) -> list[dict[str, Any]]:
    """Train every (seed, arm) run, seed-major, ``n_jobs`` at a time in worker processes (in this one when 1).

    ``before`` (a dev eval of the start model) is reused by every run when given; each finished run is appended to
    ``out/NAME.runs.jsonl`` (JSON lines, emptied first) as it ends, so a stopped benchmark keeps the runs it finished.

    Returns:
        The run records in (seed, arm) order: ``algo`` (the arm), ``seed``, ``curve``, ``before``, ``after``,
        ``final_f1``, ``zero_variance_per_step``, ``outcome_zero_std_per_step``, ``reward_per_step``,
        ``ig_share_of_rollout``, ``train_seconds``.
    """
    setup_process(threads)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, arm) for seed in range(opts["seeds"]) for arm in arms]
    partial = out / f"{name}.runs.jsonl"
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        return _run_all(name, arms, jobs, opts, Path(tmp), n_jobs, threads, before, partial)


def arm_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarize the runs of one arm (one per seed).

    Returns:
        ``final_f1`` (mean) and ``final_f1_per_seed``; ``curve`` (``[{"step", "mean", "min", "max"}]``: dev F1 over
        seeds at each evaluated step); ``zero_variance_rate`` (share of groups with no advantage signal, over every
        step of every seed) and ``zero_variance_rate_per_seed``; ``outcome_zero_std_rate`` (equal outcomes in a
        group); ``ig_share_of_rollout`` and ``train_seconds`` (means).

    Example:
        >>> run = {"final_f1": 0.5, "curve": [{"step": 0, "f1": 0.4}, {"step": 2, "f1": 0.5}], "train_seconds": 3.0,
        ...        "zero_variance_per_step": [0.5, 0.0], "outcome_zero_std_per_step": [1.0, 0.5],
        ...        "ig_share_of_rollout": None}
        >>> other = {**run, "final_f1": 0.3, "curve": [{"step": 0, "f1": 0.4}, {"step": 2, "f1": 0.3}]}
        >>> stats = arm_stats([run, other])
        >>> stats["final_f1"], stats["final_f1_per_seed"], stats["curve"][1]
        (0.4, [0.5, 0.3], {'step': 2, 'mean': 0.4, 'min': 0.3, 'max': 0.5})
    """
    steps = sorted({p["step"] for r in runs for p in r["curve"]})
    curve = []
    for step in steps:
        f1 = [p["f1"] for r in runs for p in r["curve"] if p["step"] == step]
        curve.append({"step": step, "mean": statistics.fmean(f1), "min": min(f1), "max": max(f1)})
    return {
        "final_f1": mean([r["final_f1"] for r in runs]),
        "final_f1_per_seed": [round(r["final_f1"], 4) for r in runs],
        "curve": curve,
        "zero_variance_rate": mean([x for r in runs for x in r["zero_variance_per_step"]]),
        "zero_variance_rate_per_seed": [mean(r["zero_variance_per_step"]) for r in runs],
        "outcome_zero_std_rate": mean([x for r in runs for x in r["outcome_zero_std_per_step"]]),
        "ig_share_of_rollout": mean([r["ig_share_of_rollout"] for r in runs]),
        "train_seconds": mean([r["train_seconds"] for r in runs]),
    }


def run_header(
    name: str, argv: list[str] | None, opts: dict[str, Any], args: argparse.Namespace, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return the summary fields of every training benchmark: command, sizes, model, machine, lr, start F1."""
    import sys

    from agents.igpo.configs import train_defaults

    defaults = train_defaults()
    before = runs[0]["before"]
    lr = opts["learning_rate"]
    return {
        "command": " ".join([f"python -m benchmarks.{name}", *(argv if argv is not None else sys.argv[1:])]),
        "seeds": opts["seeds"],
        "steps": opts["steps"],
        "eval_limit": opts["eval_limit"],
        "eval_every": opts["eval_every"],
        "rollouts_per_step": defaults["prompts_per_step"] * defaults["num_generations"],
        "model": opts["model"] or "warm start of the packaged default model",
        "machine": f"{platform.machine()}, torch threads {args.threads}",
        "start_f1": before["f1"] if before else None,
        "learning_rate": lr if lr is not None else defaults["learning_rate"],
        "start_eval_reused": bool(args.before_json),
    }


def plot_arms(runs: list[dict[str, Any]], arms: list[str], path: Path) -> None:
    """Plot dev F1 vs step (mean over seeds, min-max band) and the zero-variance group share per step, per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, arm in enumerate(arms):
        color = f"C{i}"
        mine = [r for r in runs if r["algo"] == arm]
        curve = arm_stats(mine)["curve"]
        steps = [p["step"] for p in curve]
        ax1.plot(steps, [p["mean"] for p in curve], marker="o", color=color, label=f"{arm} (mean)")
        ax1.fill_between(steps, [p["min"] for p in curve], [p["max"] for p in curve], color=color, alpha=0.2)
        zv = [r["zero_variance_per_step"] for r in mine]
        n = min(len(z) for z in zv)
        ax2.plot(range(1, n + 1), [statistics.fmean(z[i] for z in zv) for i in range(n)], color=color, label=arm)
    seeds = len(runs) // len(arms)
    ax1.set(xlabel="training step", ylabel="dev F1", title=f"dev F1 vs step ({seeds} seed(s), band = range)")
    ax2.set(xlabel="training step", ylabel="share of groups", title="zero-variance groups (no advantage signal)")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    out: Path,
    name: str,
    summary: dict[str, Any],
    runs: list[dict[str, Any]],
    arms: list[str],
    markdown: Callable[[dict[str, Any]], str],
) -> None:
    """Write ``out/NAME.json`` (the summary and every run), ``NAME.md`` and ``NAME.png``; print the Markdown."""
    (out / f"{name}.json").write_text(json.dumps({**summary, "runs": runs}, indent=2))
    text = markdown(summary)
    (out / f"{name}.md").write_text(text)
    plot_arms(runs, arms, out / f"{name}.png")
    print(text)
    print(f"wrote {out / name}.json/.md/.png in {summary['wall_seconds']:.0f}s")
