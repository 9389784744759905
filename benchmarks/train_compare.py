"""IGPO vs GRPO on SynthWiki: the same trainer with ``ig_coef`` 1 vs 0, same seeds, same rollout budget.

For each seed, both algorithms start from the same bootstrapped policy LM and train for the same number of steps
(``prompts_per_step * num_generations`` rollouts per step). Dev F1 (greedy, the first ``eval_limit`` dev questions) is
measured at step 0, every ``eval_every`` steps and at the end. Reported:

- dev F1 vs step (PNG: mean over seeds and min-max band), final dev F1 per algorithm (mean and per seed);
- the share of zero-variance groups per step (``zero_variance_group_frac``: groups whose every loss-token advantage
  is 0, i.e. no learning signal; for GRPO that is a group with equal outcomes) and TRL's ``frac_reward_zero_std``
  (equal outcomes in a group, for both);
- ``steps_to_grpo_final``: per seed, the first evaluated step at which IGPO's dev F1 reaches GRPO's final dev F1
  (``null`` when it never does);
- ``ig_share_of_rollout``: IG scoring time over rollout wall time (IGPO runs).

Run: ``python -m benchmarks.train_compare [--quick] [--out DIR] [--seeds N] [--steps N] [--model PATH|NAME|tiny]
[--jobs N]`` (``--jobs 2`` trains two runs at once, one process and ``--threads`` torch threads each).
``--quick`` = 1 seed, 4 steps, tiny model, 32 dev questions. Writes ``train_compare.json``, ``train_compare.md`` and
``train_compare.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.bootstrap.fixture import FIXTURE_POLICY

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "train_compare"
ALGOS = {"igpo": 1.0, "grpo": 0.0}
FULL = {"seeds": 3, "steps": 12, "eval_every": 4, "eval_limit": 48, "model": None}
QUICK = {"seeds": 1, "steps": 4, "eval_every": 2, "eval_limit": 32, "model": FIXTURE_POLICY}

logger = logging.getLogger(__name__)


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 4 steps, tiny model, 32 dev questions.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument("--seeds", type=int, default=None, help="Seeds per algorithm (3; quick: 1).")
    p.add_argument("--steps", type=int, default=None, help="Training steps per run (12; quick: 4).")
    p.add_argument("--eval-every", type=int, default=None, help="Dev evaluation period in steps (4; quick: 2).")
    p.add_argument("--eval-limit", type=int, default=None, help="Dev questions per evaluation (48; quick: 32).")
    p.add_argument(
        "--model",
        default=None,
        help=f"HF dir, packaged name or {FIXTURE_POLICY!r} (default: the warm-started packaged model).",
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
    return p


def _zero_var_per_step(log_history: list[dict[str, Any]], key: str) -> list[float]:
    return [h[key] for h in log_history if key in h and "loss" in h]


def _steps_to_reach(curve: list[dict[str, float]], target: float) -> int | None:
    for point in curve:
        if point["f1"] >= target - 1e-12:
            return int(point["step"])
    return None


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def run_one(algo: str, seed: int, opts: dict[str, Any], workdir: Path, before: dict | None) -> dict[str, Any]:
    """Train one (algorithm, seed) run and return its curve and logs."""
    from agents.igpo.pipeline import default_run_arguments, default_train_config, run_training

    config = default_train_config(
        workdir / f"{algo}-s{seed}",
        max_steps=opts["steps"],
        seed=seed,
        ig_coef=ALGOS[algo],
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
        "algo": algo,
        "seed": seed,
        "curve": result["curve"],
        "before": result["before"],
        "after": result["after"],
        "final_f1": result["after"]["f1"],
        "zero_variance_per_step": _zero_var_per_step(hist, "zero_variance_group_frac"),
        "outcome_zero_std_per_step": _zero_var_per_step(hist, "frac_reward_zero_std"),
        "reward_per_step": _zero_var_per_step(hist, "reward"),
        "ig_share_of_rollout": result["ig_share_of_rollout"],
        "train_seconds": result["train_seconds"],
    }


def _setup_process(threads: int) -> None:
    """Set the torch threads and logging of this process (the main one and each ``--jobs`` worker)."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")


def _log(run: dict[str, Any]) -> None:
    logger.info("%s seed %d: dev F1 %.3f -> %.3f", run["algo"], run["seed"], run["before"]["f1"], run["final_f1"])


def _run_all(
    jobs: list[tuple[int, str]],
    opts: dict[str, Any],
    workdir: Path,
    n_jobs: int,
    threads: int,
    before: dict | None = None,
    partial: Path | None = None,
) -> list:
    """Train every (seed, algo) run, ``n_jobs`` at a time in worker processes (in this process when 1).

    ``before`` (a dev eval of the start model) is reused by every run when given; each finished run is appended to
    ``partial`` (JSON lines) as it ends, so a stopped benchmark keeps the runs it finished.
    """
    from tqdm.auto import tqdm

    runs: list[dict[str, Any]] = []

    def _done(run: dict[str, Any]) -> None:
        runs.append(run)
        _log(run)
        if partial is not None:
            with partial.open("a") as f:
                f.write(json.dumps(run) + "\n")

    if n_jobs == 1:
        for seed, algo in tqdm(jobs, desc="train_compare runs"):
            _done(run_one(algo, seed, opts, workdir, before))
            before = runs[-1]["before"]  # greedy dev eval of the shared start model: computed once
        return runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_setup_process, initargs=(threads,)) as pool:
        # without --before-json each run evaluates the shared start model itself: handing one result to the others
        # would serialize a run
        futures = [pool.submit(run_one, algo, seed, opts, workdir, before) for seed, algo in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), desc="train_compare runs"):
            _done(future.result())
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(runs, key=lambda r: order[(r["seed"], r["algo"])])


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for algo, color in (("igpo", "tab:blue"), ("grpo", "tab:orange")):
        mine = [r for r in runs if r["algo"] == algo]
        steps = [p["step"] for p in mine[0]["curve"]]
        f1 = [[r["curve"][i]["f1"] for r in mine] for i in range(len(steps))]
        ax1.plot(steps, [statistics.fmean(x) for x in f1], marker="o", color=color, label=f"{algo} (mean)")
        ax1.fill_between(steps, [min(x) for x in f1], [max(x) for x in f1], color=color, alpha=0.2)
        zv = [r["zero_variance_per_step"] for r in mine]
        n = min(len(z) for z in zv)
        ax2.plot(range(1, n + 1), [statistics.fmean(z[i] for z in zv) for i in range(n)], color=color, label=algo)
    ax1.set(xlabel="training step", ylabel="dev F1", title=f"dev F1 vs step ({len(runs) // 2} seed(s), band = range)")
    ax2.set(xlabel="training step", ylabel="share of groups", title="zero-variance groups (no advantage signal)")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(summary: dict[str, Any]) -> str:
    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        "# IGPO vs GRPO (same trainer, ig_coef 1 vs 0)",
        "",
        f"Command: `{summary['command']}`.",
        "",
        f"{summary['seeds']} seed(s), {summary['steps']} steps x {summary['rollouts_per_step']} rollouts, "
        f"dev F1 on {summary['eval_limit']} questions, model `{summary['model']}`, learning rate "
        f"{summary['learning_rate']:g}, {summary['machine']}.",
        "",
        "| metric | IGPO | GRPO |",
        "|---|---|---|",
        f"| dev F1 at step 0 | {fmt(summary['start_f1'])} | {fmt(summary['start_f1'])} |",
        f"| final dev F1 (mean) | {fmt(summary['igpo_final_f1'])} | {fmt(summary['grpo_final_f1'])} |",
        f"| final dev F1 per seed | {summary['igpo_final_f1_per_seed']} | {summary['grpo_final_f1_per_seed']} |",
        f"| zero-variance group share | {fmt(summary['igpo_zero_variance_rate'])} | "
        f"{fmt(summary['grpo_zero_variance_rate'])} |",
        f"| equal-outcome group share | {fmt(summary['igpo_outcome_zero_std_rate'])} | "
        f"{fmt(summary['grpo_outcome_zero_std_rate'])} |",
        f"| train seconds (mean) | {fmt(summary['igpo_train_seconds'])} | {fmt(summary['grpo_train_seconds'])} |",
        "",
        f"Steps for IGPO to reach GRPO's final dev F1, per seed: {summary['steps_to_grpo_final_per_seed']} "
        f"(mean {fmt(summary['steps_to_grpo_final'])}). IG share of rollout time: "
        f"{fmt(summary['ig_share_of_rollout'])}.",
        "",
        "![dev F1 vs step](train_compare.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the results."""
    args = make_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    opts["learning_rate"] = args.learning_rate
    opts["gradient_checkpointing"] = args.gradient_checkpointing
    given_before = json.loads(Path(args.before_json).read_text()) if args.before_json else None
    if opts["seeds"] < 1 or opts["steps"] < 1:
        raise ValueError(f"--seeds and --steps must be >= 1, got {opts['seeds']} and {opts['steps']}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    _setup_process(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(seed, algo) for seed in range(opts["seeds"]) for algo in ALGOS]
    with tempfile.TemporaryDirectory(prefix="train_compare-") as tmp:
        partial = out / f"{NAME}.runs.jsonl"
        partial.unlink(missing_ok=True)
        runs = _run_all(jobs, opts, Path(tmp), args.jobs, args.threads, given_before, partial)
    before = runs[0]["before"]
    per = {a: [r for r in runs if r["algo"] == a] for a in ALGOS}
    grpo_final = {r["seed"]: r["final_f1"] for r in per["grpo"]}
    steps_to = [_steps_to_reach(r["curve"], grpo_final[r["seed"]]) for r in per["igpo"]]
    summary = {
        "command": " ".join(["python -m benchmarks.train_compare", *(argv if argv is not None else sys.argv[1:])]),
        "seeds": opts["seeds"],
        "steps": opts["steps"],
        "eval_limit": opts["eval_limit"],
        "eval_every": opts["eval_every"],
        "rollouts_per_step": None,
        "model": opts["model"] or "warm start of the packaged default model",
        "machine": f"{platform.machine()}, torch threads {args.threads}",
        "start_f1": before["f1"] if before else None,
        "igpo_final_f1": _mean([r["final_f1"] for r in per["igpo"]]),
        "grpo_final_f1": _mean([r["final_f1"] for r in per["grpo"]]),
        "igpo_final_f1_per_seed": [round(r["final_f1"], 4) for r in per["igpo"]],
        "grpo_final_f1_per_seed": [round(r["final_f1"], 4) for r in per["grpo"]],
        "igpo_zero_variance_rate": _mean([x for r in per["igpo"] for x in r["zero_variance_per_step"]]),
        "grpo_zero_variance_rate": _mean([x for r in per["grpo"] for x in r["zero_variance_per_step"]]),
        "igpo_zero_variance_rate_per_seed": [_mean(r["zero_variance_per_step"]) for r in per["igpo"]],
        "grpo_zero_variance_rate_per_seed": [_mean(r["zero_variance_per_step"]) for r in per["grpo"]],
        "igpo_outcome_zero_std_rate": _mean([x for r in per["igpo"] for x in r["outcome_zero_std_per_step"]]),
        "grpo_outcome_zero_std_rate": _mean([x for r in per["grpo"] for x in r["outcome_zero_std_per_step"]]),
        "steps_to_grpo_final": _mean(steps_to),
        "steps_to_grpo_final_per_seed": steps_to,
        "ig_share_of_rollout": _mean([r["ig_share_of_rollout"] for r in per["igpo"]]),
        "igpo_train_seconds": _mean([r["train_seconds"] for r in per["igpo"]]),
        "grpo_train_seconds": _mean([r["train_seconds"] for r in per["grpo"]]),
        "wall_seconds": time.perf_counter() - t0,
    }
    from agents.igpo.configs import train_defaults

    defaults = train_defaults()
    summary["rollouts_per_step"] = defaults["prompts_per_step"] * defaults["num_generations"]
    lr = opts["learning_rate"]
    summary["learning_rate"] = lr if lr is not None else defaults["learning_rate"]
    summary["start_eval_reused"] = bool(args.before_json)
    (out / f"{NAME}.json").write_text(json.dumps({**summary, "runs": runs}, indent=2))
    (out / f"{NAME}.md").write_text(_markdown(summary))
    _plot(runs, out / f"{NAME}.png")
    print(_markdown(summary))
    print(f"wrote {out / NAME}.json/.md/.png in {summary['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
