"""``igpo-env bench NAME [--quick] [--out DIR]``: run a benchmark script from the ``benchmarks`` package."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import benchmarks

__all__ = ["available", "add_arguments", "run"]


def available() -> list[str]:
    """Names of the benchmark scripts (modules of ``benchmarks`` with a ``main``), sorted.

    Example:
        >>> "cli" in available()
        False
    """
    names = [m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name not in {"cli", "common"}]
    return sorted(n for n in names if not n.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` arguments."""
    parser.add_argument("name", help=f"benchmark to run, one of: {', '.join(available()) or '(none yet)'}")
    parser.add_argument("--quick", action="store_true", help="Small sizes, finishes in a few minutes.")
    parser.add_argument("--out", default=None, help="Output directory (default: benchmarks/results).")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark named ``args.name`` with ``--quick`` / ``--out`` forwarded."""
    if args.name not in available():
        raise ValueError(f"unknown benchmark {args.name!r}; available: {', '.join(available())}")
    module = importlib.import_module(f"benchmarks.{args.name}")
    argv = (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
    return int(module.main(argv) or 0)
