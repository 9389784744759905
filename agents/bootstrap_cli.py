"""``igpo-env bootstrap``: train (or reuse) the embedded tiny policy LM and print its quality report.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(["--size", "tiny"]).size
    'tiny'
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "run"]

SUMMARY_KEYS = (
    "well_formed_rate",
    "dev_f1",
    "question_only_f1",
    "ig_sanity_share",
    "median_p_oracle",
    "median_p_question_only",
    "minutes",
)
"""Report fields printed on the summary line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bootstrap`` options to ``parser``."""
    from agents.bootstrap import DEVICES

    parser.add_argument("--size", choices=("tiny", "small"), default="small", help="Model size (default: small).")
    parser.add_argument("--seed", type=int, default=0, help="SynthWiki world and training seed (default: 0).")
    parser.add_argument("--force", action="store_true", help="Rebuild even if a cached model exists.")
    parser.add_argument("--out", default=None, help="Output directory (default: the igpo-env cache).")
    parser.add_argument("--train-tokens", type=int, default=None, help="Override the size's training budget (tokens).")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="Train and evaluate on this device (default: auto, CUDA when available).",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the model, then print its directory, the report and a one-line summary."""
    from agents.bootstrap import REPORT_FILE, bootstrap

    path = bootstrap(
        size=args.size,
        seed=args.seed,
        force=args.force,
        verbose=not args.quiet,
        out=args.out,
        train_tokens=args.train_tokens,
        device=args.device,
    )
    report = json.loads((path / REPORT_FILE).read_text())
    print(json.dumps({k: v for k, v in report.items() if k not in ("spec", "sft")}, indent=2))
    summary = " ".join(f"{k}={report[k]:.3f}" for k in SUMMARY_KEYS if isinstance(report.get(k), (int, float)))
    print(f"bootstrap {args.size} seed={args.seed}: {summary} -> {path}")
    return 0
