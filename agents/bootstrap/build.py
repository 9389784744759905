"""The tiny fixture build: :func:`bootstrap` plays scripted episodes, trains a tokenizer, SFTs a random-init LM.

The pieces (spec, tokenizer, model, transcript encoding) live in :mod:`agents.bootstrap.fixture`; the scripted data in
:mod:`agents.bootstrap.trajectories`; the shared SFT config in :mod:`agents.bootstrap.sft`.

Example:
    >>> corpus_words(["Karsel is the capital of Ostrand."])[:2]
    [' Karsel', ' Ostrand']
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agents.bootstrap.common import REPORT_FILE, resolve_device
from agents.bootstrap.eval import quality_report
from agents.bootstrap.fixture import (
    CONFIG_VERSION,
    FIXTURE_POLICY,
    SIZES,
    BootstrapSpec,
    check_size,
    default_model_dir,
    encode_transcript,
    make_model,
    train_tokenizer,
)
from agents.bootstrap.sft import labels_only_sft_trainer, sft_config
from agents.bootstrap.trajectories import (
    WORD_RE,
    Trajectory,
    collect_trajectories,
    mistake_flags,
    reading_transcripts,
)
from igpo_env._validation import check_int
from igpo_env.types import Message

__all__ = [
    "bootstrap",
    "build",
    "corpus_words",
    "prepare_data",
    "SFTData",
    "sft_train",
]

logger = logging.getLogger(__name__)

TOKENIZER_SAMPLE_PASSAGES = 20_000
"""Corpus passages used to train the tokenizer (all of a default world)."""

TOKENIZER_SAMPLE_TRAJECTORIES = 500
"""Rendered transcripts added to the tokenizer's training text (prompts, tags, observation format)."""

LOGGING_FRACTION = 20
"""Log the training loss about this many times per run."""


def corpus_words(texts: Iterable[str]) -> list[str]:
    """Return the distinct words of ``texts`` (letters only), sorted, each with a leading space as in a sentence.

    Example:
        >>> corpus_words(["Karsel is the capital of Ostrand.", "Ostrand lies north."])
        [' Karsel', ' Ostrand', ' capital', ' is', ' lies', ' north', ' of', ' the']
    """
    words: set[str] = set()
    for text in texts:
        words.update(" " + w for w in WORD_RE.findall(text))
    return sorted(words)


def _iter_tokenizer_text(world: Path, trajectories: Sequence[Trajectory], word_repeats: int = 0) -> Iterator[str]:
    from igpo_env.data import load_corpus

    passages = [
        doc.contents for doc in itertools.islice(load_corpus(world / "corpus.jsonl"), TOKENIZER_SAMPLE_PASSAGES)
    ]
    yield from passages
    for t in trajectories[:TOKENIZER_SAMPLE_TRAJECTORIES]:
        yield "".join(m["content"] for m in t.messages)
    if word_repeats:
        # Every corpus word `word_repeats` more times: with a large enough vocabulary each entity name becomes one
        # token, so naming an entity from the question or a passage is a one-token copy instead of a multi-token one.
        words = "".join(corpus_words(passages))
        for _ in range(word_repeats):
            yield words


def sft_train(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, list[int]]],
    spec: BootstrapSpec,
    seed: int,
    work_dir: Path,
    verbose: bool = True,
    device: str = "cpu",
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train ``model`` in place with TRL's SFTTrainer on pre-tokenized ``input_ids`` + ``labels`` rows.

    Sequences are packed (best-fit decreasing, block-diagonal attention through ``position_ids``) to
    ``spec.max_length`` tokens; the number of optimizer steps is ``spec.train_tokens / (batch_size * max_length)``.
    ``device`` is ``"cpu"`` or ``"cuda"`` (see :func:`agents.bootstrap.common.resolve_device`); the model stays there.
    ``callbacks`` are ``transformers.TrainerCallback`` objects added to the trainer (e.g. a periodic evaluation).

    Returns:
        Training stats: steps, tokens per step, final loss, seconds.
    """
    from datasets import Dataset

    tokens_per_step = spec.batch_size * spec.max_length
    max_steps = max(1, math.ceil(spec.train_tokens / tokens_per_step))
    args = sft_config(
        work_dir,
        spec,
        max_steps=max_steps,
        packing=True,
        seed=seed,
        device=device,
        verbose=verbose,
        logging_steps=max(1, max_steps // LOGGING_FRACTION),
    )
    trainer = labels_only_sft_trainer()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=list(callbacks) or None,
    )
    start = time.perf_counter()
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": max_steps,
        "tokens_per_step": tokens_per_step,
        "train_loss": float(result.training_loss),
        "final_loss": float(losses[-1]) if losses else float("nan"),
        "seconds": time.perf_counter() - start,
    }


@dataclass
class SFTData:
    """Everything the SFT run of one spec trains on.

    Attributes:
        trajectories: The scripted episodes.
        reading: The reading transcripts (``spec.reading_rows`` of them).
        tokenizer: The BPE tokenizer trained for this spec.
        rows: Tokenized ``input_ids`` + ``labels`` rows: the episodes (mistakes masked), then the reading rows.
    """

    trajectories: list[Trajectory]
    reading: list[list[Message]]
    tokenizer: Any
    rows: list[dict[str, list[int]]]


def prepare_data(world: Path, spec: BootstrapSpec, seed: int, verbose: bool = True) -> SFTData:
    """Play the scripted episodes of ``spec`` on ``world``, train its tokenizer and tokenize the SFT rows."""
    trajectories = collect_trajectories(
        world, spec.train_episodes, spec.noisy_fraction, seed, spec.ig_answer_share, verbose, spec.rename_share
    )
    tokenizer = train_tokenizer(
        _iter_tokenizer_text(world, trajectories, spec.word_repeats), spec.vocab_size, spec.split_capitalized
    )
    rows = [
        encode_transcript(tokenizer, t.messages, mistake_flags(t.messages, t.mistakes), spec.max_length)
        for t in trajectories
    ]
    reading = reading_transcripts(world, spec.reading_rows, seed, verbose) if spec.reading_rows else []
    rows += [encode_transcript(tokenizer, messages, None, spec.max_length) for messages in reading]
    return SFTData(trajectories, reading, tokenizer, rows)


def build(
    target: Path, size: str, spec: BootstrapSpec, seed: int, verbose: bool = True, device: str = "cpu"
) -> dict[str, Any]:
    """Build the model directory ``target`` atomically (temp dir + rename) and return its report.

    Steps: the SynthWiki world of ``seed``, scripted trajectories, the tokenizer, the SFT run on ``device``, save,
    quality report (on the same device).
    """
    from igpo_env.data.synthwiki import default_world

    start = time.perf_counter()
    device = resolve_device(device)
    target = Path(target)
    world = Path(default_world(seed))
    data = prepare_data(world, spec, seed, verbose)
    trajectories, reading, tokenizer, rows = data.trajectories, data.reading, data.tokenizer, data.rows
    model = make_model(spec, tokenizer, seed)
    from igpo_env.cache import atomic_dir

    with atomic_dir(target) as tmp:
        stats = sft_train(model, tokenizer, rows, spec, seed, tmp, verbose, device)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        quality = quality_report(model, tokenizer, world, spec.eval_questions, seed=seed, verbose=verbose)
        n_mistakes = sum(sum(t.mistakes) for t in trajectories)
        n_turns = sum(len(t.mistakes) for t in trajectories)
        report = {
            **quality,
            "minutes": (time.perf_counter() - start) / 60.0,
            "size": size,
            "seed": seed,
            "config_version": CONFIG_VERSION,
            "device": device,
            "parameters": int(model.num_parameters()),
            "train_episodes": len(trajectories),
            "reading_rows": len(reading),
            "train_sequence_tokens": int(sum(len(r["input_ids"]) for r in rows)),
            "masked_action_share": n_mistakes / max(1, n_turns),
            "scripted_f1": sum(t.f1 for t in trajectories) / max(1, len(trajectories)),
            "sft": stats,
            "spec": asdict(spec),
            "world": str(world),
        }
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def bootstrap(
    size: str = FIXTURE_POLICY,
    seed: int = 0,
    force: bool = False,
    verbose: bool = True,
    out: str | Path | None = None,
    train_tokens: int | None = None,
    device: str = "auto",
) -> Path:
    """Build (or reuse) the from-scratch tiny LM (the fast test fixture) and return its HF model directory.

    Args:
        size: A key of :data:`~agents.bootstrap.fixture.SIZES` (only :data:`FIXTURE_POLICY`, ``"tiny"``).
        seed: Seed of the SynthWiki world and of training.
        force: Rebuild even if the directory already holds a finished build.
        verbose: Show progress bars.
        out: Directory to write to instead of the cache (``default_model_dir(size, seed)``).
        train_tokens: Override the size's training budget in tokens (the cache key then records it).
        device: Where to train and evaluate: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; a reused
            build is returned whatever device it was built on.

    Returns:
        The model directory (loads with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``); its
        ``report.json`` holds the quality report.

    Raises:
        ValueError: for an unknown ``size`` or ``device``, ``"cuda"`` without a GPU, or a non-positive
            ``train_tokens``.
    """
    spec = check_size(size)
    device = resolve_device(device)
    if train_tokens is not None:
        spec = replace(spec, train_tokens=check_int("train_tokens", train_tokens, minimum=1))
    if out is not None:
        target = Path(out)
    else:
        target = default_model_dir(size, seed)
        if spec.train_tokens != SIZES[size].train_tokens:
            target = target.with_name(f"{target.name}-t{spec.train_tokens}")
    if (target / REPORT_FILE).exists() and not force:
        logger.info("reusing the bootstrapped model at %s", target)
        return target
    build(target, size=size, spec=spec, seed=seed, verbose=verbose, device=device)
    return target
