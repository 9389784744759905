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
import time
from pathlib import Path
from typing import Any

from agents.bootstrap.fixture import FIXTURE_POLICY
from benchmarks._train_runs import (
    DEFAULT_OUT,
    add_arguments,
    arm_stats,
    mean,
    options,
    run_header,
    train_arms,
    write_outputs,
)

NAME = "train_compare"
ARMS = {"igpo": {"ig_coef": 1.0}, "grpo": {"ig_coef": 0.0}}
"""The two arms: ``IGPOConfig`` overrides of each."""
FULL = {"seeds": 3, "steps": 12, "eval_every": 4, "eval_limit": 48, "model": None}
QUICK = {"seeds": 1, "steps": 4, "eval_every": 2, "eval_limit": 32, "model": FIXTURE_POLICY}

__all__ = ["DEFAULT_OUT", "ARMS", "make_parser", "main"]


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, FULL, QUICK)
    return p


def _steps_to_reach(curve: list[dict[str, float]], target: float) -> int | None:
    for point in curve:
        if point["f1"] >= target - 1e-12:
            return int(point["step"])
    return None


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
    opts = options(args, FULL, QUICK)
    given_before = json.loads(Path(args.before_json).read_text()) if args.before_json else None
    out = Path(args.out)
    t0 = time.perf_counter()
    runs = train_arms(NAME, ARMS, opts, out, args.jobs, args.threads, given_before)
    stats = {arm: arm_stats([r for r in runs if r["algo"] == arm]) for arm in ARMS}
    grpo_final = {r["seed"]: r["final_f1"] for r in runs if r["algo"] == "grpo"}
    steps_to = [_steps_to_reach(r["curve"], grpo_final[r["seed"]]) for r in runs if r["algo"] == "igpo"]
    summary: dict[str, Any] = run_header(NAME, argv, opts, args, runs)
    for key in ("final_f1", "final_f1_per_seed", "zero_variance_rate", "zero_variance_rate_per_seed"):
        summary.update({f"{arm}_{key}": stats[arm][key] for arm in ARMS})
    summary.update({f"{arm}_outcome_zero_std_rate": stats[arm]["outcome_zero_std_rate"] for arm in ARMS})
    summary["steps_to_grpo_final"] = mean(steps_to)
    summary["steps_to_grpo_final_per_seed"] = steps_to
    summary["ig_share_of_rollout"] = stats["igpo"]["ig_share_of_rollout"]
    summary.update({f"{arm}_train_seconds": stats[arm]["train_seconds"] for arm in ARMS})
    summary["wall_seconds"] = time.perf_counter() - t0
    write_outputs(out, NAME, summary, runs, list(ARMS), _markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
