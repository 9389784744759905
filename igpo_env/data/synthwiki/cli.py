"""``igpo-env world build``: generate a SynthWiki world (corpus.jsonl + train/dev/test QA jsonl + world.json)."""

from __future__ import annotations

import argparse
import time

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``world build`` options to ``parser``."""
    from igpo_env.data.synthwiki.build import DEFAULT_PASSAGES

    parser.add_argument("--passages", type=int, default=DEFAULT_PASSAGES, help="Corpus size (default %(default)s).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default %(default)s).")
    parser.add_argument("--questions", type=int, default=None, help="Total questions (default 0.6 per passage).")
    parser.add_argument("--out", required=True, help="Output directory.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def run(args: argparse.Namespace) -> int:
    """Build the world; prints where it went and its question counts."""
    import json

    from igpo_env.data.synthwiki.build import WORLD_FILE, build_world

    start = time.perf_counter()
    out = build_world(args.out, passages=args.passages, seed=args.seed, verbose=not args.quiet,
                      questions=args.questions)  # fmt: skip
    meta = json.loads((out / WORLD_FILE).read_text(encoding="utf-8"))
    print(f"SynthWiki world: {meta['passages']} passages, questions {meta['questions']} -> {out} "
          f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
    return 0
