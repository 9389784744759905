"""SFT throughput of the warm start on this machine: which CPU-side savings pay, measured side by side in one run.

Each variant runs forward + backward + AdamW step on the same scripted-trajectory-sized sequence (``--length`` tokens,
the last ``--labelled`` of them labelled, as an assistant turn) of the packaged default model, in this order:

- ``fp32_full_logits``: float32, the model's own loss (LM head at every position);
- ``bf16_full_logits``: the same under bfloat16 autocast;
- ``bf16_logits_at_labels``: the LM head only at labelled positions
  (:func:`agents.bootstrap.sft.logits_at_labels_loss`);
- ``bf16_labels_freeze15``: and the embeddings + bottom 15 of 30 layers frozen (the shipped recipe);
- ``bf16_labels_lora16``: LoRA rank 16 on every decoder linear layer instead (peft).

Reported: seconds per sequence and tokens/s per variant, and each one's speed-up over ``fp32_full_logits`` (ratios,
since the shared machine's absolute speed drifts 1.5x between runs).

Run: ``python -m benchmarks.warm_start_speed [--quick] [--out DIR] [--model NAME|PATH]`` (``--quick``: 2 timed steps
per variant instead of 4). Writes ``warm_start_speed.json`` (``variants: {name: {seconds_per_sequence,
tokens_per_second, speedup}}``) and ``warm_start_speed.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "warm_start_speed"
VARIANTS = (
    "fp32_full_logits",
    "bf16_full_logits",
    "bf16_logits_at_labels",
    "bf16_labels_freeze15",
    "bf16_labels_lora16",
)
FREEZE_LAYERS = 15
LORA_RANK = 16


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    from igpo_env.models import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 timed steps per variant instead of 4.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"Model directory or packaged name ({DEFAULT_MODEL}).")
    p.add_argument("--length", type=int, default=580, help="Tokens per sequence (580: a median trajectory).")
    p.add_argument("--labelled", type=int, default=100, help="Labelled tokens at its end (100).")
    return p


def _variant(name: str, base: Any) -> tuple[Any, bool, bool]:
    """Return ``(model, bf16, logits_at_labels)`` for a variant (a fresh copy of ``base``)."""
    from agents.policy import freeze_bottom

    model = copy.deepcopy(base)
    if name.endswith("freeze15"):
        freeze_bottom(model, min(FREEZE_LAYERS, len(model.get_decoder().layers) - 1))
    if name.endswith("lora16"):
        from peft import LoraConfig, get_peft_model

        from agents.bootstrap.warm_start import LORA_TARGETS

        model = get_peft_model(
            model, LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=list(LORA_TARGETS))
        )
    return model.train(), name.startswith("bf16"), "full_logits" not in name


def measure(name: str, base: Any, length: int, labelled: int, steps: int) -> dict[str, float]:
    """Time ``steps`` optimizer steps (after one warm-up step) of one variant."""
    import torch

    from agents.bootstrap.sft import logits_at_labels_loss

    model, bf16, at_labels = _variant(name, base)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, base.config.vocab_size - 100, (1, length), generator=gen)
    labels = ids.clone()
    labels[:, : length - labelled] = -100
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if at_labels:
                loss = logits_at_labels_loss(model, {"input_ids": ids, "labels": labels})[0]
            else:
                loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    seconds = sum(times[1:]) / steps
    return {"seconds_per_sequence": round(seconds, 3), "tokens_per_second": round(length / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run every variant and write the results."""
    import torch

    from agents.policy import load_policy

    args = make_parser().parse_args(argv)
    if args.length < 2 or not 1 <= args.labelled < args.length:
        raise ValueError(f"need --length >= 2 and 1 <= --labelled < --length, got {args.length}, {args.labelled}")
    from tqdm.auto import tqdm

    base, _ = load_policy(args.model)
    steps = 2 if args.quick else 4
    results = {name: measure(name, base, args.length, args.labelled, steps) for name in tqdm(VARIANTS, desc=NAME)}
    ref = results["fp32_full_logits"]["seconds_per_sequence"]
    for r in results.values():
        r["speedup"] = round(ref / r["seconds_per_sequence"], 2)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"python -m benchmarks.{NAME} {argv_text}".strip()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "model": str(args.model),
        "length": args.length,
        "labelled": args.labelled,
        "timed_steps": steps,
        "machine": f"{platform.machine()}, torch threads {torch.get_num_threads()}",
        "variants": results,
    }
    (out / f"{NAME}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        f"# {NAME}",
        "",
        f"Command: `{command}`. Model `{args.model}`, one {args.length}-token sequence ({args.labelled} labelled) per "
        f"step, {steps} timed steps per variant, {data['machine']}.",
        "",
        "| variant | s / sequence | tokens/s | speed-up vs fp32 |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['seconds_per_sequence']:.2f} | {v['tokens_per_second']:.0f} | {v['speedup']:.2f}x |"
            for k, v in results.items()
        ],
        "",
    ]
    (out / f"{NAME}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
