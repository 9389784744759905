"""Warm start of a pretrained LM (default: the packaged SmolLM2-135M-Instruct) as a SearchQA-v0 search agent.

A pretrained instruct model reads answers out of passages zero-shot but does not know the env's tags (0.5% of its
zero-shot turns parse). A short SFT on scripted trajectories teaches them: the scripted oracle and noisy oracle play
train-split questions of the SynthWiki world, the transcripts are rendered with the model's own chat template, and the
loss covers the assistant turns only (the noisy oracle's deliberate mistakes are masked). Training runs in TRL's
``SFTTrainer`` with three CPU-side savings (measured in the closing notes and ``report.json``):

- logits only at loss positions (``logits_to_keep``): the assistant tokens are ~1/6 of a transcript, and the
  49k-row LM head is ~1/5 of the model's FLOPs;
- one unpadded transcript per forward (gradient accumulation makes the batch), so attention takes SDPA's causal
  fast path with no mask;
- bfloat16 autocast over float32 master weights where the CPU has bf16 (AVX512-BF16 / AMX).

Options: LoRA adapters through ``peft`` (``lora_rank``), frozen bottom layers (``freeze_layers``).

Example:
    >>> from igpo_env.scoring.tiny import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<answer> x </answer>"}]
    >>> row = encode_chat(tok, msgs)
    >>> tok.decode([t for t in row["labels"] if t != -100])
    '<answer> x </answer><|im_end|>'
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from agents.bootstrap.common import IGNORE_INDEX, REPORT_FILE, resolve_device
from agents.bootstrap.eval import quality_report
from agents.bootstrap.sft import labels_only_sft_trainer, sft_config
from agents.bootstrap.trajectories import collect_trajectories, mistake_flags
from agents.policy import freeze_bottom, load_policy
from igpo_env._validation import check_fraction, check_int, check_number
from igpo_env.types import Message

__all__ = [
    "WarmStartSpec",
    "WARM_START",
    "DEFAULT_EVAL_QUESTIONS",
    "LORA_TARGETS",
    "encode_chat",
    "warm_start",
    "warm_start_dir",
]

logger = logging.getLogger(__name__)

WARM_START_VERSION = "w1"
"""Bumped whenever the recipe changes, so stale cached warm starts are not reused."""

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Linear layers of a decoder block that get LoRA adapters (the names of Llama, Qwen2 and Gemma blocks)."""


@dataclass(frozen=True)
class WarmStartSpec:
    """The SFT recipe of a warm start.

    Attributes:
        train_episodes: Scripted episodes played on the train split (each a training transcript).
        noisy_fraction: Share of them played by the noisy oracle (its mistaken actions are masked).
        ig_answer_share: Share of answers written in the IG pseudo-response form.
        steps: Optimizer steps; ``steps * batch_size`` transcripts are seen (cycling when it exceeds the episodes).
        batch_size: Transcripts per optimizer step (one per forward, gradients accumulated).
        learning_rate: Peak learning rate (cosine after warmup).
        warmup_ratio: Share of steps with linear warmup.
        weight_decay: AdamW weight decay.
        max_length: Longest transcript in tokens (longer ones are cut at the end).
        bf16: bfloat16 autocast (float32 master weights).
        lora_rank: LoRA rank on every linear layer of the decoder (0: full fine-tuning).
        freeze_layers: Bottom decoder layers (and the embeddings) kept frozen (0: none).
    """

    train_episodes: int = 300
    noisy_fraction: float = 0.3
    ig_answer_share: float = 0.5
    steps: int = 75
    batch_size: int = 4
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 1536
    bf16: bool = True
    lora_rank: int = 0
    freeze_layers: int = 15

    def __post_init__(self) -> None:
        for name in ("train_episodes", "steps", "batch_size", "max_length"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("lora_rank", "freeze_layers"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("noisy_fraction", "ig_answer_share", "warmup_ratio"):
            check_fraction(name, getattr(self, name))
        check_number("learning_rate", self.learning_rate, minimum=0, strict=True)

    @classmethod
    def from_overrides(cls, base: WarmStartSpec, overrides: dict[str, Any]) -> WarmStartSpec:
        """Return ``base`` with ``overrides`` (field name -> value) applied; unknown names are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown warm-start fields {unknown}; known: {sorted(names)}")
        return replace(base, **overrides)


DEFAULT_EVAL_QUESTIONS = 128
"""Dev questions of a warm start's quality report."""

WARM_START = WarmStartSpec()
"""The default recipe (~10 min of SFT on 2 CPU cores for SmolLM2-135M)."""


def encode_chat(
    tokenizer: Any, messages: Sequence[Message], masked: Sequence[bool] | None = None, max_length: int | None = None
) -> dict[str, list[int]]:
    """Tokenize a transcript with the tokenizer's chat template; labels cover the assistant turns only.

    Each assistant turn is labelled from its first content token through its end-of-turn token; everything else
    (system and user prompts, observations, the template's headers) and the turns flagged in ``masked`` get -100.

    Args:
        tokenizer: A tokenizer with a chat template that renders longer transcripts as extensions of shorter ones.
        messages: The transcript.
        masked: Per message, True to exclude it from the loss (e.g. a mistaken action).
        max_length: Cut to this many tokens.
    """
    from igpo_env.scoring.templates import end_of_turn, render_transcript

    if masked is not None and len(masked) != len(messages):
        raise ValueError(f"`masked` must have one flag per message ({len(messages)}), got {len(masked)}")
    eot = end_of_turn(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = render_transcript(list(messages[:k]), tokenizer, add_generation_prompt=True)
        turn = m["content"] + eot
        if not head.startswith(done):
            raise ValueError("the chat template is not prefix-preserving; encode_chat needs one that is (ChatML is)")
        context = tokenizer.encode(head[len(done) :], add_special_tokens=False)
        target = tokenizer.encode(turn, add_special_tokens=False)
        ids += context + target
        flagged = masked is not None and masked[k]
        labels += [IGNORE_INDEX] * len(context) + ([IGNORE_INDEX] * len(target) if flagged else target)
        done = head + turn
    full = render_transcript(list(messages), tokenizer, add_generation_prompt=False)
    if full.startswith(done) and len(full) > len(done):
        tail = tokenizer.encode(full[len(done) :], add_special_tokens=False)
        ids += tail
        labels += [IGNORE_INDEX] * len(tail)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def sft(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, list[int]]],
    spec: WarmStartSpec,
    seed: int,
    work_dir: Path,
    device: str = "cpu",
    verbose: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` on tokenized rows with TRL's SFTTrainer; return ``(trained model, stats)``.

    With ``spec.lora_rank`` the adapters are merged back, so the result is a plain model either way.
    """
    from datasets import Dataset

    freeze_bottom(model, spec.freeze_layers)
    peft_config = None
    if spec.lora_rank:
        from peft import LoraConfig

        n_layers = len(model.get_decoder().layers)
        peft_config = LoraConfig(  # adapters on the unfrozen layers only, so freeze_layers means the same with LoRA
            r=spec.lora_rank,
            lora_alpha=2 * spec.lora_rank,
            lora_dropout=0.0,
            target_modules=list(LORA_TARGETS),
            layers_to_transform=list(range(min(spec.freeze_layers, n_layers - 1), n_layers)),
        )
    args = sft_config(
        work_dir,
        spec,
        max_steps=spec.steps,
        packing=False,
        seed=seed,
        device=device,
        verbose=verbose,
        logging_steps=max(1, spec.steps // 10),
    )
    trainer = labels_only_sft_trainer()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trained = trainer.model
    if spec.lora_rank:
        trained = trained.merge_and_unload()
    seen = rows * math.ceil(spec.steps * spec.batch_size / max(1, len(rows)))
    tokens = sum(len(r["input_ids"]) for r in seen[: spec.steps * spec.batch_size])
    stats = {
        "steps": spec.steps,
        "transcripts": spec.steps * spec.batch_size,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "first_loss": float(losses[0]) if losses else None,
        "final_loss": float(losses[-1]) if losses else None,
        "train_loss": float(result.training_loss),
        "seconds": seconds,
    }
    for p in trained.parameters():
        p.requires_grad_(True)
    return trained.eval(), stats


def warm_start_dir(base: str, seed: int = 0, spec: WarmStartSpec = WARM_START) -> Path:
    """Cache directory of the warm start of ``base`` (a registered name or a path) under ``spec`` and ``seed``.

    Example:
        >>> warm_start_dir("smollm2-135m-instruct").name
        'smollm2-135m-instruct-warm-s0-w1'
    """
    import hashlib

    from igpo_env.cache import cache_dir

    name = Path(str(base)).name or "model"
    tag = f"{name}-warm-s{seed}-{WARM_START_VERSION}"
    if spec != WARM_START:
        digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:8]
        tag += f"-{digest}"
    return cache_dir("models") / tag


def warm_start(
    base: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    spec: WarmStartSpec = WARM_START,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: str = "auto",
    eval_questions: int = DEFAULT_EVAL_QUESTIONS,
    zero_shot: bool = False,
    verbose: bool = True,
) -> Path:
    """SFT ``base`` on scripted SearchQA-v0 trajectories of the default world; return the model directory.

    Args:
        base: A registered model name or an HF model directory (default: :data:`igpo_env.models.DEFAULT_MODEL`).
        seed: Seed of the world, the trajectories and training.
        spec: The recipe.
        out: Directory to write (default: :func:`warm_start_dir`).
        force: Rebuild even when ``out`` holds a finished build.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        eval_questions: Dev questions of the quality report (0: no report; ``report.json`` then holds the SFT stats
            only). Not part of the cache key: a cached build is reused whatever its report covers.
        zero_shot: Also measure the base model's quality report (``report.json``'s ``zero_shot``) before the SFT.
        verbose: Progress bars.

    Returns:
        The model directory; its ``report.json`` has the quality report of the warm start (top level) and, with
        ``zero_shot``, of the base model on the same dev questions.
    """
    from igpo_env.data.synthwiki import default_world
    from igpo_env.models import DEFAULT_MODEL, resolve_model

    base = str(base) if base is not None else DEFAULT_MODEL
    device = resolve_device(device)
    check_int("eval_questions", eval_questions, minimum=0)
    target = Path(out) if out is not None else warm_start_dir(base, seed, spec)
    world = Path(default_world(seed))
    if (target / REPORT_FILE).exists() and not force:
        report = json.loads((target / REPORT_FILE).read_text())
        if report.get("eval_questions", 0) < eval_questions:  # reuse the SFT, add the quality report it lacks
            model, tokenizer = load_policy(target)
            quality = quality_report(model.to(device), tokenizer, world, eval_questions, seed=seed, verbose=verbose)
            _write_report(target, {**report, **quality})
        logger.info("reusing the warm start at %s", target)
        return target
    start = time.perf_counter()
    base_dir = Path(resolve_model(base))
    model, tokenizer = load_policy(base_dir)
    model.to(device)
    base_report = None
    if zero_shot and eval_questions:
        t0 = time.perf_counter()
        base_report = quality_report(model, tokenizer, world, eval_questions, seed=seed, verbose=verbose)
        base_report["minutes"] = (time.perf_counter() - t0) / 60
    trajectories = collect_trajectories(
        world, spec.train_episodes, spec.noisy_fraction, seed, spec.ig_answer_share, verbose
    )
    rows = [
        encode_chat(tokenizer, t.messages, mistake_flags(t.messages, t.mistakes), spec.max_length)
        for t in trajectories
    ]
    from igpo_env.cache import atomic_dir

    with atomic_dir(target) as tmp:
        model.train()
        model, stats = sft(model, tokenizer, rows, spec, seed, tmp, device, verbose)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        quality: dict[str, Any] = {}
        if eval_questions:  # the saved model, as every later user loads it (float32, no trainer wrappers)
            model, tokenizer = load_policy(tmp)
            quality = quality_report(model.to(device), tokenizer, world, eval_questions, seed=seed, verbose=verbose)
        n_turns = sum(len(t.mistakes) for t in trajectories)
        report = {
            **quality,
            "zero_shot": base_report,
            "sft_minutes": stats["seconds"] / 60,
            "minutes": (time.perf_counter() - start) / 60,
            "base": base,
            "base_dir": str(base_dir),
            "seed": seed,
            "version": WARM_START_VERSION,
            "device": device,
            "parameters": sum(p.numel() for p in model.parameters()) if quality else None,
            "train_episodes": len(trajectories),
            "masked_action_share": sum(sum(t.mistakes) for t in trajectories) / max(1, n_turns),
            "sft": stats,
            "spec": asdict(spec),
            "world": str(world),
        }
        _write_report(tmp, report)
    return target


def _write_report(directory: Path, report: dict[str, Any]) -> None:
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
