"""``igpo-env train`` and ``igpo-env eval``: IGPO / GRPO training of a policy LM on SearchQA-v0, and its evaluation.

``igpo-env train`` parses its flags the way ``trl grpo`` does: ``trl.TrlParser`` generates them from
:class:`~agents.igpo.igpo_config.IGPOConfig`, :class:`~agents.igpo.pipeline.RunArguments` and
:class:`TrainCommandArguments`, so ``--help`` lists every field with the default in force. Precedence, lowest first:
the dataclass defaults, ``agents/igpo/configs/cpu.yaml`` (the CPU-sized default run,
:data:`agents.igpo.configs.TRAIN_DEFAULTS_FILE`), ``--config FILE.yaml``, the flags. Each flag has an underscore and a
dash spelling (``--max_steps`` / ``--max-steps``). The pipeline itself is :func:`agents.igpo.pipeline.run_training`.

``igpo-env eval`` plays greedy episodes with :func:`agents.rollout.evaluate_policy` and the episode settings of the
trainer's dev eval (``cpu.yaml``, or a train ``--config``), so its numbers are the trainer's "before" / "after" dev
numbers for the same model and questions. It takes one or more ``--model``, a ``--dataset`` (FlashRAG jsonl, verl
parquet, a dir, or ``synthwiki``) and a ``--retriever``, and writes the IGPO paper's tables (rows = models, columns =
data sources + average; EM and F1 under both answer normalizations, :mod:`agents.igpo.eval_report`) as markdown and
JSON.

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
    "SYNTHWIKI",
    "EVAL_SETTINGS",
    "evaluate_add_arguments",
    "eval_settings",
    "eval_data",
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


def _launch_rank() -> int:
    """Return this process's rank in a multi-process launch (``RANK``: torchrun, ``accelerate launch``), else 0."""
    import os

    return int(os.environ.get("RANK", "0"))


def train_main(argv: Sequence[str] | None = None) -> int:
    """Run ``igpo-env train`` with ``argv`` (the arguments after ``train``); write ``train_report.json``.

    Under ``accelerate launch`` every process trains its share; process 0 alone prints and writes the report.
    """
    import torch

    from agents.igpo.pipeline import run_training

    config, run, cmd = parse_train_args(argv)
    if cmd.threads is not None:
        torch.set_num_threads(cmd.threads)
    if _launch_rank() == 0:
        print(f"igpo-env train: {cmd.algo} for {config.max_steps} steps -> {config.output_dir}")
    result = run_training(config, run, verbose=not cmd.quiet)
    if result.pop("process_index") != 0:
        return 0
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
SYNTHWIKI = "synthwiki"
"""``--dataset`` value naming the default SynthWiki world (of ``--world-seed``)."""

EVAL_SETTINGS = ("max_turns", "max_turn_tokens", "max_completion_length", "stop_strings", "search_top_k")
"""Episode settings of a dev evaluation, taken from ``cpu.yaml`` (then ``--config``, then the flags): the trainer's
dev eval (:func:`agents.igpo.pipeline.run_training`) plays with the same ones, so both report the same numbers."""


def evaluate_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser`` (episode settings default to ``igpo-env train``'s, ``cpu.yaml``)."""
    from agents.bootstrap.fixture import FIXTURE_POLICY
    from agents.igpo.configs import train_defaults

    d = train_defaults()
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"HF dir, packaged name or {FIXTURE_POLICY!r}; repeat for one table row per model (default: the "
        "warm-started packaged model).",
    )
    parser.add_argument(
        "--dataset",
        "--data",
        default=SYNTHWIKI,
        help="QA to evaluate: a FlashRAG .jsonl or verl .parquet file, a dir with {split}.jsonl/.parquet, or "
        f"{SYNTHWIKI!r} (the default world of --world-seed) (default: {SYNTHWIKI}).",
    )
    parser.add_argument(
        "--retriever",
        default=None,
        help="Retriever: an http(s) URL (Search-R1 protocol), an index dir or a corpus .jsonl (default: the "
        "corpus.jsonl of the dataset's dir).",
    )
    parser.add_argument("--world-seed", type=int, default=0, help="Seed of the default world and model (0).")
    parser.add_argument("--split", default="dev", help="Split of a dataset dir or of synthwiki (dev).")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate the first N questions.")
    parser.add_argument(
        "--config",
        default=None,
        help="A train config YAML: take its episode settings (as its run's dev eval; flags still override).",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help=f"Episodes decoded together ({d['eval_batch_size']})."
    )
    parser.add_argument("--max-turns", type=int, default=None, help=f"Turn limit ({d['max_turns']}).")
    parser.add_argument("--max-turn-tokens", type=int, default=None, help=f"Tokens per turn ({d['max_turn_tokens']}).")
    parser.add_argument(
        "--max-completion-length",
        type=int,
        default=None,
        help=f"Completion tokens per episode ({d['max_completion_length']}).",
    )
    parser.add_argument("--search-top-k", type=int, default=None, help=f"Passages per search ({d['search_top_k']}).")
    parser.add_argument(
        "--out",
        default=None,
        help="Write eval.json and eval.md to this dir (or the JSON to a .json path, .md beside).",
    )
    parser.add_argument("--threads", type=int, default=d["threads"], help=f"torch CPU threads ({d['threads']}).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def eval_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the episode settings and batch size of ``igpo-env eval``: ``cpu.yaml``, then ``--config``, then flags.

    Example:
        >>> ns = argparse.Namespace(config=None, max_turns=2, max_turn_tokens=None, max_completion_length=None,
        ...                         search_top_k=None, batch_size=None)
        >>> s = eval_settings(ns)
        >>> s["max_turns"], s["max_turn_tokens"], s["stop_strings"], s["eval_batch_size"]
        (2, 96, ['</search>', '</answer>'], 64)
    """
    from agents.igpo.configs import load_config, train_defaults
    from igpo_env.actions import STOP_STRINGS

    values = {**train_defaults(), **(load_config(args.config) if args.config else {})}
    settings = {k: values.get(k) for k in (*EVAL_SETTINGS, "eval_batch_size")}
    settings["stop_strings"] = list(settings["stop_strings"] or STOP_STRINGS)
    for key in ("max_turns", "max_turn_tokens", "max_completion_length", "search_top_k"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.batch_size is not None:
        settings["eval_batch_size"] = args.batch_size
    for key in ("max_turns", "max_turn_tokens", "search_top_k", "eval_batch_size"):
        check_int(key, settings[key], minimum=1)
    check_int("max_completion_length", settings["max_completion_length"], minimum=1, optional=True)
    return settings


def eval_data(dataset: str, split: str, world_seed: int = 0, retriever: str | None = None) -> tuple[list, str]:
    """Return the QA examples ``--dataset`` names and the retriever spec (``--retriever``, else a corpus beside it).

    Raises:
        FileNotFoundError: for a missing dataset, or no retriever given and no ``corpus.jsonl`` beside the data.
    """
    from agents.igpo.pipeline import resolve_data
    from igpo_env.data import load_qa

    path = resolve_data(None if dataset == SYNTHWIKI else dataset, world_seed)
    examples = load_qa(path, split=split) if path.is_dir() else load_qa(path)
    corpus = (path if path.is_dir() else path.parent) / "corpus.jsonl"
    if retriever is None and not corpus.is_file():
        raise FileNotFoundError(
            f"no retriever for {dataset!r}: there is no corpus.jsonl beside it; pass --retriever URL, an index dir "
            "or a corpus .jsonl"
        )
    return examples, retriever or str(corpus)


def evaluate_run(args: argparse.Namespace) -> int:
    """Run ``igpo-env eval``: greedy episodes per model; EM/F1 per data source as the paper's tables (md + JSON)."""
    import torch

    from agents.igpo.eval_report import episode_type_table, markdown_report, paper_tables, rescore, source_order
    from agents.igpo.pipeline import resolve_policy
    from agents.policy import load_policy
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.retrieval import get_retriever

    check_int("--limit", args.limit, minimum=1, optional=True)
    settings = eval_settings(args)
    torch.set_num_threads(args.threads)
    examples, retriever_spec = eval_data(args.dataset, args.split, args.world_seed, args.retriever)
    n = min(len(examples), args.limit or len(examples))
    envs = make_envs(
        min(settings["eval_batch_size"], n),
        dataset=examples,
        retriever=get_retriever(retriever_spec),
        top_k=settings["search_top_k"],
    )
    golds = {ex.id: ex.golden_answers for ex in examples}
    results = []
    for model in args.model or [None]:
        model_dir = resolve_policy(model, args.world_seed, not args.quiet)
        policy, tokenizer = load_policy(model_dir)
        res = evaluate_policy(
            policy,
            tokenizer,
            envs,
            limit=args.limit,
            **{k: settings[k] for k in EVAL_SETTINGS if k != "search_top_k"},
            verbose=not args.quiet,
            return_rollouts=True,
        )
        res["by_normalization"] = rescore(res.pop("rollouts"), golds, envs[0].unwrapped.protocol)
        results.append({"model": str(model if model is not None else model_dir), "model_dir": str(model_dir), **res})
        del policy
    tables = paper_tables([(r["model"], r["by_normalization"]) for r in results])
    split = args.split if Path(args.dataset).is_dir() or args.dataset == SYNTHWIKI else None
    title = f"{args.dataset}{f' ({split})' if split else ''}: {n} questions"
    markdown = markdown_report(tables, title=title)
    kinds = [(r["model"], r["episode_types"]) for r in results if "episode_types" in r]
    if kinds:
        markdown += "\n## What the episodes did (agents.rollout.episode_type)\n\n" + episode_type_table(kinds) + "\n"
    print(markdown)
    if args.out:
        out = Path(args.out)
        json_path = out if out.suffix == ".json" else out / "eval.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "dataset": args.dataset,
            "split": split,
            "retriever": retriever_spec,
            "settings": settings,
            "sources": source_order(s for r in results for s in r["by_source"]),
            "models": results,
            "tables": tables,
        }
        json_path.write_text(json.dumps(report, indent=2))
        json_path.with_suffix(".md").write_text(markdown)
    return 0
