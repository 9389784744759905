"""``igpo-env train`` and ``igpo-env eval``: IGPO / GRPO training of a policy LM on SearchQA-v0, and its evaluation.

Defaults train the embedded ``small`` policy LM (:func:`agents.bootstrap.bootstrap`) on the SynthWiki train split,
evaluate it on dev (EM/F1 per data source) before and after, log through ``report_to`` (TensorBoard works offline)
and save the model. :func:`run_training` is the same pipeline as a function (the quickstart calls it).

Heavy libraries (torch, transformers, TRL) are imported inside the functions, never at module level.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> train_add_arguments(p)
    >>> a = p.parse_args(["--algo", "grpo", "--max-steps", "3"])
    >>> a.algo, a.max_steps, a.seed
    ('grpo', 3, None)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = [
    "train_add_arguments",
    "train_run",
    "evaluate_add_arguments",
    "evaluate_run",
    "run_training",
    "default_train_config",
    "load_policy",
    "DEFAULTS",
]

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    # IGPOConfig fields (the CPU-sized default run; see README "Train a real model on a GPU" for the paper's)
    "max_steps": 20,
    "num_generations": 4,
    "prompts_per_step": 2,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "temperature": 1.0,
    "max_turns": 5,
    "max_turn_tokens": 96,
    "max_completion_length": 1024,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "tensorboard",
    "gradient_checkpointing": False,
    "seed": 0,
    # run options (not IGPOConfig fields)
    "freeze_layers": 15,
    "eval_split": "dev",
    "eval_limit": 64,
    "eval_every": 0,
    "eval_batch_size": 64,
    "threads": 2,
    "search_top_k": 3,
}
"""Defaults of ``igpo-env train``, sized for the warm-started SmolLM2-135M on 2 CPU cores: 20 steps of 2 prompts x 4
rollouts (55-105 s per step, measured in the quickstart), 96 tokens per turn (the scripted turns take 33 SmolLM2 tokens
at the median, 76 at most), dev eval of 64 questions before and after: about 35 minutes."""

RUN_OPTIONS = (
    "model",
    "freeze_layers",
    "data",
    "train_split",
    "eval_split",
    "eval_limit",
    "eval_every",
    "eval_batch_size",
    "threads",
    "prompts_per_step",
    "search_top_k",
    "train_limit",
    "no_eval",
    "world_seed",
)
"""Options of a train YAML config that are not IGPOConfig fields."""


def _config_field_names() -> set[str]:
    from agents.igpo.igpo_config import IGPOConfig

    return {f.name for f in fields(IGPOConfig)}


def load_policy(path: str | Path) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local HF directory or a packaged model name (float32, eval mode).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from igpo_env.models import resolve_model

    path = Path(resolve_model(str(path)))
    if not path.exists():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist (run `igpo-env bootstrap` first?)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
    return model.eval(), tokenizer


def _resolve_model(model: str | None, seed: int, verbose: bool) -> Path:
    from agents.warm_start import resolve_policy

    return resolve_policy(model or None, seed=seed, verbose=verbose)


def _resolve_data(data: str | None, seed: int) -> Path:
    if data:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"data directory {data!r} does not exist")
        return path
    from igpo_env.data.synthwiki import default_world

    return default_world(seed)


def default_train_config(output_dir: str | Path, **overrides: Any) -> Any:
    """Build the :class:`~agents.igpo.igpo_config.IGPOConfig` of the default CPU run, with ``overrides``.

    ``prompts_per_step`` (prompts per optimizer step) sets ``per_device_train_batch_size`` =
    ``prompts_per_step * num_generations``.

    Example:
        >>> cfg = default_train_config("/tmp/igpo-cli-doc", report_to="none", max_steps=2)
        >>> cfg.max_steps, cfg.per_device_train_batch_size, cfg.ig_coef
        (2, 8, 1.0)
    """
    from agents.igpo.igpo_config import IGPOConfig

    names = _config_field_names()
    values = {k: v for k, v in DEFAULTS.items() if k in names}
    prompts = overrides.pop("prompts_per_step", DEFAULTS["prompts_per_step"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown IGPOConfig fields {unknown}; see `igpo-env train --help`")
    if prompts < 1:
        raise ValueError(f"`prompts_per_step` must be >= 1, got {prompts}")
    values.setdefault("per_device_train_batch_size", prompts * values["num_generations"])
    values.setdefault("disable_tqdm", False)
    return IGPOConfig(output_dir=str(output_dir), **values)


def _dev_callback(evaluate, every: int):
    from transformers import TrainerCallback

    class DevEval(TrainerCallback):
        """Evaluate dev F1 every ``every`` optimizer steps (and log it as ``dev/f1``)."""

        def __init__(self):
            self.curve: list[dict[str, float]] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every > 0 and state.global_step % every == 0 and state.global_step < state.max_steps:
                res = evaluate(model)
                self.curve.append({"step": state.global_step, "f1": res["f1"], "em": res["em"]})
                state.log_history.append({"step": state.global_step, "dev/f1": res["f1"], "dev/em": res["em"]})
            return control

    return DevEval()


def run_training(
    config: Any,
    *,
    model: str | Path | None = None,
    freeze_layers: int = DEFAULTS["freeze_layers"],
    data: str | Path | None = None,
    world_seed: int = 0,
    train_split: str = "train",
    train_limit: int | None = None,
    eval_split: str = DEFAULTS["eval_split"],
    eval_limit: int | None = DEFAULTS["eval_limit"],
    eval_every: int = DEFAULTS["eval_every"],
    eval_batch_size: int = DEFAULTS["eval_batch_size"],
    search_top_k: int = DEFAULTS["search_top_k"],
    evaluate: bool = True,
    before: dict[str, Any] | None = None,
    save: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train a policy with :class:`~agents.igpo.igpo_trainer.IGPOTrainer` and evaluate it before and after.

    Args:
        config: An :class:`~agents.igpo.igpo_config.IGPOConfig` (e.g. :func:`default_train_config`).
        model: HF model directory, packaged model name, or ``"tiny"`` (test fixture); default: the warm start of
            the packaged default model for ``world_seed`` (:func:`agents.warm_start.resolve_policy`).
        freeze_layers: Keep the embeddings and this many bottom decoder layers frozen (their backward is skipped:
            ~2.4x faster steps on CPU for SmolLM2-135M at 15 of 30 layers); 0 trains everything.
        data: Directory with ``corpus.jsonl`` and ``{split}.jsonl`` (default: the SynthWiki world of ``world_seed``).
        world_seed: Seed of the default world and bootstrapped model.
        train_split: Split to train on.
        train_limit: Train on the first ``train_limit`` questions only.
        eval_split: Split evaluated before/after (and every ``eval_every`` steps).
        eval_limit: Questions evaluated (``None``: the whole split).
        eval_every: Also evaluate every N steps (0: only before and after); gives the dev F1 curve.
        eval_batch_size: Episodes decoded together in evaluation.
        search_top_k: Passages per search.
        evaluate: Evaluate before and after training.
        before: A previous ``before`` result of the same start model and eval settings, reused instead of
            evaluating again (greedy decoding makes it deterministic).
        save: Save the trained model (and tokenizer) to ``config.output_dir``.
        verbose: Progress bars and log lines.

    Returns:
        ``{"before", "after"}`` (``evaluate_policy`` results or ``None``), ``"curve"`` (``[{"step", "f1", "em"}]``,
        including steps 0 and ``max_steps`` when evaluating), ``"log_history"`` (the trainer's), ``"model_dir"``,
        ``"output_dir"``, ``"train_seconds"``, ``"ig_share_of_rollout"`` (mean over steps).
    """
    from agents.igpo.igpo_trainer import IGPOTrainer, make_train_dataset
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.data import load_qa
    from igpo_env.retrieval import get_retriever

    model_dir = _resolve_model(str(model) if model else None, world_seed, verbose)
    data_dir = _resolve_data(str(data) if data else None, world_seed)
    corpus = data_dir / "corpus.jsonl"
    if not corpus.exists():
        raise FileNotFoundError(f"{str(data_dir)!r} has no corpus.jsonl")
    retriever = get_retriever(str(corpus))
    train_examples = load_qa(data_dir, split=train_split)
    if train_limit is not None:
        train_examples = train_examples[:train_limit]
    policy, tokenizer = load_policy(model_dir)
    from agents.warm_start import freeze_bottom

    freeze_bottom(policy, min(freeze_layers, len(policy.get_decoder().layers) - 1))

    eval_examples = load_qa(data_dir, split=eval_split) if evaluate or eval_every else []
    eval_ids = [ex.id for ex in eval_examples][:eval_limit] if eval_limit else [ex.id for ex in eval_examples]
    eval_envs = (
        make_envs(
            min(eval_batch_size, max(1, len(eval_ids))), dataset=eval_examples, retriever=retriever, top_k=search_top_k
        )
        if eval_ids
        else []
    )

    def _evaluate(m) -> dict[str, Any]:
        return evaluate_policy(
            m,
            tokenizer,
            eval_envs,
            eval_ids,
            max_turns=config.max_turns,
            max_turn_tokens=config.max_turn_tokens,
            max_completion_length=config.max_completion_length,
            stop_strings=config.stop_strings,
            verbose=verbose,
        )

    if evaluate and before is None:
        before = _evaluate(policy)
    if verbose and before is not None:
        logger.info("dev before: F1 %.3f EM %.3f (n=%d)", before["f1"], before["em"], before["n"])
    callback = _dev_callback(_evaluate, eval_every)
    trainer = IGPOTrainer(
        policy,
        config,
        train_dataset=make_train_dataset(train_examples),
        processing_class=tokenizer,
        env_kwargs={"dataset": train_examples, "retriever": retriever, "top_k": search_top_k},
        callbacks=[callback],
    )
    if not verbose:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    after = _evaluate(trainer.model) if evaluate else None
    if save:
        trainer.save_model(config.output_dir)
        tokenizer.save_pretrained(config.output_dir)
    curve = list(callback.curve)
    if before is not None:
        curve.insert(0, {"step": 0, "f1": before["f1"], "em": before["em"]})
    if after is not None:
        curve.append({"step": trainer.state.global_step, "f1": after["f1"], "em": after["em"]})
    shares = [h["rollout/ig_share"] for h in trainer.state.log_history if "rollout/ig_share" in h]
    return {
        "before": before,
        "after": after,
        "curve": curve,
        "log_history": list(trainer.state.log_history),
        "model_dir": str(model_dir),
        "output_dir": str(config.output_dir),
        "train_seconds": train_seconds,
        "ig_share_of_rollout": sum(shares) / len(shares) if shares else None,
    }


# ---------------------------------------------------------------------------------------------- igpo-env train
def train_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``parser`` (a value given here overrides ``--config``)."""
    parser.add_argument("--config", default=None, help="YAML file of IGPOConfig fields and run options.")
    parser.add_argument("--algo", choices=("igpo", "grpo"), default=None, help="igpo (default) or grpo (ig_coef=0).")
    parser.add_argument(
        "--model", default=None, help="HF dir, packaged name or 'tiny' (default: the warm-started packaged model)."
    )
    parser.add_argument(
        "--freeze-layers", type=int, default=None, help=f"Frozen bottom layers ({DEFAULTS['freeze_layers']}; 0: none)."
    )
    parser.add_argument("--data", default=None, help="Dir with corpus.jsonl + {split}.jsonl (default: SynthWiki).")
    parser.add_argument("--world-seed", type=int, default=None, help="Seed of the default world and model (0).")
    parser.add_argument("--output-dir", default=None, help="Where to save the model and logs (default: runs/...).")
    parser.add_argument("--seed", type=int, default=None, help="Training seed (default: 0).")
    parser.add_argument("--max-steps", type=int, default=None, help=f"Optimizer steps ({DEFAULTS['max_steps']}).")
    parser.add_argument("--num-generations", type=int, default=None, help="Rollouts per prompt (4).")
    parser.add_argument(
        "--prompts-per-step",
        type=int,
        default=None,
        help=f"Prompts per optimizer step ({DEFAULTS['prompts_per_step']}).",
    )
    parser.add_argument("--learning-rate", type=float, default=None, help=f"({DEFAULTS['learning_rate']}).")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient (0 here; IGPO uses 0.001).")
    parser.add_argument("--ig-coef", type=float, default=None, help="Weight of the IG rewards (1; grpo: 0).")
    parser.add_argument("--normalization", choices=("joint", "separate"), default=None, help="(joint).")
    parser.add_argument("--advantage", choices=("paper", "released"), default=None, help="(paper).")
    parser.add_argument("--gamma", type=float, default=None, help="Turn-level discount (1.0).")
    parser.add_argument("--max-turns", type=int, default=None, help=f"({DEFAULTS['max_turns']}).")
    parser.add_argument("--max-turn-tokens", type=int, default=None, help=f"({DEFAULTS['max_turn_tokens']}).")
    parser.add_argument("--temperature", type=float, default=None, help="Sampling temperature (1.0).")
    parser.add_argument("--scorer", default=None, help="IG scorer: policy (default), a model path or a URL.")
    parser.add_argument("--report-to", default=None, help="tensorboard (default), none, wandb, ...")
    parser.add_argument("--train-limit", type=int, default=None, help="Train on the first N questions only.")
    parser.add_argument("--eval-split", default=None, help="Split evaluated before/after (dev).")
    parser.add_argument("--eval-limit", type=int, default=None, help=f"Dev questions ({DEFAULTS['eval_limit']}).")
    parser.add_argument("--eval-every", type=int, default=None, help="Also evaluate every N steps (0).")
    parser.add_argument("--no-eval", action="store_true", default=None, help="Skip the before/after evaluation.")
    parser.add_argument("--threads", type=int, default=None, help=f"torch CPU threads ({DEFAULTS['threads']}).")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def _load_yaml(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of options, got {type(data).__name__}")
    return data


def _train_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge defaults < YAML < command line; return (IGPOConfig values, run options)."""
    merged: dict[str, Any] = dict(DEFAULTS)
    merged.update(_load_yaml(args.config))
    cli = {k: v for k, v in vars(args).items() if v is not None and not k.startswith("_")}
    for key in ("config", "quiet", "verbose", "command"):
        cli.pop(key, None)
    algo = cli.pop("algo", merged.pop("algo", "igpo"))
    merged.update(cli)
    if algo == "grpo":
        if merged.get("ig_coef", 0.0) not in (0, 0.0) and "ig_coef" in cli:
            raise ValueError(f"--algo grpo means ig_coef=0, got --ig-coef {merged['ig_coef']}")
        merged["ig_coef"] = 0.0
    names = _config_field_names()
    unknown = sorted(set(merged) - names - set(RUN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown options {unknown} (IGPOConfig fields or {list(RUN_OPTIONS)})")
    config_values = {k: v for k, v in merged.items() if k in names}
    run_values = {k: v for k, v in merged.items() if k in RUN_OPTIONS}
    run_values["algo"] = algo
    return config_values, run_values


def _print_eval(title: str, res: dict[str, Any] | None) -> None:
    if res is None:
        return
    print(f"{title}: F1 {res['f1']:.3f}  EM {res['em']:.3f}  answered {res['answered']:.2f}  (n={res['n']})")
    for source, m in res["by_source"].items():
        print(f"  {source:<24} F1 {m['f1']:.3f}  EM {m['em']:.3f}  n={m['n']}")


def train_run(args: argparse.Namespace) -> int:
    """Run ``igpo-env train``."""
    import torch

    config_values, run = _train_options(args)
    torch.set_num_threads(int(run.pop("threads")))
    algo = run.pop("algo")
    output_dir = config_values.pop("output_dir", None) or f"runs/{algo}-seed{config_values.get('seed', 0)}"
    if "report_to" in config_values and isinstance(config_values["report_to"], str):
        config_values["report_to"] = [config_values["report_to"]] if config_values["report_to"] != "none" else "none"
    config_values["disable_tqdm"] = bool(args.quiet)
    prompts = run.pop("prompts_per_step")
    config = default_train_config(output_dir, prompts_per_step=prompts, **config_values)
    verbose = not args.quiet
    print(f"igpo-env train: {algo} for {config.max_steps} steps -> {output_dir}")
    result = run_training(
        config,
        model=run.get("model"),
        freeze_layers=int(run.get("freeze_layers", DEFAULTS["freeze_layers"])),
        data=run.get("data"),
        world_seed=int(run.get("world_seed") or 0),
        train_split=run.get("train_split", "train"),
        train_limit=run.get("train_limit"),
        eval_split=run.get("eval_split", DEFAULTS["eval_split"]),
        eval_limit=run.get("eval_limit"),
        eval_every=int(run.get("eval_every") or 0),
        eval_batch_size=int(run.get("eval_batch_size", DEFAULTS["eval_batch_size"])),
        search_top_k=int(run.get("search_top_k", DEFAULTS["search_top_k"])),
        evaluate=not run.get("no_eval"),
        verbose=verbose,
    )
    _print_eval("dev before", result["before"])
    _print_eval("dev after ", result["after"])
    report = {k: v for k, v in result.items() if k != "log_history"}
    report["algo"] = algo
    report["config"] = {k: v for k, v in config_values.items() if isinstance(v, (int, float, str, bool, list))}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_report.json").write_text(json.dumps({**report, "log_history": result["log_history"]}, indent=2))
    delta = ""
    if result["before"] and result["after"]:
        delta = f"  dev F1 {result['before']['f1']:.3f} -> {result['after']['f1']:.3f}"
    print(f"done in {result['train_seconds']:.0f}s{delta}; model and train_report.json in {out}")
    return 0


# ---------------------------------------------------------------------------------------------- igpo-env eval
def evaluate_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    parser.add_argument(
        "--model", default=None, help="HF dir, packaged name or 'tiny' (default: the warm-started packaged model)."
    )
    parser.add_argument("--data", default=None, help="Dir with corpus.jsonl + {split}.jsonl (default: SynthWiki).")
    parser.add_argument("--world-seed", type=int, default=0, help="Seed of the default world and model (0).")
    parser.add_argument("--split", default="dev", help="Split to evaluate (dev).")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate the first N questions.")
    parser.add_argument("--batch-size", type=int, default=32, help="Episodes decoded together (32).")
    parser.add_argument("--max-turns", type=int, default=DEFAULTS["max_turns"], help="Turn limit.")
    parser.add_argument("--max-turn-tokens", type=int, default=DEFAULTS["max_turn_tokens"], help="Tokens per turn.")
    parser.add_argument("--search-top-k", type=int, default=DEFAULTS["search_top_k"], help="Passages per search.")
    parser.add_argument("--out", default=None, help="Write the metrics as JSON to this file.")
    parser.add_argument(
        "--threads", type=int, default=DEFAULTS["threads"], help=f"torch CPU threads ({DEFAULTS['threads']})."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def evaluate_run(args: argparse.Namespace) -> int:
    """Run ``igpo-env eval``: greedy episodes, EM/F1 overall and per data source."""
    import torch

    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.data import load_qa
    from igpo_env.retrieval import get_retriever

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    torch.set_num_threads(args.threads)
    model_dir = _resolve_model(args.model, args.world_seed, not args.quiet)
    data_dir = _resolve_data(args.data, args.world_seed)
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
        max_completion_length=DEFAULTS["max_completion_length"],
        verbose=not args.quiet,
    )
    _print_eval(f"{args.split} ({model_dir})", res)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": str(model_dir), "split": args.split, **res}, indent=2))
    return 0
