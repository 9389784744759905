"""Turn-reward schemes in training: the same warm-started policy trained with each ``IGPOConfig.turn_reward``.

Each scheme is an arm of :mod:`benchmarks._train_runs` (the machinery of ``train_compare``): for each seed, every
scheme starts from the same policy LM and trains for the same number of steps and rollouts with the trainer's defaults
(``cpu.yaml``) and ``turn_reward=NAME`` (``turn_reward_kwargs`` from ``--turn-reward-kwargs``, else the scheme's
defaults). The default schemes (:data:`SCHEMES`): ``outcome`` (GRPO, no turn reward), ``ig`` (IGPO),
``answer_in_context`` (Search-R1's retrieval bonus) and ``evidence_recall`` (StepSearch's TF-IDF evidence recall
gain; both read gold labels, see :mod:`agents.igpo.turn_rewards`). Reported per scheme: dev F1 (greedy, the first
``eval_limit`` dev questions) at step 0, every ``eval_every`` steps and at the end (mean over seeds and min-max
band, PNG), final dev F1 (mean and per seed), the share of zero-variance groups (no advantage signal) and of
equal-outcome groups, train seconds.

Run: ``python -m benchmarks.shaping_train [--quick] [--out DIR] [--seeds N] [--steps N] [--schemes NAME ...]
[--jobs N]``. ``--quick`` = 1 seed, 2 steps, tiny fixture model, 8 dev questions (a smoke test, not a result). The full
preset (3 seeds x 6 steps x 8 rollouts, dev F1 on 48 questions at steps 0, 3, 6: 12 runs) takes about 1 h 50 min on
2 CPU cores with ``--jobs 2 --gradient-checkpointing --before-json FILE`` (a train_compare run of the warm start
measured ~112 s per step and ~3 min per 48-question dev eval per process, two processes at once). On a GPU machine
train longer, e.g. ``--steps 30 --eval-every 5 --eval-limit 200``. Writes ``shaping_train.json``, ``.md``, ``.png`` and
``shaping_train.runs.jsonl`` (each run as it ends).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.bootstrap.fixture import FIXTURE_POLICY
from benchmarks._train_runs import add_arguments, arm_stats, options, run_header, train_arms, write_outputs

NAME = "shaping_train"
SCHEMES = ("outcome", "ig", "answer_in_context", "evidence_recall")
"""The turn-reward schemes trained by default (``IGPOConfig.turn_reward`` values)."""
FULL = {"seeds": 3, "steps": 6, "eval_every": 3, "eval_limit": 48, "model": None}
QUICK = {"seeds": 1, "steps": 2, "eval_every": 1, "eval_limit": 8, "model": FIXTURE_POLICY}

__all__ = ["SCHEMES", "make_parser", "scheme_arms", "main"]


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, FULL, QUICK)
    p.add_argument(
        "--schemes",
        nargs="+",
        default=list(SCHEMES),
        metavar="NAME",
        help=f"turn_reward schemes to train (default: {' '.join(SCHEMES)}; any trainable IGPOConfig.turn_reward).",
    )
    p.add_argument(
        "--turn-reward-kwargs",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="turn_reward_kwargs of one scheme, e.g. 'answer_in_context={\"bonus\": 0.2}' (repeatable).",
    )
    return p


def scheme_arms(schemes: list[str], kwargs: list[str]) -> dict[str, dict[str, Any]]:
    """Build the arms: scheme name -> its ``IGPOConfig`` overrides (``turn_reward`` and, when given, its kwargs).

    Each arm's config is built here once, so that a bad scheme or argument fails before any training, with the
    config's own message.

    Args:
        schemes: ``IGPOConfig.turn_reward`` names, each once.
        kwargs: ``NAME=JSON`` strings: the ``turn_reward_kwargs`` of scheme ``NAME`` (one of ``schemes``).

    Raises:
        ValueError: for a repeated, unknown or refused scheme, a malformed ``NAME=JSON``, or arguments the scheme
            does not take.

    Example:
        >>> scheme_arms(["outcome", "answer_in_context"], ['answer_in_context={"bonus": 0.2}'])
        {'outcome': {'turn_reward': 'outcome'}, 'answer_in_context': {'turn_reward': 'answer_in_context', \
'turn_reward_kwargs': {'bonus': 0.2}}}
        >>> scheme_arms(["ig"], ['ig={"alias": "max"}'])
        Traceback (most recent call last):
        ...
        ValueError: `turn_reward='ig'` takes no `turn_reward_kwargs` (got ['alias']); IG is set by the config ...
    """
    from agents.igpo.pipeline import default_train_config

    if len(set(schemes)) != len(schemes):
        raise ValueError(f"--schemes lists a scheme twice: {schemes}")
    for item in kwargs:
        if "=" not in item or item.partition("=")[0] not in schemes:
            raise ValueError(f"--turn-reward-kwargs takes NAME=JSON with NAME one of {schemes}, got {item!r}")
    given = dict(item.partition("=")[::2] for item in kwargs)  # NAME -> JSON text, parsed by the config
    arms: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-check-") as tmp:
        for name in schemes:
            config = default_train_config(tmp, report_to="none", turn_reward=name, turn_reward_kwargs=given.get(name))
            arms[name] = {"turn_reward": name}
            if name in given:
                arms[name]["turn_reward_kwargs"] = config.turn_reward_kwargs
    return arms


def _markdown(summary: dict[str, Any]) -> str:
    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    schemes = summary["schemes"]
    steps = [p["step"] for p in next(iter(schemes.values()))["curve"]]
    lines = [
        "# Turn-reward schemes in training (same trainer, IGPOConfig.turn_reward)",
        "",
        f"Command: `{summary['command']}`.",
        "",
        f"{summary['seeds']} seed(s), {summary['steps']} steps x {summary['rollouts_per_step']} rollouts, "
        f"dev F1 on {summary['eval_limit']} questions (start {fmt(summary['start_f1'])}), model `{summary['model']}`, "
        f"learning rate {summary['learning_rate']:g}, {summary['machine']}.",
        "",
        "| scheme | final dev F1 (mean) | per seed | zero-variance groups | equal-outcome groups | train s (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in schemes.items():
        kwargs = f" `{json.dumps(s['turn_reward_kwargs'])}`" if s["turn_reward_kwargs"] else ""
        lines.append(
            f"| {name}{kwargs} | {fmt(s['final_f1'])} | {s['final_f1_per_seed']} | {fmt(s['zero_variance_rate'])} | "
            f"{fmt(s['outcome_zero_std_rate'])} | {fmt(s['train_seconds'])} |"
        )
    lines += [
        "",
        "Dev F1 per evaluated step, mean [min, max] over seeds:",
        "",
        "| scheme | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for name, s in schemes.items():
        cells = [f"{fmt(p['mean'])} [{fmt(p['min'])}, {fmt(p['max'])}]" for p in s["curve"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"![dev F1 vs step]({NAME}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train every scheme and write the results."""
    args = make_parser().parse_args(argv)
    opts = options(args, FULL, QUICK)
    arms = scheme_arms(args.schemes, args.turn_reward_kwargs)
    given_before = json.loads(Path(args.before_json).read_text()) if args.before_json else None
    out = Path(args.out)
    t0 = time.perf_counter()
    runs = train_arms(NAME, arms, opts, out, args.jobs, args.threads, given_before)
    summary: dict[str, Any] = run_header(NAME, argv, opts, args, runs)
    summary["schemes"] = {
        name: {
            "turn_reward_kwargs": arm.get("turn_reward_kwargs", {}),
            **arm_stats([r for r in runs if r["algo"] == name]),
        }
        for name, arm in arms.items()
    }
    summary["wall_seconds"] = time.perf_counter() - t0
    write_outputs(out, NAME, summary, runs, list(arms), _markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
