"""``igpo-env train`` and ``igpo-env eval``: IGPO / GRPO training of a policy LM on SearchQA-v0, and its evaluation.

``igpo-env train`` parses its flags the way ``trl grpo`` does: ``trl.TrlParser`` generates them from
:class:`~agents.igpo.igpo_config.IGPOConfig`, :class:`~agents.igpo.pipeline.RunArguments` and
:class:`TrainCommandArguments`, so ``--help`` lists every field with the default in force. Precedence, lowest first:
the dataclass defaults, ``agents/igpo/configs/cpu.yaml`` (the CPU-sized default run,
:data:`agents.igpo.configs.TRAIN_DEFAULTS_FILE`), ``--config FILE.yaml``, the flags. Each flag has an underscore and a
dash spelling (``--max_steps`` / ``--max-steps``). The pipeline itself is :func:`agents.igpo.pipeline.run_training`.

Heavy libraries (torch, transformers, TRL) are imported inside the functions, never at module level.

Example:
    >>> config, run, cmd = parse_train_args(["--algo", "grpo", "--max-steps", "3", "--report-to", "none"])
    >>> config.max_steps, config.ig_coef, config.output_dir, run.freeze_layers, cmd.threads
    (3, 0.0, 'runs/grpo-seed0', 15, 2)
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igpo_env._validation import check_choice, check_int

if TYPE_CHECKING:
    from trl import TrlParser

    from agents.igpo.igpo_config import IGPOConfig
    from agents.igpo.pipeline import RunArguments

__all__ = [
    "TrainCommandArguments",
    "ALGOS",
    "DEFAULT_OUTPUT_DIR",
    "train_make_parser",
    "parse_train_args",
    "train_main",
    "evaluate_add_arguments",
    "evaluate_run",
]

logger = logging.getLogger(__name__)

ALGOS = ("igpo", "grpo")
"""``--algo`` values: ``grpo`` is IGPO with ``ig_coef=0`` (TRL's GRPO advantage on every assistant token)."""

DEFAULT_OUTPUT_DIR = "runs/{algo}-seed{seed}"
"""Default ``--output-dir``; ``{algo}`` and ``{seed}`` are filled in (in a given ``output_dir`` too)."""


@dataclass
class TrainCommandArguments:
    """Options of the ``igpo-env train`` command itself (neither ``IGPOConfig`` fields nor run options)."""

    algo: str = field(
        default="igpo",
        metadata={"help": "igpo, or grpo (= ig_coef 0; another explicit ig_coef is an error).", "choices": ALGOS},
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (None: torch's default)."})
    quiet: bool = field(default=False, metadata={"help": "No progress bars (sets disable_tqdm)."})

    def __post_init__(self) -> None:
        check_choice("algo", self.algo, ALGOS)
        check_int("threads", self.threads, minimum=1, optional=True)


# ---------------------------------------------------------------------------------------------- igpo-env train
def train_make_parser(prog: str = "igpo-env train") -> TrlParser:
    """Build the ``igpo-env train`` parser: ``trl.TrlParser`` over the three dataclasses, ``cpu.yaml`` as defaults.

    Raises:
        RuntimeError: if ``cpu.yaml`` holds a key that no dataclass field takes (a packaging error).
    """
    from trl import TrlParser

    from agents.igpo.configs import TRAIN_DEFAULTS_FILE, train_defaults
    from agents.igpo.igpo_config import IGPOConfig
    from agents.igpo.pipeline import RunArguments

    parser = TrlParser(
        (IGPOConfig, RunArguments, TrainCommandArguments),
        prog=prog,
        description="Train a policy with IGPO (or GRPO with --algo grpo) on SearchQA-v0; defaults: "
        f"{TRAIN_DEFAULTS_FILE.name} (the CPU-sized run), overridden by --config FILE.yaml, overridden by the flags.",
    )
    parser.add_argument(
        "--config", default=None, help="YAML file of IGPOConfig fields, run options and command options."
    )
    unused = parser.set_defaults_with_config(output_dir=DEFAULT_OUTPUT_DIR, **train_defaults())
    if unused:
        raise RuntimeError(f"{TRAIN_DEFAULTS_FILE} has options that no field takes: {unused}")
    return parser


def parse_train_args(argv: Sequence[str] | None = None) -> tuple[IGPOConfig, RunArguments, TrainCommandArguments]:
    """Parse ``igpo-env train`` arguments (``--config FILE.yaml`` + flags) into the config and the options.

    ``--algo grpo`` sets ``ig_coef=0`` and ``turn_reward="outcome"``; ``{algo}`` and ``{seed}`` in ``output_dir``
    are filled in; ``--quiet`` sets ``disable_tqdm``.

    Raises:
        FileNotFoundError: for a ``--config`` file that does not exist.
        ValueError: for an option of the config file that no field takes, or ``--algo grpo`` with a non-zero
            ``ig_coef`` other than the default or a ``turn_reward`` other than ``"ig"`` / ``"outcome"``.
        SystemExit: for an unknown flag (after printing the usage, as argparse does) and after ``--help``.
    """
    import sys

    parser = train_make_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args[:-1] and not Path(args[args.index("--config") + 1]).is_file():
        raise FileNotFoundError(f"config file {args[args.index('--config') + 1]!r} does not exist")
    *parsed, config_rest, cli_rest = parser.parse_args_and_config(
        args, return_remaining_strings=True, separate_remaining_strings=True
    )
    if config_rest:
        unknown = [s.lstrip("-") for s in config_rest if s.startswith("--")]
        raise ValueError(
            f"unknown options {unknown} in --config {args[args.index('--config') + 1]!r}: not IGPOConfig fields, "
            "run options or command options (see `igpo-env train --help`)"
        )
    if cli_rest:
        parser.error(f"unrecognized arguments: {' '.join(cli_rest)}")
    config, run, cmd = parsed[:3]
    # Set after IGPOConfig.__post_init__: none of these feeds a derived field (a second __init__ would reject the
    # generation batch fields GRPOConfig filled in).
    if cmd.algo == "grpo":
        default_coef = next(f.default for f in fields(config) if f.name == "ig_coef")
        if config.ig_coef not in (0.0, default_coef):
            raise ValueError(f"--algo grpo means ig_coef=0, got ig_coef {config.ig_coef}")
        if config.turn_reward not in ("ig", "outcome"):
            raise ValueError(f"--algo grpo means turn_reward='outcome', got turn_reward {config.turn_reward!r}")
        config.ig_coef, config.turn_reward = 0.0, "outcome"
    config.output_dir = config.output_dir.format(algo=cmd.algo, seed=config.seed)
    if cmd.quiet:
        config.disable_tqdm = True
    return config, run, cmd


def _print_eval(title: str, res: dict[str, Any] | None) -> None:
    if res is None:
        return
    print(f"{title}: F1 {res['f1']:.3f}  EM {res['em']:.3f}  answered {res['answered']:.2f}  (n={res['n']})")
    for source, m in res["by_source"].items():
        print(f"  {source:<24} F1 {m['f1']:.3f}  EM {m['em']:.3f}  n={m['n']}")


def train_main(argv: Sequence[str] | None = None) -> int:
    """Run ``igpo-env train`` with ``argv`` (the arguments after ``train``); write ``train_report.json``."""
    import torch

    from agents.igpo.pipeline import run_training

    config, run, cmd = parse_train_args(argv)
    if cmd.threads is not None:
        torch.set_num_threads(cmd.threads)
    print(f"igpo-env train: {cmd.algo} for {config.max_steps} steps -> {config.output_dir}")
    result = run_training(config, run, verbose=not cmd.quiet)
    _print_eval("dev before", result["before"])
    _print_eval("dev after ", result["after"])
    report = {k: v for k, v in result.items() if k != "log_history"}
    report["algo"] = cmd.algo
    report["config"] = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool, list))}
    report["run"] = asdict(run)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_report.json").write_text(json.dumps({**report, "log_history": result["log_history"]}, indent=2))
    delta = ""
    if result["before"] and result["after"]:
        delta = f"  dev F1 {result['before']['f1']:.3f} -> {result['after']['f1']:.3f}"
    print(f"done in {result['train_seconds']:.0f}s{delta}; model and train_report.json in {out}")
    return 0


# ---------------------------------------------------------------------------------------------- igpo-env eval
def evaluate_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser`` (episode settings default to ``igpo-env train``'s, ``cpu.yaml``)."""
    from agents.bootstrap.fixture import FIXTURE_POLICY
    from agents.igpo.configs import train_defaults

    d = train_defaults()
    parser.add_argument(
        "--model",
        default=None,
        help=f"HF dir, packaged name or {FIXTURE_POLICY!r} (default: the warm-started packaged model).",
    )
    parser.add_argument("--data", default=None, help="Dir with corpus.jsonl + {split}.jsonl (default: SynthWiki).")
    parser.add_argument("--world-seed", type=int, default=0, help="Seed of the default world and model (0).")
    parser.add_argument("--split", default="dev", help="Split to evaluate (dev).")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate the first N questions.")
    parser.add_argument("--batch-size", type=int, default=32, help="Episodes decoded together (32).")
    parser.add_argument("--max-turns", type=int, default=d["max_turns"], help=f"Turn limit ({d['max_turns']}).")
    parser.add_argument(
        "--max-turn-tokens", type=int, default=d["max_turn_tokens"], help=f"Tokens per turn ({d['max_turn_tokens']})."
    )
    parser.add_argument(
        "--search-top-k", type=int, default=d["search_top_k"], help=f"Passages per search ({d['search_top_k']})."
    )
    parser.add_argument("--out", default=None, help="Write the metrics as JSON to this file.")
    parser.add_argument("--threads", type=int, default=d["threads"], help=f"torch CPU threads ({d['threads']}).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def evaluate_run(args: argparse.Namespace) -> int:
    """Run ``igpo-env eval``: greedy episodes, EM/F1 overall and per data source."""
    import torch

    from agents.igpo.configs import train_defaults
    from agents.igpo.pipeline import resolve_data, resolve_policy
    from agents.policy import load_policy
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.data import load_qa
    from igpo_env.retrieval import get_retriever

    check_int("--limit", args.limit, minimum=1, optional=True)
    check_int("--batch-size", args.batch_size, minimum=1)
    torch.set_num_threads(args.threads)
    model_dir = resolve_policy(args.model, args.world_seed, not args.quiet)
    data_dir = resolve_data(args.data, args.world_seed)
    examples = load_qa(data_dir, split=args.split)
    model, tokenizer = load_policy(model_dir)
    n = min(len(examples), args.limit or len(examples))
    envs = make_envs(
        min(args.batch_size, n),
        dataset=examples,
        retriever=get_retriever(str(data_dir / "corpus.jsonl")),
        top_k=args.search_top_k,
    )
    res = evaluate_policy(
        model,
        tokenizer,
        envs,
        limit=args.limit,
        max_turns=args.max_turns,
        max_turn_tokens=args.max_turn_tokens,
        max_completion_length=train_defaults()["max_completion_length"],
        verbose=not args.quiet,
    )
    _print_eval(f"{args.split} ({model_dir})", res)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": str(model_dir), "split": args.split, **res}, indent=2))
    return 0
