"""``igpo-env quickstart``: the main job on the embedded default, end to end on a laptop-class CPU.

Stages, each printing one summary line:

1. **world**: generate (or reuse) the default SynthWiki world (:func:`igpo_env.data.synthwiki.default_world`).
2. **bootstrap**: train (or reuse) the embedded policy LM, ``--size`` ``tiny`` by default
   (:func:`agents.bootstrap.bootstrap`).
3. **train**: a short IGPO run with :class:`agents.igpo.IGPOTrainer` (:func:`agents.igpo.cli.run_training`),
   evaluating dev F1 before, during and after.
4. **report**: ``report.md`` (tables), ``report.json`` (raw numbers) and ``dev_f1.png`` (curve) in ``--out``.

A second run reuses the cached world and model (``$IGPO_ENV_CACHE`` or ``~/.cache/igpo-env``).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> a = p.parse_args(["--steps", "2"])
    >>> a.steps, a.size, a.out
    (2, 'tiny', 'quickstart_out')
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "quickstart", "write_report"]

DEFAULT_SIZE = "tiny"
"""Policy LM size of the quickstart. ``tiny`` keeps the whole quickstart within minutes; ``small`` (``--size small``)
is the better model (~10 min of bootstrap on 2 quiet cores); neither answers correctly often yet (README, Status)."""
DEFAULT_STEPS = 8
"""Optimizer steps of the quickstart's IGPO run (the full default `igpo-env train` run uses more)."""
DEFAULT_EVAL_LIMIT = 96
"""Dev questions evaluated before, during and after training."""
DEFAULT_EVAL_EVERY = 4
"""Evaluate dev F1 every this many steps to draw the curve."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``quickstart`` options."""
    parser.add_argument("--out", default="quickstart_out", help="Output directory for the report and the model.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the world, the model and training.")
    parser.add_argument(
        "--size", choices=("tiny", "small"), default=DEFAULT_SIZE, help=f"Embedded policy LM size ({DEFAULT_SIZE})."
    )
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="IGPO optimizer steps.")
    parser.add_argument("--eval-limit", type=int, default=DEFAULT_EVAL_LIMIT, help="Dev questions evaluated.")
    parser.add_argument("--eval-every", type=int, default=DEFAULT_EVAL_EVERY, help="Dev eval every N steps.")
    parser.add_argument("--model", default=None, help="Use this HF model directory instead of bootstrapping one.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def _stage(name: str, t0: float, text: str) -> None:
    print(f"[quickstart] {name:<9} {text}  ({time.perf_counter() - t0:.0f}s)", flush=True)


def quickstart(
    out: str | Path = "quickstart_out",
    seed: int = 0,
    size: str = DEFAULT_SIZE,
    steps: int = DEFAULT_STEPS,
    eval_limit: int = DEFAULT_EVAL_LIMIT,
    eval_every: int = DEFAULT_EVAL_EVERY,
    model: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run world -> bootstrap -> IGPO training -> dev evaluation -> report; return the report's numbers.

    Raises:
        ValueError: for a non-positive ``steps`` or ``eval_limit``, or a negative ``eval_every``.
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    if eval_limit < 1:
        raise ValueError(f"`eval_limit` must be >= 1, got {eval_limit}")
    if eval_every < 0:
        raise ValueError(f"`eval_every` must be >= 0 (0: before/after only), got {eval_every}")
    from agents.bootstrap import bootstrap
    from agents.igpo.cli import default_train_config, run_training
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import default_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    world = default_world(seed)
    n_docs = sum(1 for _ in (world / "corpus.jsonl").open(encoding="utf-8"))
    n_qa = {split: len(load_qa(world, split=split)) for split in ("train", "dev", "test")}
    _stage("world", t0, f"{world}: {n_docs} passages, questions {n_qa}")

    t0 = time.perf_counter()
    model_dir = Path(model) if model is not None else bootstrap(size=size, seed=seed, verbose=verbose)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {str(model_dir)!r} does not exist")
    report_file = model_dir / "report.json"
    boot = json.loads(report_file.read_text()) if report_file.exists() else {}
    _stage(
        "bootstrap",
        t0,
        f"{model_dir}: dev F1 {boot.get('dev_f1', float('nan')):.3f}, "
        f"well-formed {boot.get('well_formed_rate', float('nan')):.1%}",
    )

    t0 = time.perf_counter()
    config = default_train_config(out / "model", max_steps=steps, report_to="tensorboard", seed=seed)
    result = run_training(
        config,
        model=model_dir,
        data=world,
        world_seed=seed,
        eval_limit=eval_limit,
        eval_every=eval_every,
        verbose=verbose,
    )
    before, after = result["before"], result["after"]
    _stage("train", t0, f"{steps} IGPO steps: dev F1 {before['f1']:.3f} -> {after['f1']:.3f} (n={after['n']})")

    t0 = time.perf_counter()
    numbers = {
        "world": {"dir": str(world), "passages": n_docs, "questions": n_qa},
        "bootstrap": {"model_dir": str(model_dir), **boot},
        "train": {k: result[k] for k in ("before", "after", "curve", "train_seconds", "ig_share_of_rollout")},
        "model_dir": result["output_dir"],
        "minutes": (time.perf_counter() - t_all) / 60,
        "log_history": result["log_history"],
    }
    report = write_report(numbers, out)
    _stage("report", t0, f"{report} (+ report.json, dev_f1.png); total {numbers['minutes']:.1f} min")
    return numbers


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def write_report(numbers: dict[str, Any], out: Path) -> Path:
    """Write ``report.md``, ``report.json`` and ``dev_f1.png`` into ``out``; return the markdown path."""
    import matplotlib

    from agents.bootstrap_cli import SUMMARY_KEYS

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    (out / "report.json").write_text(json.dumps(numbers, indent=2, default=str))
    train = numbers["train"]
    curve = train["curve"]
    rewards = [(h["step"], h["reward"]) for h in numbers.get("log_history", []) if "reward" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([c["step"] for c in curve], [c["f1"] for c in curve], marker="o", label="dev F1")
    if rewards:
        ax2 = ax.twinx()
        ax2.plot([r[0] for r in rewards], [r[1] for r in rewards], color="tab:orange", alpha=0.6, label="train reward")
        ax2.set_ylabel("mean episode reward")
    ax.set_xlabel("IGPO step")
    ax.set_ylabel("dev F1")
    ax.set_title("igpo-env quickstart: embedded policy LM on SynthWiki")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "dev_f1.png", dpi=120)
    plt.close(fig)

    boot = numbers["bootstrap"]
    before, after = train["before"], train["after"]
    sources = sorted(set(before.get("by_source", {})) | set(after.get("by_source", {})))
    lines = [
        "# igpo-env quickstart report",
        "",
        f"World: `{numbers['world']['dir']}`, {numbers['world']['passages']} passages, "
        f"questions {numbers['world']['questions']}.",
        "",
        "## Embedded policy LM (bootstrap)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(boot[k])} |" for k in SUMMARY_KEYS if k in boot],
        "",
        "## IGPO training: dev before and after",
        "",
        "| data source | F1 before | F1 after | EM before | EM after | n |",
        "|---|---|---|---|---|---|",
        f"| all | {before['f1']:.3f} | {after['f1']:.3f} | {before['em']:.3f} | {after['em']:.3f} | {after['n']} |",
    ]
    for s in sources:
        b, a = before["by_source"].get(s, {}), after["by_source"].get(s, {})
        lines.append(
            f"| {s} | {_fmt(b.get('f1'))} | {_fmt(a.get('f1'))} | {_fmt(b.get('em'))} | {_fmt(a.get('em'))} "
            f"| {a.get('n', '')} |"
        )
    share = train.get("ig_share_of_rollout")
    lines += [
        "",
        f"Training: {len(curve) and curve[-1]['step']} steps in {train['train_seconds']:.0f} s; "
        f"IG scoring share of rollout time: {_fmt(share)}. Trained model: `{numbers['model_dir']}`.",
        "",
        "![dev F1](dev_f1.png)",
        "",
        f"Total: {numbers['minutes']:.1f} minutes.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run(args: argparse.Namespace) -> int:
    """Entry point of ``igpo-env quickstart``."""
    quickstart(
        out=args.out,
        seed=args.seed,
        size=args.size,
        steps=args.steps,
        eval_limit=args.eval_limit,
        eval_every=args.eval_every,
        model=args.model,
        verbose=not args.quiet,
    )
    return 0
