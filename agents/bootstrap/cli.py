"""``igpo-env bootstrap``: warm-start the packaged default LM (SFT on scripted trajectories); print its report.

``--base tiny`` builds the from-scratch tiny LM instead (a fast test fixture, not a useful policy).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> a = p.parse_args(["--steps", "20", "--lora-rank", "8"])
    >>> a.base, a.steps, a.lora_rank
    ('smollm2-135m-instruct', 20, 8)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from agents.bootstrap.build import bootstrap
from agents.bootstrap.common import DEVICES, REPORT_FILE
from agents.bootstrap.fixture import FIXTURE_POLICY
from agents.bootstrap.warm_start import DEFAULT_EVAL_QUESTIONS, WARM_START, WarmStartSpec, warm_start

__all__ = ["add_arguments", "run", "SUMMARY_KEYS"]

SUMMARY_KEYS = (
    "well_formed_rate",
    "dev_f1",
    "question_only_f1",
    "ig_sanity_share",
    "median_p_oracle",
    "median_p_question_only",
    "minutes",
)
"""Report fields printed on the summary line (and every stage of the quickstart report)."""

SPEC_FLAGS = ("steps", "batch_size", "learning_rate", "train_episodes", "lora_rank", "freeze_layers")
""":class:`~agents.bootstrap.warm_start.WarmStartSpec` fields exposed as ``--flags`` (defaults: :data:`WARM_START`)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bootstrap`` options."""
    from igpo_env.models import DEFAULT_MODEL

    parser.add_argument(
        "--base",
        default=DEFAULT_MODEL,
        help=f"Model to warm-start: a packaged name, an HF directory, or {FIXTURE_POLICY!r} (test fixture). "
        f"Default: {DEFAULT_MODEL}.",
    )
    parser.add_argument("--seed", type=int, default=0, help="SynthWiki world and training seed (default: 0).")
    parser.add_argument("--force", action="store_true", help="Rebuild even if a cached model exists.")
    parser.add_argument("--out", default=None, help="Output directory (default: the igpo-env cache).")
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="Train and evaluate here (default: auto, CUDA when seen)."
    )
    parser.add_argument("--zero-shot", action="store_true", help="Also report the base model before the SFT.")
    parser.add_argument(
        "--eval-questions",
        type=int,
        default=None,
        help=f"Dev questions of the quality report (default: {DEFAULT_EVAL_QUESTIONS}).",
    )
    types = {f.name: f.type for f in fields(WarmStartSpec)}
    for name in SPEC_FLAGS:
        kind = float if types[name] == "float" else int
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"Warm-start recipe: {name} (default: {getattr(WARM_START, name)}).",
        )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the model, then print its directory, the report and a one-line summary."""
    overrides = {k: getattr(args, k) for k in SPEC_FLAGS if getattr(args, k, None) is not None}
    if args.base == FIXTURE_POLICY:
        if overrides:
            raise ValueError(f"--base {FIXTURE_POLICY} takes no recipe flags, got {sorted(overrides)}")
        path = bootstrap(
            size=FIXTURE_POLICY,
            seed=args.seed,
            force=args.force,
            verbose=not args.quiet,
            out=args.out,
            device=args.device,
        )
    else:
        spec = WarmStartSpec.from_overrides(WARM_START, overrides)
        extra = {} if args.eval_questions is None else {"eval_questions": args.eval_questions}
        path = warm_start(
            args.base,
            seed=args.seed,
            spec=spec,
            out=args.out,
            force=args.force,
            device=args.device,
            zero_shot=args.zero_shot,
            verbose=not args.quiet,
            **extra,
        )
    report = json.loads((path / REPORT_FILE).read_text())
    print(json.dumps({k: v for k, v in report.items() if k not in ("spec", "sft")}, indent=2))
    summary = " ".join(f"{k}={report[k]:.3f}" for k in SUMMARY_KEYS if isinstance(report.get(k), (int, float)))
    print(f"bootstrap {args.base} seed={args.seed}: {summary} -> {path}")
    return 0
