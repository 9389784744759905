"""Bootstrap recipes side by side: how fast each SFT recipe teaches the policy LM to read.

Each variant is the ``small`` (or ``tiny``) :class:`agents.bootstrap.BootstrapSpec` with some fields changed. It is
built the way ``igpo-env bootstrap`` builds it (same world, scripted episodes, tokenizer and TRL SFT run, one seed)
and probed every ``eval_every`` optimizer steps, on the first ``eval_questions`` dev questions:

- ``median_p``: median ``p(gold)`` under the IGPO scoring template after the scripted oracle has retrieved all the
  supporting passages (what the IG sanity target of ``median_p_oracle >= 0.5`` measures), also split into answers
  with digits (``median_p_number``) and without (``median_p_name``: entity names, which only reading can give for a
  dev question);
- ``repeat_copy_gain``: the NLL drop on the second pass of a repeated random token sequence (in-context copying).

With ``--report`` each variant also gets the full quality report of ``igpo-env bootstrap`` (well-formed rate, dev F1,
question-only F1, ...) at the end. Variants come from :data:`VARIANTS` or are written inline as
``NAME:field=value,field=value`` (``lr3:learning_rate=0.003``); unknown fields and bad values are refused before
anything is built.

Run: ``python -m benchmarks.bootstrap_recipes [--quick] [--out DIR] [--size small|tiny] [--variants V ...]
[--train-tokens N] [--eval-every K] [--eval-questions N] [--device auto|cpu|cuda] [--report]``.
``--quick`` = the ``tiny`` shape, variants ``base`` and ``rename``, 40k training tokens, 16 dev questions (~30 s). The
default run (3 variants at the ``small`` budget of 2.8M tokens) takes about an hour on 2 CPU cores; ``--train-tokens``
shortens it, and ``--device cuda`` trains on a GPU.
Writes ``bootstrap_recipes.json`` (the curves), ``bootstrap_recipes.md`` and ``bootstrap_recipes.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "bootstrap_recipes"

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "split_cap": {"split_capitalized": True},
    "rename": {"split_capitalized": True, "rename_share": 1.0},
    "reading": {"split_capitalized": True, "reading_rows": 4000},
}
"""Named recipes: field overrides of the size's spec (``base`` is the size's spec as shipped)."""

FULL = {"size": "small", "variants": ["base", "split_cap", "rename"], "eval_every": 400, "eval_questions": 96}
QUICK = {"size": "tiny", "variants": ["base", "rename"], "eval_every": 5, "eval_questions": 16, "train_tokens": 40_960}

EVAL_BATCH = 32
"""Transcripts per scoring batch."""


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    from agents.bootstrap import DEVICES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shape, 2 variants, 40k tokens, 16 dev questions.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument("--size", choices=("tiny", "small"), default=None, help="Spec the variants change (small).")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help=f"Named ({', '.join(VARIANTS)}) or NAME:field=value,... (default: base split_cap rename).",
    )
    p.add_argument("--train-tokens", type=int, default=None, help="Training budget of every variant (the size's).")
    p.add_argument("--eval-every", type=int, default=None, help="Probe period in optimizer steps (400; quick: 5).")
    p.add_argument("--eval-questions", type=int, default=None, help="Dev questions probed (96; quick: 16).")
    p.add_argument("--device", choices=DEVICES, default="auto", help="Train on (default: auto).")
    p.add_argument("--report", action="store_true", help="Also run the full quality report after training.")
    p.add_argument("--seed", type=int, default=0, help="World and training seed (0).")
    return p


def parse_variant(text: str, base: Any) -> tuple[str, Any]:
    """Return ``(name, spec)`` for a variant: a key of :data:`VARIANTS` or ``NAME:field=value,...`` over ``base``.

    Values are converted to the type of the field's value in ``base`` (``true`` / ``false`` for booleans).

    Example:
        >>> from agents.bootstrap import SIZES
        >>> name, spec = parse_variant("lr3:learning_rate=0.003,split_capitalized=true", SIZES["tiny"])
        >>> name, spec.learning_rate, spec.split_capitalized
        ('lr3', 0.003, True)
        >>> parse_variant("rename", SIZES["tiny"])[1].rename_share
        1.0
    """
    if ":" not in text:
        if text not in VARIANTS:
            raise ValueError(f"unknown variant {text!r}: use one of {sorted(VARIANTS)} or NAME:field=value,...")
        return text, dataclasses.replace(base, **VARIANTS[text])
    name, _, body = text.partition(":")
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"variant name {name!r} must be letters, digits, '_', '-' or '.' (in {text!r})")
    fields = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, eq, raw = item.partition("=")
        if not eq or key not in fields:
            raise ValueError(f"bad override {item!r} in {text!r}: write field=value with a field of {sorted(fields)}")
        old = getattr(base, key)
        try:
            if isinstance(old, bool):
                if raw.lower() not in ("true", "false"):
                    raise ValueError(raw)
                value: Any = raw.lower() == "true"
            elif isinstance(old, int):
                number = float(raw)
                if not number.is_integer():
                    raise ValueError(raw)
                value = int(number)
            else:
                value = type(old)(raw)
        except ValueError:
            kind = type(old).__name__
            raise ValueError(f"bad value {raw!r} for {key} in {text!r}: expected a value of type {kind}") from None
        changes[key] = value
    return name, dataclasses.replace(base, **changes)


class Probe:
    """Median ``p(gold)`` after the oracle's searches and the repeat-copy gain of a model, on fixed dev questions.

    Args:
        world: The SynthWiki world directory.
        n_questions: First dev questions used.
        seed: Seed of the oracle transcripts.
    """

    def __init__(self, world: Path, n_questions: int, seed: int = 0) -> None:
        from agents.bootstrap_eval import oracle_transcripts
        from igpo_env.data import load_qa
        from igpo_env.retrieval import get_retriever

        dev = load_qa(world, "dev")[:n_questions]
        if not dev:
            raise ValueError(f"world {world} has no dev questions to probe")
        self.contexts = oracle_transcripts(dev, get_retriever(str(world / "corpus.jsonl")), seed)
        self.golds = [ex.golden_answers[0] for ex in dev]
        self.numeric = [bool(re.search(r"\d", g)) for g in self.golds]

    def __call__(self, model: Any, tokenizer: Any, step: int) -> dict[str, float | int | None]:
        """Probe ``model`` (restored to its train/eval mode afterwards)."""
        import torch

        from agents.bootstrap_eval import median, repeat_copy_gain, score_gold

        was_training = model.training
        model.eval()
        with torch.no_grad():
            p = score_gold(model, tokenizer, self.contexts, self.golds, EVAL_BATCH)
            gain = repeat_copy_gain(model, tokenizer)
        model.train(was_training)
        names = [x for x, num in zip(p, self.numeric, strict=True) if not num]
        numbers = [x for x, num in zip(p, self.numeric, strict=True) if num]
        return {
            "step": step,
            "median_p": median(p),
            "median_p_name": median(names) if names else None,
            "median_p_number": median(numbers) if numbers else None,
            "repeat_copy_gain": gain,
        }


def _probe_callback(probe: Probe, tokenizer: Any, every: int, curve: list[dict[str, Any]]) -> Any:
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: D102
            if state.global_step % every == 0 and state.global_step < state.max_steps:
                curve.append(probe(model, tokenizer, state.global_step))
                tqdm.write(f"  step {state.global_step}: {_fmt_point(curve[-1])}")

    return ProbeCallback()


def _fmt_point(point: dict[str, Any]) -> str:
    keys = ("median_p", "median_p_name", "median_p_number", "repeat_copy_gain")
    return " ".join(f"{k}={point[k]:.4f}" for k in keys if point.get(k) is not None)


def run_variant(
    name: str, spec: Any, world: Path, probe: Probe, opts: dict[str, Any], workdir: Path
) -> dict[str, Any]:
    """Build one variant (data, tokenizer, model, SFT with probes) and return its curve and stats."""
    from agents.bootstrap import make_model
    from agents.bootstrap_build import prepare_data, sft_train
    from agents.bootstrap_eval import quality_report

    start = time.perf_counter()
    data = prepare_data(world, spec, opts["seed"], verbose=True)
    model = make_model(spec, data.tokenizer, opts["seed"])
    curve = [probe(model, data.tokenizer, 0)]
    callback = _probe_callback(probe, data.tokenizer, opts["eval_every"], curve)
    stats = sft_train(
        model, data.tokenizer, data.rows, spec, opts["seed"], workdir / name, True, opts["device"], [callback]
    )
    curve.append(probe(model, data.tokenizer, stats["steps"]))
    run = {
        "variant": name,
        "spec": dataclasses.asdict(spec),
        "curve": curve,
        "sft": stats,
        "train_sequence_tokens": int(sum(len(r["input_ids"]) for r in data.rows)),
        "parameters": int(model.num_parameters()),
    }
    if opts["report"]:
        model.eval()
        run["quality"] = quality_report(model, data.tokenizer, world, opts["eval_questions"], seed=opts["seed"])
    run["seconds"] = time.perf_counter() - start
    return run


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("median_p", "median p(gold), oracle docs"), ("median_p_name", "median p(gold), name answers"))
    for ax, (key, title) in zip(axes, (*panels, ("repeat_copy_gain", "repeat-copy gain (nats)")), strict=True):
        for run in runs:
            pts = [(p["step"], p[key]) for p in run["curve"] if p.get(key) is not None]
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=run["variant"])
        ax.set(xlabel="optimizer step", title=title)
        if key != "repeat_copy_gain":
            ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(summary: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    def fmt(x: Any) -> str:
        return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    lines = [
        "# Bootstrap recipes: how fast each SFT recipe learns to read",
        "",
        f"`{summary['size']}` spec, {summary['train_tokens']:,} training tokens per variant, probes on "
        f"{summary['eval_questions']} dev questions every {summary['eval_every']} steps, seed {summary['seed']}, "
        f"{summary['machine']}, device {summary['device']}. Targets of the bootstrap issue: median p(gold) after the "
        "oracle docs >= 0.5 (needs in-context copying; a model that copies well has a repeat-copy gain of several "
        "nats).",
        "",
        f"Command: `{summary['command']}`",
        "",
        "| variant | changes | steps | final train loss | median p | median p (names) | median p (numbers) | "
        "repeat-copy gain | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        end = run["curve"][-1]
        changes = ", ".join(f"{k}={v}" for k, v in run["changes"].items()) or "(as shipped)"
        lines.append(
            f"| {run['variant']} | {changes} | {run['sft']['steps']} | {fmt(run['sft']['final_loss'])} | "
            f"{fmt(end['median_p'])} | {fmt(end['median_p_name'])} | {fmt(end['median_p_number'])} | "
            f"{fmt(end['repeat_copy_gain'])} | {run['seconds'] / 60:.1f} |"
        )
    reports = [r for r in runs if "quality" in r]
    if reports:
        lines += [
            "",
            "| variant | well-formed | dev F1 | question-only F1 | IG share | median p oracle | median p q-only |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in reports:
            q = run["quality"]
            lines.append(
                f"| {run['variant']} | {fmt(q['well_formed_rate'])} | {fmt(q['dev_f1'])} | "
                f"{fmt(q['question_only_f1'])} | {fmt(q['ig_sanity_share'])} | {fmt(q['median_p_oracle'])} | "
                f"{fmt(q['median_p_question_only'])} |"
            )
    lines += ["", f"![probes vs step]({NAME}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every variant and write the results."""
    from agents.bootstrap import SIZES, resolve_device
    from igpo_env.data.synthwiki import default_world

    args = make_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    opts = {
        "size": args.size or base["size"],
        "variants": args.variants or base["variants"],
        "eval_every": args.eval_every or base["eval_every"],
        "eval_questions": args.eval_questions or base["eval_questions"],
        "device": resolve_device(args.device),
        "report": args.report,
        "seed": args.seed,
    }
    spec0 = SIZES[opts["size"]]
    tokens = args.train_tokens or base.get("train_tokens") or spec0.train_tokens
    if tokens < 1 or opts["eval_every"] < 1 or opts["eval_questions"] < 1:
        raise ValueError(
            f"--train-tokens, --eval-every and --eval-questions must be >= 1, got {tokens}, {opts['eval_every']} "
            f"and {opts['eval_questions']}"
        )
    spec0 = dataclasses.replace(spec0, train_tokens=tokens)
    variants = [parse_variant(v, spec0) for v in opts["variants"]]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be distinct, got {names}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = Path(default_world(opts["seed"]))
    probe = Probe(world, opts["eval_questions"], opts["seed"])
    runs = []
    base_spec = dataclasses.asdict(spec0)
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as tmp:
        for name, spec in variants:
            print(f"variant {name}", flush=True)
            run = run_variant(name, spec, world, probe, opts, Path(tmp))
            run["changes"] = {k: v for k, v in run["spec"].items() if base_spec[k] != v}
            runs.append(run)
    command = " ".join(["python -m benchmarks.bootstrap_recipes", *(argv if argv is not None else sys.argv[1:])])
    summary = {
        "command": command,
        **{k: opts[k] for k in ("size", "eval_every", "eval_questions", "device", "seed")},
        "train_tokens": tokens,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "wall_seconds": time.perf_counter() - t0,
    }
    (out / f"{NAME}.json").write_text(json.dumps({**summary, "runs": runs}, indent=2))
    (out / f"{NAME}.md").write_text(_markdown(summary, runs))
    _plot(runs, out / f"{NAME}.png")
    print(_markdown(summary, runs))
    print(f"wrote {out / NAME}.json/.md/.png in {summary['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
